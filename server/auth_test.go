package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
)

const testAPIToken = "client-token-for-tests-0123456789"

func bearerHdr(tok string) []string {
	if tok == "" {
		return nil
	}
	return []string{"Authorization", "Bearer " + tok}
}

// fakeClock is an injectable Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.UnixMilli(1_700_000_000_000)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// status sends a request and returns its status and, for an error, the
// error body. It reads only the headers of a stream, then hangs up.
func (c *client) status(method, path, body string, hdr ...string) (int, protocol.ErrorBody, http.Header) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), streamDeadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var e protocol.ErrorBody
	if resp.StatusCode >= 400 {
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &e); err != nil {
			c.t.Fatalf("%s %s: %d with a body that is not a JSON error: %q", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, e, resp.Header
}

// create makes a session with the client token and returns its sandbox
// token.
func (c *client) create(id string, hdr ...string) string {
	c.t.Helper()
	var got server.CreatedSession
	c.must(http.StatusCreated, &got, "POST", "/sessions/"+id, nil, hdr...)
	if got.ID != id || len(got.SandboxToken) != 43 {
		c.t.Fatalf("POST /sessions/%s = %+v; want the record and a 43-character sandbox token", id, got)
	}
	return got.SandboxToken
}

func (c *client) rotate(id string, hdr ...string) string {
	c.t.Helper()
	var got struct {
		SandboxToken string `json:"sandboxToken"`
	}
	c.must(http.StatusOK, &got, "POST", "/sessions/"+id+"/token", nil, hdr...)
	if len(got.SandboxToken) != 43 {
		c.t.Fatalf("rotate %s = %+v", id, got)
	}
	return got.SandboxToken
}

// Every route against every kind of credential.
func TestAuthRouteTable(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{APIToken: testAPIToken})
	c := newClient(t, s)
	admin := bearerHdr(testAPIToken)

	creds := []string{"none", "client", "own sandbox", "other sandbox", "rotated sandbox", "wrong"}
	type row struct {
		method, path, body string
		want               [6]int // by creds
	}
	rows := []row{
		{"GET", "/healthz", "", [6]int{200, 200, 200, 200, 200, 200}},
		{"GET", "/sessions", "", [6]int{401, 200, 403, 403, 401, 401}},
		{"GET", "/sessions/stream", "", [6]int{401, 200, 403, 403, 401, 401}},
		{"POST", "/sessions/stream-ticket", "", [6]int{401, 200, 403, 403, 401, 401}},
		{"POST", "/sessions/new-{id}", "", [6]int{401, 201, 403, 403, 401, 401}},
		{"GET", "/sessions/{id}", "", [6]int{401, 200, 403, 403, 401, 401}},
		{"DELETE", "/sessions/{id}", "", [6]int{401, 204, 403, 403, 401, 401}},
		{"POST", "/sessions/{id}/token", "", [6]int{401, 200, 403, 403, 401, 401}},
		// 409 no_sandbox: authorized, but no sandbox holds the stream.
		{"POST", "/sessions/{id}/commands", `{"type":"abort"}`, [6]int{401, 409, 403, 403, 401, 401}},
		{"GET", "/sessions/{id}/commands", "", [6]int{401, 200, 200, 403, 401, 401}},
		{"POST", "/sessions/{id}/events", `{"type":"heartbeat"}`, [6]int{401, 202, 202, 403, 401, 401}},
		{"GET", "/sessions/{id}/artifacts", "", [6]int{401, 200, 403, 403, 401, 401}},
		{"GET", "/sessions/{id}/stream", "", [6]int{401, 200, 403, 403, 401, 401}},
		{"POST", "/sessions/{id}/stream-ticket", "", [6]int{401, 200, 403, 403, 401, 401}},
		{"GET", "/nope", "", [6]int{401, 404, 403, 403, 401, 401}},
		// A bad id is not even validated without a token.
		{"GET", "/sessions/bad%20id", "", [6]int{401, 400, 403, 403, 401, 401}},
	}
	n := 0
	for _, rw := range rows {
		for ci, cred := range creds {
			n++
			// Fresh sessions per case: DELETE and rotation change them.
			target, other := fmt.Sprintf("t%d", n), fmt.Sprintf("o%d", n)
			own := c.create(target, admin...)
			otherTok := c.create(other, admin...)
			var tok string
			switch cred {
			case "client":
				tok = testAPIToken
			case "own sandbox":
				tok = own
			case "other sandbox":
				tok = otherTok
			case "rotated sandbox":
				tok = own
				c.rotate(target, admin...)
			case "wrong":
				tok = "not-a-token-anyone-issued-0123456789abcdef"
			}
			path := strings.ReplaceAll(rw.path, "{id}", target)
			got, e, hdr := c.status(rw.method, path, rw.body, bearerHdr(tok)...)
			want := rw.want[ci]
			if got != want {
				t.Errorf("%s %s with %s token: %d %+v; want %d", rw.method, rw.path, cred, got, e, want)
				continue
			}
			switch got {
			case 401:
				if e.Code != protocol.CodeUnauthorized || hdr.Get("WWW-Authenticate") == "" {
					t.Errorf("%s %s with %s token: 401 %+v, WWW-Authenticate %q", rw.method, rw.path, cred, e, hdr.Get("WWW-Authenticate"))
				}
			case 403:
				if e.Code != protocol.CodeForbidden {
					t.Errorf("%s %s with %s token: 403 %+v", rw.method, rw.path, cred, e)
				}
			}
			if tok != "" && strings.Contains(e.Message, tok) {
				t.Errorf("%s %s: error message echoes the token: %q", rw.method, rw.path, e.Message)
			}
		}
	}

	// Authorization headers that are not "Bearer <token>".
	for _, h := range []string{"Basic dXNlcjpwYXNz", "Bearer", "Bearer ", testAPIToken, "Token " + testAPIToken} {
		if got, e, _ := c.status("GET", "/sessions", "", "Authorization", h); got != 401 || e.Code != protocol.CodeUnauthorized {
			t.Errorf("Authorization %q: %d %+v; want 401", h, got, e)
		}
	}
	// The scheme is case-insensitive (RFC 7235).
	if got, e, _ := c.status("GET", "/sessions", "", "Authorization", "bearer "+testAPIToken); got != 200 {
		t.Errorf("lower-case bearer: %d %+v", got, e)
	}
}

