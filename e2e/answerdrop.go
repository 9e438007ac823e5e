package e2e

import (
	"context"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AnswerDropper is an HTTP reverse proxy on a loopback port in front of
// rein-server that loses answers: the next requests it is told to spoil
// reach the server, which answers them, and then the client's connection
// is closed without the answer. That is a network failing after the
// request arrived (a mobile link, a proxy's idle timeout): the client
// cannot tell whether what it sent was stored. Everything else, streams
// included, passes through, each request on a new connection to target.
type AnswerDropper struct {
	interceptor

	mu     sync.Mutex
	drops  int       // how many matching requests still lose their answer
	breaks int       // how many lose it after its status line and headers
	seen   []Dropped // every matching request, in arrival order
	hold   *held     // what the next matching request waits for (HoldNext)
	match  func(*http.Request) bool
}

// Dropped is a request the AnswerDropper matched: its Idempotency-Key,
// the server's status, and whether the client got the answer.
type Dropped struct {
	Key     string
	Status  int
	Dropped bool
}

// NewAnswerDropper listens on a free loopback port and forwards to target
// (http://host:port). Requests for which match returns true are the ones
// DropNext spoils and Seen records.
func NewAnswerDropper(target string, match func(*http.Request) bool) (*AnswerDropper, error) {
	d := &AnswerDropper{match: match}
	err := d.start(target, d, func(p *httputil.ReverseProxy) {
		// Each request on a connection of its own: behind a Balancer, a
		// resend goes to the next replica, not back to the one that
		// stored the command.
		p.Transport = &http.Transport{DisableKeepAlives: true}
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// CommandPosts matches command POSTs (POST /sessions/{id}/commands).
func CommandPosts(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/sessions/") && strings.HasSuffix(r.URL.Path, "/commands")
}

// DropNext makes the next n matching requests lose their answers.
func (d *AnswerDropper) DropNext(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.drops = n
}

// BreakNext makes the next n matching requests lose their answers after
// the status line and headers came through: the client has a status and
// then its body read fails (a link that fails a moment later).
func (d *AnswerDropper) BreakNext(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.breaks = n
}

// held is a HoldNext: arrived closes when the request came in, release
// lets it through.
type held struct {
	arrived, release chan struct{}
	once             sync.Once
}

// HoldNext makes the next matching request wait before it reaches the
// server until release is called (or its client gives up): an answer on
// its way for as long as a test needs, while every other request passes.
// arrived is closed when that request came in. release may be called more
// than once.
func (d *AnswerDropper) HoldNext() (arrived <-chan struct{}, release func()) {
	h := &held{arrived: make(chan struct{}), release: make(chan struct{})}
	d.mu.Lock()
	d.hold = h
	d.mu.Unlock()
	return h.arrived, func() { h.once.Do(func() { close(h.release) }) }
}

// Seen returns the matching requests so far.
func (d *AnswerDropper) Seen() []Dropped {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Dropped(nil), d.seen...)
}

// interceptor is the part of a test proxy (AnswerDropper,
// HeaderGarbler) that is not its tampering: a reverse proxy to target on
// a free loopback port, whose handler sees every request first and hands
// on (to proxy) what it leaves alone.
type interceptor struct {
	srv   *http.Server
	ln    net.Listener
	proxy *httputil.ReverseProxy
}

// start listens and serves h in front of target (http://host:port);
// tune, when not nil, sets up the reverse proxy before the first request.
func (p *interceptor) start(target string, h http.Handler, tune func(*httputil.ReverseProxy)) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	p.ln, p.proxy = ln, httputil.NewSingleHostReverseProxy(u)
	if tune != nil {
		tune(p.proxy)
	}
	p.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return nil
}

// URL is the proxy's base URL.
func (p *interceptor) URL() string { return "http://" + p.ln.Addr().String() }

// Close stops the proxy: a second for its requests to end, then its
// connections are closed.
func (p *interceptor) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		_ = p.srv.Close()
	}
}

func (d *AnswerDropper) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !d.match(r) {
		d.proxy.ServeHTTP(w, r)
		return
	}
	d.mu.Lock()
	drop := d.drops > 0
	if drop {
		d.drops--
	}
	broken := !drop && d.breaks > 0
	if broken {
		d.breaks--
	}
	h := d.hold
	d.hold = nil
	d.mu.Unlock()
	if h != nil {
		close(h.arrived)
		select {
		case <-h.release:
		case <-r.Context().Done():
			return // the client left: nothing reached the server
		}
	}
	// The server answers in full (a command's answer is small), and the
	// client gets it, or nothing of it.
	got := httptest.NewRecorder()
	d.proxy.ServeHTTP(got, r)
	d.mu.Lock()
	d.seen = append(d.seen, Dropped{Key: r.Header.Get("Idempotency-Key"), Status: got.Code, Dropped: drop || broken})
	d.mu.Unlock()
	if broken {
		// The headers promise the body; the connection closes before it.
		maps.Copy(w.Header(), got.Header())
		w.Header().Set("Content-Length", strconv.Itoa(got.Body.Len()))
		w.WriteHeader(got.Code)
		conn, _, err := http.NewResponseController(w).Hijack() // flushes the headers
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		_ = conn.Close()
		return
	}
	if !drop {
		maps.Copy(w.Header(), got.Header())
		w.WriteHeader(got.Code)
		_, _ = w.Write(got.Body.Bytes())
		return
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2): answer with what a dead link gives.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
