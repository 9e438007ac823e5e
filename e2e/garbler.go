package e2e

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
)

// HeaderGarbler is an HTTP reverse proxy on a loopback port in front of
// rein-server that spoils a header of the next event posts it is told to
// (POST /sessions/{id}/events): what a proxy that rewrites headers does,
// or an agentd whose state file holds garbage. Everything else, the
// command stream included, passes through untouched.
type HeaderGarbler struct {
	interceptor

	mu      sync.Mutex
	left    []Garble  // what the next event posts get, in order
	garbled []Garbled // the event posts spoiled so far
}

// Garble is one header to set on an event post: Value replaces what
// agentd sent.
type Garble struct {
	Header, Value string
}

// Garbled is an event post the HeaderGarbler spoiled: the header it set,
// the body agentd sent, and the server's status.
type Garbled struct {
	Garble
	Body   []byte
	Status int
}

// NewHeaderGarbler listens on a free loopback port and forwards to target
// (http://host:port).
func NewHeaderGarbler(target string) (*HeaderGarbler, error) {
	g := &HeaderGarbler{}
	// The command stream is SSE: each command goes through as it comes.
	if err := g.start(target, g, func(p *httputil.ReverseProxy) { p.FlushInterval = -1 }); err != nil {
		return nil, err
	}
	return g, nil
}

// GarbleNext spoils the next len(gs) event posts, one Garble each, in order.
func (g *HeaderGarbler) GarbleNext(gs ...Garble) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.left = append(g.left, gs...)
}

// Left is how many Garbles are still to be used.
func (g *HeaderGarbler) Left() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.left)
}

// Garbled returns the event posts spoiled so far, in arrival order.
func (g *HeaderGarbler) Garbled() []Garbled {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Garbled(nil), g.garbled...)
}

func (g *HeaderGarbler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/sessions/") || !strings.HasSuffix(r.URL.Path, "/events") {
		g.proxy.ServeHTTP(w, r)
		return
	}
	g.mu.Lock()
	if len(g.left) == 0 {
		g.mu.Unlock()
		g.proxy.ServeHTTP(w, r)
		return
	}
	gb := g.left[0]
	g.left = g.left[1:]
	g.mu.Unlock()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the client left: nothing reached the server
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.Header.Set(gb.Header, gb.Value)
	rec := &statusWriter{ResponseWriter: w}
	g.proxy.ServeHTTP(rec, r)
	g.mu.Lock()
	g.garbled = append(g.garbled, Garbled{Garble: gb, Body: body, Status: rec.status})
	g.mu.Unlock()
}

// statusWriter remembers the status written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