// Rotation: the new token works, the old one stops at once, and the
// command stream the old one held is closed.
func TestRotateSandboxToken(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{APIToken: testAPIToken})
	c := newClient(t, s)
	admin := bearerHdr(testAPIToken)
	old := c.create("a", admin...)

	cmds := c.stream("/sessions/a/commands", append(bearerHdr(old), protocol.HeaderInstance, "i1")...)
	waitStatus(t, c, "a", protocol.StatusLive, admin...)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `{"type":"turn_started","turnId":"t1","source":"user"}`, bearerHdr(old)...)

	fresh := c.rotate("a", admin...)
	cmds.expectEnd() // the old token's stream is closed by the server
	waitStatus(t, c, "a", protocol.StatusDisconnected, admin...)

	if got, e, _ := c.status("GET", "/sessions/a/commands", "", bearerHdr(old)...); got != 401 || e.Code != protocol.CodeUnauthorized {
		t.Fatalf("reconnect with the old token: %d %+v; want 401", got, e)
	}
	if got, e, _ := c.status("POST", "/sessions/a/events", `{"type":"heartbeat"}`, bearerHdr(old)...); got != 401 {
		t.Fatalf("events with the old token: %d %+v; want 401", got, e)
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `{"type":"text_delta","delta":"hi"}`, bearerHdr(fresh)...)
	cmds2 := c.stream("/sessions/a/commands", append(bearerHdr(fresh), protocol.HeaderInstance, "i2")...)
	waitStatus(t, c, "a", protocol.StatusLive, admin...)
	cmds2.close()

	// A request that passed the HTTP check with the old token but reaches
	// the writer after the rotation is refused there too.
	oldHash := sha256.Sum256([]byte(old))
	_, err := s.Ingest(context.Background(), "a", server.Sandbox{Token: &oldHash}, []protocol.Event{{Type: protocol.EventTextDelta, Delta: "late"}}, nil)
	if protocol.CodeOf(err) != protocol.CodeUnauthorized {
		t.Fatalf("writer accepted a rotated token: %v", err)
	}

	// Tokens survive a restart (only their hashes are stored), and a
	// deleted session's token dies with it, even if the id is reused.
	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/a", nil, admin...)
	c.create("a", admin...)
	if got, _, _ := c.status("POST", "/sessions/a/events", `{"type":"heartbeat"}`, bearerHdr(fresh)...); got != 401 {
		t.Fatalf("a deleted session's token on its namesake: %d; want 401", got)
	}
	if got, _, _ := c.status("POST", "/sessions/nope/token", "", admin...); got != 404 {
		t.Fatalf("rotate a missing session: %d; want 404", got)
	}
}

