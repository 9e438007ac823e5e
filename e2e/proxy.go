package e2e

import "sync"

// Proxy forwards TCP connections from a loopback port to one target, and
// lets a test simulate the network failing between them (Pause, Cut and
// Restore: see Balancer, of which it is the one-target case).
type Proxy struct {
	*Balancer

	mu     sync.Mutex // serialises SetTarget
	target string
}

// NewProxy listens on a free loopback port and forwards to target.
func NewProxy(target string) (*Proxy, error) {
	b, err := NewBalancer(target)
	if err != nil {
		return nil, err
	}
	return &Proxy{Balancer: b, target: target}, nil
}

// SetTarget changes where new connections go (after a server restart on
// another port).
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.Balancer.Replace(p.target, target)
	p.target = target
}
