package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/client"
)

// faultyFront is a reverse proxy in front of a real rein-server that spoils
// the first command POSTs: "drop" forwards one and then closes the
// client's connection without its answer (the server stored it; the
// client cannot know), "503" answers one itself without forwarding it.
// noManifest hides the server's discovery manifest, as an older server
// without one. It records every command POST's Idempotency-Key.
type faultyFront struct {
	t          *testing.T
	proxy      *httputil.ReverseProxy
	mu         sync.Mutex
	faults     []string
	keys       []string
	noManifest bool
}

func (f *faultyFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.noManifest && r.URL.Path == "/.well-known/rein.json" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/commands") {
		f.proxy.ServeHTTP(w, r)
		return
	}
	f.mu.Lock()
	f.keys = append(f.keys, r.Header.Get(protocol.HeaderIdempotencyKey))
	fault := ""
	if len(f.faults) > 0 {
		fault, f.faults = f.faults[0], f.faults[1:]
	}
	f.mu.Unlock()
	switch fault {
	case "503":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"code":"unavailable","message":"database unavailable"}`)
	case "drop":
		rec := httptest.NewRecorder()
		f.proxy.ServeHTTP(rec, r)
		if rec.Code != http.StatusAccepted {
			f.t.Errorf("the dropped command's answer was %d %s; want 202", rec.Code, rec.Body)
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			f.t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
	default:
		f.proxy.ServeHTTP(w, r)
	}
}

// front starts a real server on SQLite with session "s" and the proxy in
// front of it, and returns a client of the proxy and one of the server.
func front(t *testing.T, faults ...string) (*faultyFront, *client.Client, *client.Client) {
	t.Helper()
	s, err := app.New(app.Options{DBPath: filepath.Join(t.TempDir(), "rein.db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	target, _ := url.Parse(s.URL())
	f := &faultyFront{t: t, proxy: httputil.NewSingleHostReverseProxy(target), faults: faults}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	direct, _ := client.New(s.URL(), "")
	if _, err := direct.CreateSession(t.Context(), "s", ""); err != nil {
		t.Fatal(err)
	}
	c, _ := client.New(srv.URL, "")
	return f, c, direct
}

// pendingOf is the session's count of accepted commands.
func pendingOf(t *testing.T, c *client.Client) int64 {
	t.Helper()
	rec, err := c.Session(t.Context(), "s")
	if err != nil {
		t.Fatal(err)
	}
	return rec.PendingCommands
}

// A command whose answer is lost, or refused as unavailable, is sent again
// with the same Idempotency-Key and stored once; each resend is reported.
func TestCommandResentWithItsKey(t *testing.T) {
	f, c, direct := front(t, "drop", "503", "drop")
	var waits []time.Duration
	c.OnRetry = func(err error, wait time.Duration) { waits = append(waits, wait) }
	id, err := c.QueuePrompt(t.Context(), "s", "once")
	if err != nil || id != 1 {
		t.Fatalf("QueuePrompt = %d, %v; want command 1", id, err)
	}
	if len(f.keys) != 4 || f.keys[0] == "" || f.keys[1] != f.keys[0] || f.keys[2] != f.keys[0] || f.keys[3] != f.keys[0] {
		t.Fatalf("keys sent: %q; want four sends with one key", f.keys)
	}
	// net/http resends a request with an Idempotency-Key by itself when
	// a reused connection fails before any answer, so some of the three
	// resends may be its, unseen by OnRetry.
	if len(waits) == 0 || len(waits) > 3 || waits[0] != 250*time.Millisecond {
		t.Errorf("OnRetry heard %v; want 1 to 3 resends, the first after 250ms", waits)
	}
	if n := pendingOf(t, direct); n != 1 {
		t.Fatalf("pendingCommands %d; want the prompt stored once", n)
	}
	// A new command gets a new key.
	if id, err := c.QueuePrompt(t.Context(), "s", "twice"); err != nil || id != 2 || f.keys[4] == f.keys[0] {
		t.Fatalf("second prompt: %d, %v, key %q (first %q); want command 2 with a new key", id, err, f.keys[4], f.keys[0])
	}

	// CommandOnce with a caller's key: the second send is a replay.
	cmd := protocol.Command{Type: protocol.CommandPrompt, Text: "mine", Queue: true}
	for i, replayed := range []bool{false, true} {
		res, err := c.CommandOnce(t.Context(), "s", "my-key", cmd)
		if err != nil || res.ID != 3 || res.Replayed != replayed {
			t.Fatalf("CommandOnce #%d = %+v, %v; want command 3, replayed %v", i+1, res, err, replayed)
		}
	}
}

// A refusal that waiting does not change is not resent, and neither is
// anything sent to a server without the idempotentCommands feature: the
// lost answer is the caller's error, after one send.
func TestCommandNotResent(t *testing.T) {
	f, c, _ := front(t)
	if _, err := c.Prompt(t.Context(), "s", "no sandbox"); protocol.CodeOf(err) != protocol.CodeNoSandbox || len(f.keys) != 1 {
		t.Fatalf("prompt without a sandbox: %v after %d sends; want no_sandbox after 1", err, len(f.keys))
	}

	f, c, direct := front(t, "drop")
	f.noManifest = true
	if _, err := c.QueuePrompt(t.Context(), "s", "once"); err == nil || len(f.keys) != 1 {
		t.Fatalf("lost answer from an older server: %v after %d sends; want the error after 1", err, len(f.keys))
	}
	if n := pendingOf(t, direct); n != 1 {
		t.Fatalf("pendingCommands %d; want 1", n)
	}

	ctx, cancel := context.WithCancel(t.Context())
	f, c, _ = front(t, "503", "503", "503")
	c.OnRetry = func(error, time.Duration) { cancel() }
	if _, err := c.QueuePrompt(ctx, "s", "cancelled"); protocol.CodeOf(err) != protocol.CodeUnavailable || !errors.Is(err, context.Canceled) || len(f.keys) != 1 {
		t.Fatalf("cancelled while waiting to resend: %v after %d sends; want the cancel and the 503 after 1", err, len(f.keys))
	}
}

// A server whose certificate the client does not trust is not sent the
// command again: waiting does not change that.
func TestCommandNotResentOnUntrustedCertificate(t *testing.T) {
	var posts atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { posts.Add(1) }))
	defer srv.Close()
	c, _ := client.New(srv.URL, "")
	c.OnRetry = func(err error, _ time.Duration) { t.Errorf("resent after %v", err) }
	var cert *tls.CertificateVerificationError
	if _, err := c.Prompt(t.Context(), "s", "hi"); !errors.As(err, &cert) || posts.Load() != 0 {
		t.Fatalf("prompt to an untrusted server: %v, %d requests reached it; want the certificate error at once", err, posts.Load())
	}
}

// TestRedirectThatChangesTheMethod: a front that redirects every request
// to the server's own address with a 301 (as a proxy sending http to
// https does). net/http would follow a DELETE or POST with a GET, which
// reads the session and answers 200: rein rm said "deleted" and the
// session stayed. The client refuses such a redirect, says where it
// pointed, and does not resend a command into it; a GET follows it.
func TestRedirectThatChangesTheMethod(t *testing.T) {
	_, _, direct := front(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, direct.Base()+r.URL.RequestURI(), http.StatusMovedPermanently)
	}))
	t.Cleanup(srv.Close)
	c, _ := client.New(srv.URL, "")
	c.OnRetry = func(err error, _ time.Duration) { t.Errorf("command resent after %v", err) }

	var re *client.RedirectError
	err := c.DeleteSession(t.Context(), "s")
	if !errors.As(err, &re) || re.Method != http.MethodDelete || re.To != direct.Base()+"/sessions/s" {
		t.Errorf("delete through a 301: %v", err)
	}
	if _, err := c.Prompt(t.Context(), "s", "hi"); !errors.As(err, &re) || re.Method != http.MethodPost {
		t.Errorf("prompt through a 301: %v", err)
	}
	if _, err := c.Session(t.Context(), "s"); err != nil {
		t.Errorf("the session is gone, or a GET does not follow the redirect: %v", err)
	}
	if n := pendingOf(t, direct); n != 0 {
		t.Errorf("the session has %d commands", n)
	}
}