func TestSandboxTokenSurvivesRestart(t *testing.T) {
	t.Parallel()
	db := t.TempDir() + "/rein.db"
	s1, err := app.New(app.Options{DBPath: db, APIToken: testAPIToken})
	if err != nil {
		t.Fatal(err)
	}
	tok := newClient(t, s1).create("a", bearerHdr(testAPIToken)...)
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := start(t, app.Options{DBPath: db, APIToken: testAPIToken})
	c := newClient(t, s2)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `{"type":"heartbeat"}`, bearerHdr(tok)...)
	if got, _, _ := c.status("GET", "/sessions/a", "", bearerHdr(tok)...); got != 403 {
		t.Fatalf("sandbox token on a client route after restart: %d; want 403", got)
	}
}

func waitStatus(t *testing.T, c *client, id string, want protocol.SessionStatus, hdr ...string) {
	t.Helper()
	deadline := time.Now().Add(streamDeadline)
	for {
		var rec protocol.Session
		c.must(http.StatusOK, &rec, "GET", "/sessions/"+id, nil, hdr...)
		if rec.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s is %s; want %s", id, rec.Status, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStreamTickets(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := start(t, app.Options{APIToken: testAPIToken, Now: clock.Now})
	c := newClient(t, s)
	admin := bearerHdr(testAPIToken)
	c.create("a", admin...)
	c.create("b", admin...)

	var at, st struct {
		Ticket    string `json:"ticket"`
		ExpiresAt int64  `json:"expiresAt"`
	}
	c.must(http.StatusOK, &at, "POST", "/sessions/a/stream-ticket", nil, admin...)
	c.must(http.StatusOK, &st, "POST", "/sessions/stream-ticket", nil, admin...)
	if want := clock.Now().Add(time.Minute).UnixMilli(); at.ExpiresAt != want || st.ExpiresAt != want {
		t.Fatalf("expiresAt %d, %d; want %d", at.ExpiresAt, st.ExpiresAt, want)
	}
	if got, _, _ := c.status("POST", "/sessions/nope/stream-ticket", "", admin...); got != 404 {
		t.Fatalf("ticket for a missing session: %d; want 404", got)
	}
	q := func(tk string) string { return "?ticket=" + url.QueryEscape(tk) }

	for _, tc := range []struct {
		name, path string
		want       int
	}{
		{"artifact ticket, its session", "/sessions/a/stream" + q(at.Ticket), 200},
		{"artifact ticket, other session", "/sessions/b/stream" + q(at.Ticket), 403},
		{"artifact ticket, session stream", "/sessions/stream" + q(at.Ticket), 403},
		{"session ticket, session stream", "/sessions/stream" + q(st.Ticket), 200},
		{"session ticket, filtered session stream", "/sessions/stream" + q(st.Ticket) + "&project=x", 200},
		{"session ticket, artifact stream", "/sessions/a/stream" + q(st.Ticket), 403},
		{"artifact ticket, artifacts route", "/sessions/a/artifacts" + q(at.Ticket), 401},
		{"artifact ticket, command stream", "/sessions/a/commands" + q(at.Ticket), 401},
		{"forged signature", "/sessions/a/stream" + q(at.Ticket[:strings.IndexByte(at.Ticket, '.')]+".AAAA"), 401},
		{"no signature", "/sessions/a/stream" + q("abc"), 401},
		{"garbage", "/sessions/a/stream" + q("%%%.%%%"), 401},
	} {
		if got, e, _ := c.status("GET", tc.path, ""); got != tc.want {
			t.Errorf("%s: %d %+v; want %d", tc.name, got, e, tc.want)
		}
	}
	// A ticket for one session, re-signed for another by editing the
	// payload, fails its signature.
	p64, sig, _ := strings.Cut(at.Ticket, ".")
	payload, err := base64.RawURLEncoding.DecodeString(p64)
	if err != nil || !strings.Contains(string(payload), "|a|") {
		t.Fatalf("ticket payload %q, %v", payload, err)
	}
	forged := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), "|a|", "|b|", 1))) + "." + sig
	if got, _, _ := c.status("GET", "/sessions/b/stream"+q(forged), ""); got != 401 {
		t.Errorf("edited payload: %d; want 401", got)
	}

	// An open stream outlives its ticket; a new connection does not.
	live := c.stream("/sessions/a/stream" + q(at.Ticket))
	newModel(t).readSnapshot(live)
	clock.Add(time.Minute - time.Millisecond)
	if got, _, _ := c.status("GET", "/sessions/a/stream"+q(at.Ticket), ""); got != 200 {
		t.Fatalf("ticket just before expiry: %d", got)
	}
	clock.Add(time.Millisecond)
	if got, e, _ := c.status("GET", "/sessions/a/stream"+q(at.Ticket), ""); got != 401 || !strings.Contains(e.Message, "expired") {
		t.Fatalf("expired ticket: %d %+v; want 401 expired", got, e)
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `{"type":"text_delta","delta":"still here"}`, admin...)
	if ev := live.next(); ev.Event != protocol.SSEArtifactCreated {
		t.Fatalf("open stream after ticket expiry: %+v", ev)
	}
	// The bearer header works on streams too, and wins over a ticket.
	if got, _, _ := c.status("GET", "/sessions/a/stream"+q(at.Ticket), "", admin...); got != 200 {
		t.Fatalf("client token with an expired ticket: %d", got)
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	const allowed = "https://app.example.com"
	s := start(t, app.Options{APIToken: testAPIToken, CORSOrigins: []string{allowed + "/"}})
	c := newClient(t, s)
	admin := bearerHdr(testAPIToken)
	c.create("a", admin...)

	preflight := func(origin string) (int, protocol.ErrorBody, http.Header) {
		return c.status("OPTIONS", "/sessions/a/stream-ticket", "", "Origin", origin,
			"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization")
	}
	got, e, h := preflight(allowed)
	if got != 204 || h.Get("Access-Control-Allow-Origin") != allowed || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), protocol.HeaderIdempotencyKey) ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") || h.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("allowed preflight: %d %+v %v", got, e, h)
	}
	for _, origin := range []string{"https://evil.example.com", "http://app.example.com", allowed + ":8443", "null"} {
		got, e, h := preflight(origin)
		if got != 403 || e.Code != protocol.CodeForbidden || h.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("refused preflight from %s: %d %+v %v", origin, got, e, h)
		}
	}
	// Real requests: the allowed origin can read even a 401; another
	// origin gets no CORS headers, so its page cannot read anything.
	if got, _, h := c.status("GET", "/sessions", "", "Origin", allowed); got != 401 || h.Get("Access-Control-Allow-Origin") != allowed || h.Get("Vary") != "Origin" {
		t.Fatalf("401 to the allowed origin: %d %v", got, h)
	}
	if got, _, h := c.status("GET", "/sessions", "", append(admin, "Origin", allowed)...); got != 200 || h.Get("Access-Control-Allow-Origin") != allowed || !strings.Contains(h.Get("Access-Control-Expose-Headers"), protocol.HeaderIdempotentReplayed) {
		t.Fatalf("200 to the allowed origin: %d %v", got, h)
	}
	if got, _, h := c.status("GET", "/sessions", "", append(admin, "Origin", "https://evil.example.com")...); got != 200 || h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("request from another origin: %d %v", got, h)
	}
	// No Origin, no CORS headers; OPTIONS without a preflight is a route miss.
	if _, _, h := c.status("GET", "/sessions", "", admin...); h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("CORS headers without Origin: %v", h)
	}

	for _, bad := range []string{"*", "app.example.com", "https://app.example.com/path", "ftp://x", "https://"} {
		if _, err := app.New(app.Options{CORSOrigins: []string{bad}}); err == nil {
			t.Errorf("CORS origin %q accepted", bad)
		}
	}
}

