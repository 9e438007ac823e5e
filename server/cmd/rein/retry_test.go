package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/client"
)

// commandsFront is a proxy in front of s that answers the nth POST of a
// command (from 1) with 503 while refuse(n), and passes everything else
// on. sent returns each command POST's Idempotency-Key, in order.
func commandsFront(t *testing.T, s *app.App, refuse func(n int) bool) (base string, sent func() []string) {
	t.Helper()
	target, _ := url.Parse(s.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	var keys []string
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/commands") {
			mu.Lock()
			keys = append(keys, r.Header.Get("Idempotency-Key"))
			n := len(keys)
			mu.Unlock()
			if refuse(n) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `{"code":"unavailable","message":"database unavailable"}`)
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	return front.URL, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), keys...)
	}
}

// A command the server could not take for now (503) is sent again with its
// Idempotency-Key, and rein says so on stderr; the prompt is stored once.
func TestCommandResent(t *testing.T) {
	s := startServer(t, app.Options{})
	createSession(t, s, "s1")
	front, sent := commandsFront(t, s, func(n int) bool { return n == 1 })

	r := rein(t, front, "prompt", "--queue", "s1", "fix it")
	if r.code != 0 || r.stdout != "prompt sent to s1 (command 1)\n" {
		t.Fatalf("rein prompt through a 503: %+v", r)
	}
	if want := "rein: sending the command failed (database unavailable (unavailable)); sending it again in 250ms (it is stored once)\n"; r.stderr != want {
		t.Errorf("stderr %q; want %q", r.stderr, want)
	}
	if keys := sent(); len(keys) != 2 || keys[0] == "" || keys[0] != keys[1] {
		t.Errorf("Idempotency-Keys sent: %q; want the same one twice", keys)
	}
	cl, err := client.New(s.URL(), testToken)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := cl.Session(t.Context(), "s1")
	if err != nil || rec.PendingCommands != 1 {
		t.Fatalf("session after the resend: %+v, %v; want 1 pending command", rec, err)
	}
}

// rein prompt --idempotency-key: the same prompt run again with the same
// key (a retried script) is delivered once, and rein says it was not sent
// again; the same key with another prompt is refused; a malformed key is
// a usage error.
func TestPromptIdempotencyKey(t *testing.T) {
	s := startServer(t, app.Options{})
	next := sandbox(t, s, "s1", createSession(t, s, "s1"))
	args := []string{"prompt", "--idempotency-key", "deploy-42", "s1", "deploy", "it"}
	if out := mustRein(t, s.URL(), args...); out != "prompt sent to s1 (command 1)\n" {
		t.Fatalf("first run printed %q", out)
	}
	if out := mustRein(t, s.URL(), args...); out != "prompt already sent to s1 under this key (command 1): not sent again\n" {
		t.Fatalf("second run printed %q", out)
	}
	if got := next(); got.ID != 1 || got.Text != "deploy it" {
		t.Fatalf("sandbox got %+v", got)
	}
	if out := mustRein(t, s.URL(), "prompt", "s1", "next"); out != "prompt sent to s1 (command 2)\n" {
		t.Fatalf("a prompt after the retried one printed %q", out)
	}
	if got := next(); got.ID != 2 {
		t.Fatalf("the sandbox's next command is %+v; want command 2 (the retry delivered nothing)", got)
	}
	r := rein(t, s.URL(), "prompt", "--idempotency-key", "deploy-42", "s1", "something else")
	if r.code != 1 || !strings.Contains(r.stderr, `"deploy-42" was already used for command 1`) || !strings.HasSuffix(r.stderr, "(conflict)\n") {
		t.Errorf("another prompt with the key: %+v", r)
	}
	r = rein(t, s.URL(), "prompt", "--idempotency-key", "two words", "s1", "x")
	if r.code != 2 || r.stderr != "rein: --idempotency-key: must be 1 to 255 visible ASCII characters (no spaces)\n" {
		t.Errorf("a malformed key: %+v", r)
	}
}

// Ctrl-C while rein waits to send a command again ends it as any
// interruption does: exit 130, no error printed as if it were the
// outcome (the last send's 503); what it says is that the prompt may be
// stored (a proxy's 503 may come after it passed the prompt on), with
// its key (TestPromptInterruptedMayBeStored).
func TestCommandResendInterrupted(t *testing.T) {
	s := startServer(t, app.Options{})
	createSession(t, s, "s1")
	front, _ := commandsFront(t, s, func(int) bool { return true })

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan result, 1)
	go func() { done <- reinTo(t, ctx, &out, &errOut, front, "prompt", "--queue", "s1", "fix it") }()
	waitFor(t, &errOut, "sending it again")
	cancel() // as the SIGINT handler does
	r := <-done
	if r.code != 130 || strings.Contains(r.stderr, "rein: database unavailable") {
		t.Errorf("interrupted while waiting to resend: exit %d, stderr %q; want 130 and no error", r.code, r.stderr)
	}
}

