package e2e

import (
	"bytes"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Balancer is a round-robin TCP load balancer on a loopback port, as a
// test puts in front of several rein-server replicas: each new connection
// goes to the next target in turn. A target that refuses the connection
// (a killed replica) is skipped for that connection and the next one is
// tried, as a load balancer's passive health check does; nothing is
// sticky. Targets can be added, replaced (a replica restarted on a new
// port) and removed while it runs.
//
// It also injects the network failures Proxy offers (Proxy is a Balancer
// with one target):
//   - Pause: bytes stop flowing both ways but connections stay open (a
//     partition the endpoints cannot see: only their timeouts notice);
//   - Cut: every open connection is closed and new ones are refused;
//   - Restore: back to normal.
type Balancer struct {
	ln net.Listener

	mu      sync.Mutex
	targets []string
	next    int // index into targets of the next connection's first try
	cut     bool
	paused  bool
	resume  chan struct{}         // closed on Restore while paused
	conns   map[net.Conn]struct{} // both ends of every open connection
	holding map[net.Conn]string   // client end -> the target it was sent to
	// brk, when set, breaks one answer (BreakBefore).
	brk *breakSpec

	wg sync.WaitGroup
}

// dialTimeout bounds one connection attempt to a target; on loopback a
// dead target refuses at once, so this only matters for a stuck one.
const dialTimeout = 5 * time.Second

// NewBalancer listens on a free loopback port and balances over targets
// (host:port each), in that order: the first connection goes to
// targets[0].
func NewBalancer(targets ...string) (*Balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Balancer{ln: ln, targets: slices.Clone(targets), conns: map[net.Conn]struct{}{},
		holding: map[net.Conn]string{}, resume: make(chan struct{})}
	b.wg.Add(1)
	go b.accept()
	return b, nil
}

// Addr is the balancer's host:port.
func (b *Balancer) Addr() string { return b.ln.Addr().String() }

// URL is http://Addr.
func (b *Balancer) URL() string { return "http://" + b.Addr() }

// Targets returns the current targets, in round-robin order.
func (b *Balancer) Targets() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.targets)
}

// Add appends a target to the rotation.
func (b *Balancer) Add(target string) {
	b.mu.Lock()
	b.targets = append(b.targets, target)
	b.mu.Unlock()
}

// Replace puts target new wherever old was (a replica restarted on
// another port). It reports whether old was a target. Open connections to
// old are left alone: they end when old does.
func (b *Balancer) Replace(old, new string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	found := false
	for i, t := range b.targets {
		if t == old {
			b.targets[i] = new
			found = true
		}
	}
	return found
}

// Remove takes target out of the rotation and reports whether it was in
// it. Open connections to it are left alone.
func (b *Balancer) Remove(target string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.targets)
	b.targets = slices.DeleteFunc(b.targets, func(t string) bool { return t == target })
	if len(b.targets) == n {
		return false
	}
	if len(b.targets) > 0 {
		b.next %= len(b.targets)
	} else {
		b.next = 0
	}
	return true
}

// Holding returns how many open client connections each target carries
// (targets without any are absent): where a client's long-lived stream is.
func (b *Balancer) Holding() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int{}
	for _, t := range b.holding {
		out[t]++
	}
	return out
}

func (b *Balancer) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		if b.cut {
			b.mu.Unlock()
			c.Close()
			continue
		}
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.wg.Add(1)
		go b.serve(c)
	}
}

// order returns the targets to try for a new connection: the next one in
// turn first, then the others in rotation order.
func (b *Balancer) order() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.targets)
	if n == 0 {
		return nil
	}
	first := b.next % n
	b.next = (first + 1) % n
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, b.targets[(first+i)%n])
	}
	return out
}

// dial connects to the first target of order that answers.
func (b *Balancer) dial() (net.Conn, string) {
	for _, t := range b.order() {
		if up, err := net.DialTimeout("tcp", t, dialTimeout); err == nil {
			return up, t
		}
	}
	return nil, ""
}

func (b *Balancer) serve(c net.Conn) {
	defer b.wg.Done()
	defer b.forget(c)
	up, target := b.dial()
	if up == nil {
		return // no target answered: the client sees the connection close
	}
	b.mu.Lock()
	if b.cut {
		b.mu.Unlock()
		up.Close()
		return
	}
	b.conns[up] = struct{}{}
	b.holding[c] = target
	b.mu.Unlock()
	defer b.forget(up)
	var wg sync.WaitGroup
	var armed atomic.Pointer[breakSpec] // this connection's answer breaks
	wg.Add(2)
	go func() { defer wg.Done(); b.pipe(up, c, &armed, true) }()
	go func() { defer wg.Done(); b.pipe(c, up, &armed, false) }()
	wg.Wait()
}

// breakSpec is BreakBefore's: the request it looks for, and the answer's
// bytes before which it closes the connection.
type breakSpec struct {
	request func(sent []byte) bool
	marker  []byte
}

// BreakBefore makes the next connection whose request request matches
// (given what the client sent, one read of it at a time) close, once,
// when its answer is about to pass marker: the client gets what came
// before, in the reads it came in, and never the read that holds marker.
// A test cuts a stream's replay before its snapshot_complete this way.
func (b *Balancer) BreakBefore(request func(sent []byte) bool, marker string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.brk = &breakSpec{request: request, marker: []byte(marker)}
}

// pipe copies src to dst, holding data back while paused. Either side
// ending closes both, so the other direction's copy ends too. The
// client's side (fromClient) arms its connection for a BreakBefore whose
// request it sends; the server's side breaks an armed connection.
func (b *Balancer) pipe(dst, src net.Conn, armed *atomic.Pointer[breakSpec], fromClient bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !b.waitUnpaused() {
				return
			}
			if fromClient {
				b.mu.Lock()
				if b.brk != nil && b.brk.request(buf[:n]) {
					armed.Store(b.brk)
					b.brk = nil
				}
				b.mu.Unlock()
			} else if s := armed.Load(); s != nil && bytes.Contains(buf[:n], s.marker) {
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
func (b *Balancer) waitUnpaused() bool {
	for {
		b.mu.Lock()
		cut, paused, resume := b.cut, b.paused, b.resume
		b.mu.Unlock()
		if cut {
			return false
		}
		if !paused {
			return true
		}
		<-resume
	}
}

func (b *Balancer) forget(c net.Conn) {
	b.mu.Lock()
	delete(b.conns, c)
	delete(b.holding, c)
	b.mu.Unlock()
	c.Close()
}

// Pause holds every byte in flight until Restore or Cut.
func (b *Balancer) Pause() {
	b.mu.Lock()
	b.paused = true
	b.mu.Unlock()
}

// Cut closes every connection and refuses new ones until Restore.
func (b *Balancer) Cut() {
	b.mu.Lock()
	b.cut = true
	for c := range b.conns {
		c.Close()
	}
	b.unpauseLocked()
	b.mu.Unlock()
}

// Restore lets traffic flow again.
func (b *Balancer) Restore() {
	b.mu.Lock()
	b.cut = false
	b.unpauseLocked()
	b.mu.Unlock()
}

func (b *Balancer) unpauseLocked() {
	if b.paused {
		b.paused = false
		close(b.resume)
		b.resume = make(chan struct{})
	}
}

// Close stops the balancer, closes every connection and waits for its
// goroutines.
func (b *Balancer) Close() {
	b.ln.Close()
	b.Cut()
	b.wg.Wait()
}
