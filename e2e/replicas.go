package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Replicas is several rein-server processes on one PostgreSQL database,
// as production runs them behind a load balancer: they share the stream
// ticket key (a ticket issued by one is accepted by the others) and, when
// set, the client token. A test reaches one replica by its URL, or all of
// them through a Balancer from NewBalancer, which follows kills and
// restarts.
type Replicas struct {
	// Servers are the replicas, in start order. A restarted one keeps its
	// index and gets a new URL.
	Servers []*Server
	// DB is the database URL they share.
	DB string

	ctx  context.Context
	logf Logf
	cfg  ReplicasConfig

	mu        sync.Mutex
	balancers []*Balancer
	links     []*Proxy // per replica, when cfg.DBLinks: its path to PostgreSQL
}

// ReplicasConfig says how to start the replicas.
type ReplicasConfig struct {
	Bin string
	// Dir holds the shared stream ticket key and client token files.
	Dir string
	// DB is the postgres:// URL of the database they share.
	DB string
	// N is how many replicas to start.
	N int
	// ClientToken, when set, is every replica's client token
	// (--api-token-file); empty runs them without authentication.
	ClientToken string
	// DBLinks puts a Proxy between each replica and PostgreSQL (see
	// DBLink), so a test can cut one replica off its database.
	DBLinks bool
	// Args are extra flags for every replica.
	Args []string
	Env  []string
}

// StartReplicas starts cfg.N replicas on cfg.DB, one after the other,
// each waited for until it listens.
func StartReplicas(ctx context.Context, logf Logf, cfg ReplicasConfig) (*Replicas, error) {
	if cfg.N < 1 {
		return nil, fmt.Errorf("start replicas: N must be at least 1, got %d", cfg.N)
	}
	if !strings.HasPrefix(cfg.DB, "postgres://") && !strings.HasPrefix(cfg.DB, "postgresql://") {
		return nil, fmt.Errorf("start replicas: DB %q is not a postgres:// URL (replicas share one PostgreSQL database)", cfg.DB)
	}
	key := make([]byte, 48)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("start replicas: ticket key: %w", err)
	}
	keyFile := filepath.Join(cfg.Dir, "stream-ticket.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("start replicas: %w", err)
	}
	args := []string{"--stream-ticket-key-file", keyFile}
	if cfg.ClientToken != "" {
		tokenFile := filepath.Join(cfg.Dir, "replicas-api-token")
		if err := os.WriteFile(tokenFile, []byte(cfg.ClientToken+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("start replicas: %w", err)
		}
		args = append(args, "--api-token-file", tokenFile)
	}
	cfg.Args = append(args, cfg.Args...)
	r := &Replicas{DB: cfg.DB, ctx: ctx, logf: logf, cfg: cfg}
	for i := range cfg.N {
		db := cfg.DB
		if cfg.DBLinks {
			u, err := url.Parse(cfg.DB)
			if err != nil {
				r.Stop()
				return nil, fmt.Errorf("start replicas: parse DB: %w", err)
			}
			link, err := NewProxy(u.Host)
			if err != nil {
				r.Stop()
				return nil, fmt.Errorf("start replicas: database link %d: %w", i, err)
			}
			r.links = append(r.links, link)
			u.Host = link.Addr()
			db = u.String()
		}
		s, err := StartServer(ctx, logf, ServerConfig{Bin: cfg.Bin, Dir: cfg.Dir, DB: db, Name: fmt.Sprintf("rein-server %d", i), Args: cfg.Args, Env: cfg.Env})
		if err != nil {
			r.Stop()
			return nil, fmt.Errorf("start replica %d of %d: %w", i+1, cfg.N, err)
		}
		r.Servers = append(r.Servers, s)
	}
	return r, nil
}

// Addr is replica i's host:port.
func (r *Replicas) Addr(i int) string {
	return strings.TrimPrefix(r.Servers[i].URL, "http://")
}