// A proxy's page answered with 200 (a login or block page) is not
// rein-server's answer: rein rm does not report the session deleted, rein
// sessions says what it got instead of "invalid character '<'", and rein
// watch says why it reconnects instead of "the server ended the stream".
func TestProxyPageIsNotAnAnswer(t *testing.T) {
	s := startServer(t, app.Options{})
	createSession(t, s, "s1")
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, "<html><body>Please sign in</body></html>")
	}))
	defer front.Close()

	const page = "(HTTP 200 OK, text/html; charset=utf-8) is not rein-server's"
	r := rein(t, front.URL, "rm", "s1")
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "DELETE /sessions/s1: the answer "+page+" an answer") {
		t.Errorf("rm through a sign-in page: %+v", r)
	}
	cl, _ := client.New(s.URL(), testToken)
	if _, err := cl.Session(t.Context(), "s1"); err != nil {
		t.Errorf("session s1 after rm through a sign-in page: %v", err)
	}
	r = rein(t, front.URL, "sessions")
	if r.code != 1 || !strings.Contains(r.stderr, "GET /sessions: the answer "+page+" JSON") {
		t.Errorf("sessions through a sign-in page: %+v", r)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan result, 1)
	go func() { done <- reinTo(t, ctx, &out, &errOut, front.URL, "watch", "s1") }()
	waitFor(t, &errOut, "GET /sessions/s1/stream: the answer "+page+" event stream")
	cancel()
	<-done
}

// An answer with nothing in it (a proxy or another service on the
// address answering 200 to everything) is not rein-server's either: rein
// prompt does not report "command 0" sent, rein create does not report a
// session created without a token, rein rm does not report it deleted.
func TestEmptyAnswerIsNotAnAnswer(t *testing.T) {
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	defer front.Close()

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"prompt", "--queue", "s1", "fix it"}, "POST /sessions/s1/commands: the answer (HTTP 200 OK, no Content-Type) is not rein-server's JSON"},
		{[]string{"create", "s1"}, "POST /sessions/s1: the answer (HTTP 200 OK, no Content-Type) is not rein-server's JSON"},
		{[]string{"rm", "s1"}, "DELETE /sessions/s1: the answer (HTTP 200 OK, no Content-Type) is not rein-server's an answer"},
	} {
		r := rein(t, front.URL, tc.args...)
		if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("rein %s answered 200 with nothing: %+v; want exit 1 and %q", strings.Join(tc.args, " "), r, tc.want)
		}
	}
}

// A prompt whose every send lost its answer (the server stored it, and
// then went away for longer than rein resends) may be stored: rein says
// so, and gives the key it was sent with, so that running it again
// delivers it once. Without the key, running the same command again (the
// natural thing after "rein: ... EOF") is a second prompt to the agent.
func TestPromptUnconfirmedGivesItsKey(t *testing.T) {
	s := startServer(t, app.Options{})
	next := sandbox(t, s, "s1", createSession(t, s, "s1"))
	target, _ := url.Parse(s.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/commands") {
			proxy.ServeHTTP(w, r)
			return
		}
		// Stored, and the answer lost on the way back.
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, r)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
	}))
	defer front.Close()

	r := rein(t, front.URL, "prompt", "s1", "deploy", "it")
	_, key, ok := strings.Cut(r.stderr, "--idempotency-key ")
	key = strings.TrimSpace(key)
	if r.code != 1 || !ok || !strings.Contains(r.stderr, "the prompt may have been stored") {
		t.Fatalf("prompt whose answers were all lost: exit %d, stderr %q; want 1 and the key to send it again with", r.code, r.stderr)
	}
	if out := mustRein(t, s.URL(), "prompt", "--idempotency-key", key, "s1", "deploy", "it"); out != "prompt already sent to s1 under this key (command 1): not sent again\n" {
		t.Errorf("the prompt sent again with the key given printed %q", out)
	}
	mustRein(t, s.URL(), "prompt", "s1", "next")
	if got := next(); got.ID != 1 || got.Text != "deploy it" {
		t.Fatalf("sandbox got %+v", got)
	}
	if got := next(); got.ID != 2 || got.Text != "next" {
		t.Errorf("the sandbox's next command is %+v; want command 2, \"next\" (the prompt stored once)", got)
	}
}

// Ctrl-C on a prompt whose send hangs (a server or proxy that took the
// request and does not answer) after the server stored it: rein said
// nothing and exited 130, so the user, taking the prompt for not sent,
// ran it again under a new key and the agent got it twice. It exits 130
// still, and says that the prompt may be stored, with the key that sends
// it again at most once.
func TestPromptInterruptedMayBeStored(t *testing.T) {
	s := startServer(t, app.Options{})
	next := sandbox(t, s, "s1", createSession(t, s, "s1"))
	target, _ := url.Parse(s.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	stored := make(chan struct{}, 1)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/commands") {
			proxy.ServeHTTP(w, r)
			return
		}
		// Stored, and the answer held until the client gives up.
		proxy.ServeHTTP(httptest.NewRecorder(), r.Clone(context.WithoutCancel(r.Context())))
		stored <- struct{}{}
		<-r.Context().Done()
	}))
	defer front.Close()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan result, 1)
	go func() { done <- reinTo(t, ctx, &out, &errOut, front.URL, "prompt", "s1", "deploy", "it") }()
	select {
	case <-stored:
	case <-time.After(testDeadline):
		t.Fatal("the prompt never reached the server")
	}
	cancel() // as the SIGINT handler does
	r := <-done
	_, key, ok := strings.Cut(r.stderr, "--idempotency-key ")
	key = strings.TrimSpace(key)
	if r.code != 130 || !ok || !strings.HasPrefix(r.stderr, "rein: interrupted: ") || !strings.Contains(r.stderr, "the prompt may have been stored") {
		t.Fatalf("prompt interrupted after it was stored: exit %d, stderr %q; want 130, and the key to send it again with", r.code, r.stderr)
	}
	if out := mustRein(t, s.URL(), "prompt", "--idempotency-key", key, "s1", "deploy", "it"); out != "prompt already sent to s1 under this key (command 1): not sent again\n" {
		t.Errorf("the prompt sent again with the key given printed %q", out)
	}
	if got := next(); got.ID != 1 || got.Text != "deploy it" {
		t.Fatalf("sandbox got %+v", got)
	}
}
