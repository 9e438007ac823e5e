package e2e

import (
	"net"
	"sync"
)

// Proxy forwards TCP connections from a loopback port to a target, and
// lets a test simulate the network failing between them:
//   - Pause: bytes stop flowing both ways but connections stay open (a
//     partition the endpoints cannot see: only their timeouts notice);
//   - Cut: every open connection is closed and new ones are refused;
//   - Restore: back to normal.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	cut    bool
	paused bool
	resume chan struct{} // closed on Restore while paused
	conns  map[net.Conn]struct{}

	wg sync.WaitGroup
}

// NewProxy listens on a free loopback port and forwards to target.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, resume: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is http://Addr.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// SetTarget changes where new connections go (after a server restart on
// another port).
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		target := p.target
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(c, target)
	}
}

func (p *Proxy) serve(c net.Conn, target string) {
	defer p.wg.Done()
	defer p.forget(c)
	up, err := net.Dial("tcp", target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	defer p.forget(up)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(up, c) }()
	go func() { defer wg.Done(); p.pipe(c, up) }()
	wg.Wait()
}

// pipe copies src to dst, holding data back while paused.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitUnpaused() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a closed connection: either way this direction is done
		}
	}
}

// waitUnpaused blocks while paused; false means the link was cut.
func (p *Proxy) waitUnpaused() bool {
	for {
		p.mu.Lock()
		cut, paused, resume := p.cut, p.paused, p.resume
		p.mu.Unlock()
		if cut {
			return false
		}
		if !paused {
			return true
		}
		<-resume
	}
}

func (p *Proxy) forget(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// Pause holds every byte in flight until Restore or Cut.
func (p *Proxy) Pause() {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
}

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
	if p.paused {
		p.paused = false
		close(p.resume)
		p.resume = make(chan struct{})
	}
	p.mu.Unlock()
}

// Restore lets traffic flow again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	if p.paused {
		p.paused = false
		close(p.resume)
		p.resume = make(chan struct{})
	}
	p.mu.Unlock()
}

// Close stops the proxy and waits for its goroutines.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}