// Without a client token nothing is checked (loopback only), but sessions
// still get sandbox tokens, so clients work the same once auth is on.
func TestAuthOff(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	tok := c.create("a")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `{"type":"heartbeat"}`)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `{"type":"heartbeat"}`, bearerHdr("anything")...)
	c.must(http.StatusOK, nil, "GET", "/sessions/a", nil, bearerHdr(tok)...)
	c.rotate("a")
	var tk struct{ Ticket string }
	c.must(http.StatusOK, &tk, "POST", "/sessions/a/stream-ticket", nil)
	if tk.Ticket == "" {
		t.Fatal("no ticket with auth off")
	}
	if _, err := s.CreateSession(context.Background(), "stream-ticket", ""); protocol.CodeOf(err) != protocol.CodeInvalid {
		t.Fatalf("CreateSession(stream-ticket): %v", err)
	}
}

func TestNonLoopbackNeedsAuth(t *testing.T) {
	t.Parallel()
	for _, host := range []string{"0.0.0.0", "::"} {
		_, err := app.New(app.Options{Host: host})
		if err == nil || !strings.Contains(err.Error(), "--insecure-no-auth") {
			t.Fatalf("Host %s without a token: %v", host, err)
		}
	}
	var logs lockedBuffer
	s := start(t, app.Options{Host: "0.0.0.0", InsecureNoAuth: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if !strings.Contains(logs.String(), "authentication is OFF") {
		t.Fatalf("no warning: %s", logs.String())
	}
	_ = s
	start(t, app.Options{Host: "0.0.0.0", APIToken: testAPIToken})
	if _, err := app.New(app.Options{APIToken: "short"}); err == nil {
		t.Fatal("a 5-byte API token was accepted")
	}
	logs.Reset()
	start(t, app.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if !strings.Contains(logs.String(), "authentication is off") {
		t.Fatalf("no warning on loopback without auth: %s", logs.String())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// No token or ticket appears in any log line, whatever happens.
func TestLogsCarryNoSecrets(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	clock := newFakeClock()
	s, err := app.New(app.Options{
		DBPath: t.TempDir() + "/rein.db", APIToken: testAPIToken, Now: clock.Now, AccessLog: true,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s)
	admin := bearerHdr(testAPIToken)
	secrets := []string{testAPIToken}
	first := c.create("a", admin...)
	other := c.create("b", admin...)
	secrets = append(secrets, first, other)

	cmds := c.stream("/sessions/a/commands", append(bearerHdr(first), protocol.HeaderInstance, "i1")...)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `[{"type":"turn_started","turnId":"t1","source":"user"},{"type":"text_delta","delta":"hi"}]`, bearerHdr(first)...)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"abort"}`, admin...)
	rotated := c.rotate("a", admin...)
	secrets = append(secrets, rotated)
	cmds.expectEnd()
	for _, path := range []string{"/sessions/a/stream-ticket", "/sessions/stream-ticket"} {
		var tk struct{ Ticket string }
		c.must(http.StatusOK, &tk, "POST", path, nil, admin...)
		_, sig, _ := strings.Cut(tk.Ticket, ".")
		secrets = append(secrets, tk.Ticket, sig)
		stream := strings.TrimSuffix(path, "-ticket")
		st := c.stream(stream + "?ticket=" + url.QueryEscape(tk.Ticket))
		st.close()
		c.status("GET", strings.Replace(stream, "/a/", "/b/", 1)+"?ticket="+url.QueryEscape(tk.Ticket), "")
	}
	clock.Add(2 * time.Minute)
	c.status("GET", "/sessions/a/stream?ticket="+url.QueryEscape(secrets[len(secrets)-2]), "")
	// Refusals of every kind, and bad input.
	c.status("GET", "/sessions", "", bearerHdr(first)...)
	c.status("GET", "/sessions", "", bearerHdr(first+"x")...)
	c.status("POST", "/sessions/a/events", `{"type":"heartbeat"}`, bearerHdr(first)...)
	c.status("POST", "/sessions/a/events", `{"type":"nope"}`, bearerHdr(rotated)...)
	c.status("POST", "/sessions/b/events", `{"type":"heartbeat"}`, bearerHdr(rotated)...)
	c.status("GET", "/sessions/a/commands", "", "Authorization", "Basic "+testAPIToken)
	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/a", nil, admin...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	out := logs.String()
	if !strings.Contains(out, "listening") {
		t.Fatalf("the log capture saw nothing: %q", out)
	}
	for _, secret := range secrets {
		if strings.Contains(out, secret) {
			t.Errorf("a log line carries a secret %q:\n%s", secret, out)
		}
	}
	// What the operator needs is there, with the session, and the access
	// log (on here) names routes, not URLs: no ticket query.
	for _, want := range []string{
		`msg="session created" session=a`, `msg="sandbox connected" session=a instance=i1`,
		`msg="token refused" route="GET /sessions/{id}/stream" session=b code=forbidden`,
		`msg="token refused" route="GET /sessions" code=unauthorized`,
		`msg="token refused" route="POST /sessions/{id}/events" session=a code=unauthorized`,
		`msg="session removed" session=a`,
		`msg=access method=GET route="GET /sessions/{id}/stream" status=200`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no log line with %s in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "ticket=") {
		t.Errorf("a log line carries a ticket query:\n%s", out)
	}
}

// A page on another site must not change anything through the visitor's
// browser. With authentication off (the loopback default) nothing else
// stops it: a form or a text/plain fetch is sent without a preflight, and
// the browser only keeps the answer from the page, after the server acted
// on it. So a cross-site page could queue a prompt the agent runs, forge a
// transcript, or delete a session. Reads stay open: the browser keeps
// their answers from the page.
func TestCrossSiteWritesRefused(t *testing.T) {
	t.Parallel()
	const trusted = "https://app.example.com"
	s := start(t, app.Options{CORSOrigins: []string{trusted}})
	c := newClient(t, s)
	c.create("a")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `{"type":"user_message","text":"real"}`)

	crossSite := [][]string{
		{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site", "Content-Type", "text/plain"},
		// An older browser sends no Sec-Fetch-Site: its Origin names
		// another host than the request's.
		{"Origin", "https://evil.example", "Content-Type", "text/plain"},
	}
	writes := []struct{ method, path, body string }{
		{"POST", "/sessions/b", `{"prompt":"run: id"}`},
		{"POST", "/sessions/a/commands", `{"type":"prompt","text":"run: id","queue":true}`},
		{"POST", "/sessions/a/events", `{"type":"user_message","text":"forged"}`},
		{"POST", "/sessions/a/token", ""},
		{"DELETE", "/sessions/a", ""},
	}
	for _, hdr := range crossSite {
		for _, wr := range writes {
			before := stored(t, s, "a")
			got, e, _ := c.status(wr.method, wr.path, wr.body, hdr...)
			if got != http.StatusForbidden || e.Code != protocol.CodeForbidden || !strings.Contains(e.Message, "https://evil.example") {
				t.Errorf("%s %s from another site %v: %d %+v; want 403 forbidden naming the origin", wr.method, wr.path, hdr, got, e)
			}
			if after := stored(t, s, "a"); after != before {
				t.Errorf("%s %s from another site: the store changed\nbefore: %s\nafter:  %s", wr.method, wr.path, before, after)
			}
		}
	}
	if got, _, _ := c.status("GET", "/sessions/b", ""); got != http.StatusNotFound {
		t.Fatalf("a cross-site create made session b: GET %d", got)
	}
	// Reads are not refused.
	c.must(http.StatusOK, nil, "GET", "/sessions/a", nil, crossSite[0]...)

	// The web view (same origin), a --cors-origin page and every
	// non-browser client (no Origin) still write.
	host := strings.TrimPrefix(s.URL(), "http://")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"prompt","text":"web","queue":true}`,
		"Origin", "http://"+host, "Sec-Fetch-Site", "same-origin")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"prompt","text":"old browser","queue":true}`,
		"Origin", "http://"+host)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"prompt","text":"trusted","queue":true}`,
		"Origin", trusted, "Sec-Fetch-Site", "cross-site")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"prompt","text":"cli","queue":true}`)
}

// Opening a session's command stream is a GET, but not a read: it takes
// the stream over from the agentd holding it, which is then superseded
// and stops for good (exit 5), and the commands sent next go to the new
// holder. A page on any site can send that GET without a preflight (an
// <img>, a no-cors fetch, an EventSource), so with authentication off
// it is refused from another site as a write is.
func TestCrossSiteCommandStreamRefused(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.create("a")
	agent := c.stream("/sessions/a/commands", protocol.HeaderInstance, "agentd-1")
	waitStatus(t, c, "a", protocol.StatusLive)

	for _, hdr := range [][]string{
		{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "image"},
		{"Sec-Fetch-Site", "same-site", "Sec-Fetch-Mode", "no-cors"},                                 // a page on localhost:3000
		{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "cors"}, // EventSource
		{"Origin", "https://evil.example"},                                                           // a browser that sends no Sec-Fetch-Site
	} {
		got, e, _ := c.status("GET", "/sessions/a/commands", "", hdr...)
		if got != http.StatusForbidden || e.Code != protocol.CodeForbidden {
			t.Errorf("GET /sessions/a/commands from another site %v: %d %+v; want 403 forbidden", hdr, got, e)
		}
	}
	// agentd still holds the stream: the next command reaches it.
	var acc protocol.CommandAccepted
	c.must(http.StatusAccepted, &acc, "POST", "/sessions/a/commands", `{"type":"abort"}`)
	if got := agent.next(); got.ID != itoa(acc.ID) {
		t.Fatalf("agentd's stream got %+v; want command %d", got, acc.ID)
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `{"type":"heartbeat"}`, protocol.HeaderInstance, "agentd-1")

	// agentd (no browser headers) and a same-origin request still open it.
	host := strings.TrimPrefix(s.URL(), "http://")
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "agentd-2", "Origin", "http://"+host, "Sec-Fetch-Site", "same-origin").close()
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "agentd-3").close()
}

// With authentication off the server trusts whoever reaches its loopback
// port, but a browser page reaches it too through DNS rebinding: a name
// the attacker controls first resolves to their server, then to
// 127.0.0.1, and the page's requests are then same-origin, answers
// readable. Only the Host header tells them apart: it names the
// attacker's domain. So on a loopback server without a token every
// request must name the machine itself (localhost or an IP address).
func TestRebindingHostRefused(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.create("a")
	_, port, _ := strings.Cut(strings.TrimPrefix(s.URL(), "http://"), ":")
	send := func(method, path, host, body string) (int, protocol.ErrorBody) {
		t.Helper()
		req, err := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e protocol.ErrorBody
		if resp.StatusCode >= 400 {
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("%s %s Host %s: %d, not a JSON error: %v", method, path, host, resp.StatusCode, err)
			}
		}
		return resp.StatusCode, e
	}
	for _, host := range []string{"rebind.evil.example:" + port, "rebind.evil.example", "localhost.evil.example:" + port} {
		before := stored(t, s, "a")
		for _, r := range []struct{ method, path, body string }{
			{"GET", "/sessions", ""},
			{"GET", "/sessions/a/artifacts", ""},
			{"POST", "/sessions/a/commands", `{"type":"prompt","text":"run: id","queue":true}`},
		} {
			got, e := send(r.method, r.path, host, r.body)
			if got != http.StatusForbidden || e.Code != protocol.CodeForbidden || !strings.Contains(e.Message, host) {
				t.Errorf("%s %s with Host %s: %d %+v; want 403 forbidden naming the host", r.method, r.path, host, got, e)
			}
		}
		if after := stored(t, s, "a"); after != before {
			t.Errorf("Host %s: the store changed", host)
		}
		// The public routes hold no data.
		if got, e := send("GET", "/healthz", host, ""); got != http.StatusOK {
			t.Errorf("GET /healthz with Host %s: %d %+v", host, got, e)
		}
	}
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LOCALHOST", "rein.localhost:" + port, "[::1]:" + port, "10.0.0.5"} {
		if got, e := send("GET", "/sessions/a", host, ""); got != http.StatusOK {
			t.Errorf("GET with Host %s: %d %+v; want 200", host, got, e)
		}
	}

	// --insecure-no-auth lets any Host in (a proxy in front passing its
	// own, say).
	s3 := start(t, app.Options{InsecureNoAuth: true})
	req3, _ := http.NewRequest("GET", s3.URL()+"/sessions", nil)
	req3.Host = "rein.example.com"
	resp3, err := http.DefaultClient.Do(req3)
	if err != nil {
		t.Fatal(err)
	}
	resp3.Body.Close()
	if resp3.StatusCode != http.StatusOK {
		t.Fatalf("--insecure-no-auth, Host rein.example.com: %d", resp3.StatusCode)
	}

	// With a token the token decides; the Host is not checked (a proxy
	// in front may name the server anything).
	s2 := start(t, app.Options{APIToken: testAPIToken})
	req, _ := http.NewRequest("GET", s2.URL()+"/sessions", nil)
	req.Host = "rein.example.com"
	req.Header.Set("Authorization", "Bearer "+testAPIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("authenticated request with Host rein.example.com: %d", resp.StatusCode)
	}
}

// TestCORSExposesSessionCreated: a page on a --cors-origin following an
// artifact stream with fetch (to send the Authorization header) must read
// Rein-Session-Created, the one way to tell the session it followed from
// one created again under its id (docs/PROTOCOL.md, the artifact stream).
// Only Idempotent-Replayed was exposed, so the browser hid it from the
// page, which would resume a new session over the old one's artifacts.
func TestCORSExposesSessionCreated(t *testing.T) {
	t.Parallel()
	const allowed = "https://app.example.com"
	s := start(t, app.Options{APIToken: testAPIToken, CORSOrigins: []string{allowed}})
	c := newClient(t, s)
	admin := bearerHdr(testAPIToken)
	c.create("a", admin...)
	st := c.stream("/sessions/a/stream", append(admin, "Origin", allowed)...)
	defer st.close()
	exposed := map[string]bool{}
	for _, h := range strings.Split(st.resp.Header.Get("Access-Control-Expose-Headers"), ",") {
		exposed[http.CanonicalHeaderKey(strings.TrimSpace(h))] = true
	}
	if st.resp.Header.Get(protocol.HeaderSessionCreated) == "" || !exposed[protocol.HeaderSessionCreated] || !exposed[protocol.HeaderIdempotentReplayed] {
		t.Fatalf("artifact stream to %s: %s %q, Access-Control-Expose-Headers %q; want both headers exposed", allowed,
			protocol.HeaderSessionCreated, st.resp.Header.Get(protocol.HeaderSessionCreated), st.resp.Header.Get("Access-Control-Expose-Headers"))
	}
}