// NewBalancer returns a round-robin balancer over the replicas listed
// (all of them, in order, when none is), which Restart keeps up to date.
// The first connection goes to the first one listed. Close it with
// Close (or let Stop do it).
func (r *Replicas) NewBalancer(replicas ...int) (*Balancer, error) {
	if len(replicas) == 0 {
		for i := range r.Servers {
			replicas = append(replicas, i)
		}
	}
	targets := make([]string, len(replicas))
	for k, i := range replicas {
		if i < 0 || i >= len(r.Servers) {
			return nil, fmt.Errorf("balancer: no replica %d (there are %d)", i, len(r.Servers))
		}
		targets[k] = r.Addr(i)
	}
	b, err := NewBalancer(targets...)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.balancers = append(r.balancers, b)
	r.mu.Unlock()
	return b, nil
}

// Which returns the index of the replica at addr (host:port), or -1.
func (r *Replicas) Which(addr string) int {
	for i := range r.Servers {
		if r.Addr(i) == addr {
			return i
		}
	}
	return -1
}

// Kill kills replica i with SIGKILL (kill -9) and waits for it to exit.
// Its balancer targets stay: connections to it are refused and go to the
// next replica, until Restart.
func (r *Replicas) Kill(i int) { r.Servers[i].Kill() }

// Restart starts replica i again, after a Kill or a Stop, on a new port
// (as a replacement instance gets a new address), and points every
// balancer of NewBalancer that had it at the new address.
func (r *Replicas) Restart(ctx context.Context, i int) error {
	s := r.Servers[i]
	select {
	case <-s.Done():
	default:
		return fmt.Errorf("restart replica %d: still running", i)
	}
	old := r.Addr(i)
	if err := s.start(ctx, "0"); err != nil {
		return fmt.Errorf("restart replica %d: %w", i, err)
	}
	r.mu.Lock()
	for _, b := range r.balancers {
		b.Replace(old, r.Addr(i))
	}
	r.mu.Unlock()
	return nil
}

// DBLink is the proxy between replica i and PostgreSQL (Cut it to take
// the database away from that replica alone), or nil without DBLinks.
func (r *Replicas) DBLink(i int) *Proxy {
	if i >= len(r.links) {
		return nil
	}
	return r.links[i]
}

// Stop stops every replica (SIGINT, then SIGKILL after a grace period),
// closes the balancers and the database links. Calling it again does
// nothing more.
func (r *Replicas) Stop() {
	var wg sync.WaitGroup
	for _, s := range r.Servers {
		wg.Add(1)
		go func() { defer wg.Done(); s.Stop(15 * time.Second) }()
	}
	wg.Wait()
	r.mu.Lock()
	bs, links := r.balancers, r.links
	r.balancers, r.links = nil, nil
	r.mu.Unlock()
	for _, b := range bs {
		b.Close()
	}
	for _, l := range links {
		l.Close()
	}
}

// Health returns the status code of replica i's GET /healthz, or an
// error when it does not answer.
func (r *Replicas) Health(ctx context.Context, i int) (int, error) {
	return health(ctx, r.Servers[i].URL)
}

// WaitHealth waits until replica i's GET /healthz answers want (a bounded
// wait for a condition: ctx bounds it).
func (r *Replicas) WaitHealth(ctx context.Context, i, want int) error {
	var last string
	for {
		code, err := r.Health(ctx, i)
		if err == nil && code == want {
			return nil
		}
		last = fmt.Sprint(code)
		if err != nil {
			last = err.Error()
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(fmt.Errorf("replica %d: waiting for /healthz %d (last: %s)", i, want, last), ctx.Err())
		case <-t.C:
		}
	}
}

// health GETs base/healthz and returns the status code.
func health(ctx context.Context, base string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
	if err != nil {
		return 0, err
	}
	// A fresh connection each time: a kept-alive one could outlive the
	// server's view of its database.
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}
