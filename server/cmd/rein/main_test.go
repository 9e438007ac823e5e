package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/client"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

const testToken = "test-client-token-0123456789"

// testDeadline only keeps a broken test from hanging; nothing is asserted
// about time.
const testDeadline = 30 * time.Second

// startServer runs a real rein-server in-process on a fresh SQLite file,
// with authentication on.
func startServer(t testing.TB, opts app.Options) *app.App {
	t.Helper()
	if opts.DBPath == "" {
		opts.DBPath = filepath.Join(t.TempDir(), "rein.db")
	}
	opts.APIToken = testToken
	s, err := app.New(opts)
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("server Close: %v", err)
		}
	})
	return s
}

// syncBuffer is a bytes.Buffer safe to read while rein writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type result struct {
	stdout, stderr string
	code           int
}

// rein runs the real command line in-process against url, with the
// client token unless args set one, colour off.
func rein(t testing.TB, url string, args ...string) result {
	t.Helper()
	var out, errOut syncBuffer
	return reinTo(t, context.Background(), &out, &errOut, url, args...)
}

func reinTo(t testing.TB, ctx context.Context, out, errOut *syncBuffer, url string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, testDeadline)
	defer cancel()
	full := []string{"rein", "--server", url}
	if !containsPrefix(args, "--token") {
		full = append(full, "--token", testToken)
	}
	full = append(full, args...)
	e := &env{stdout: out, stderr: errOut, now: func() time.Time { return testNow.Add(90 * time.Second) }}
	code := run(ctx, full, e)
	return result{out.String(), errOut.String(), code}
}

func containsPrefix(list []string, p string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// testNow is the server clock in tests that print ages.
var testNow = time.UnixMilli(1_732_190_000_000)

func mustRein(t testing.TB, url string, args ...string) string {
	t.Helper()
	r := rein(t, url, args...)
	if r.code != 0 {
		t.Fatalf("rein %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// createSession creates a session through the client package and returns
// its sandbox token.
func createSession(t testing.TB, s *app.App, id string) string {
	t.Helper()
	cl, err := client.New(s.URL(), testToken)
	if err != nil {
		t.Fatal(err)
	}
	created, err := cl.CreateSession(context.Background(), id, "")
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	return created.SandboxToken
}

// postEvents posts a JSON array of events as the session's sandbox.
func postEvents(t testing.TB, s *app.App, id, sandboxToken, events string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL()+"/sessions/"+id+"/events", strings.NewReader(events))
	req.Header.Set("Authorization", "Bearer "+sandboxToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("post events: %d %s", resp.StatusCode, b)
	}
}

// sandbox opens the session's command stream as its sandbox would, so
// commands are accepted, and returns a reader of the commands.
func sandbox(t testing.TB, s *app.App, id, sandboxToken string) func() protocol.Command {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/sessions/"+id+"/commands", nil)
	req.Header.Set("Authorization", "Bearer "+sandboxToken)
	req.Header.Set(protocol.HeaderInstance, "test-sandbox")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("command stream: %d", resp.StatusCode)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	r := client.NewEventReader(resp.Body)
	return func() protocol.Command {
		t.Helper()
		timer := time.AfterFunc(testDeadline, cancel)
		defer timer.Stop()
		ev, err := r.Next()
		if err != nil {
			t.Fatalf("command stream: %v", err)
		}
		var cmd protocol.Command
		if err := json.Unmarshal([]byte(ev.Data), &cmd); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
}

func golden(t testing.TB, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestCreate(t *testing.T) {
	s := startServer(t, app.Options{})
	out := mustRein(t, s.URL(), "create", "s1", "--project", "web")
	lines := strings.Split(out, "\n")
	if lines[0] != "created session s1 (status bootstrapping, project web)" {
		t.Errorf("first line %q", lines[0])
	}
	tok, ok := strings.CutPrefix(lines[1], "sandbox token: ")
	if !ok || len(tok) != 43 {
		t.Fatalf("no sandbox token in\n%s", out)
	}
	if !strings.Contains(out, "--session s1 --token-file s1.token -- YOUR-AGENT") {
		t.Errorf("no agentd hint in\n%s", out)
	}
	// The printed token is the session's: it opens the command stream.
	sandbox(t, s, "s1", tok)

	var rec client.CreatedSession
	if err := json.Unmarshal([]byte(mustRein(t, s.URL(), "create", "--json", "s2")), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.ID != "s2" || rec.Status != protocol.StatusBootstrapping || rec.Project != nil || len(rec.SandboxToken) != 43 {
		t.Errorf("create --json: %+v", rec)
	}

	file := filepath.Join(t.TempDir(), "tok")
	out = mustRein(t, s.URL(), "create", "s3", "--sandbox-token-file", file)
	b, err := os.ReadFile(file)
	if err != nil || len(strings.TrimSpace(string(b))) != 43 || strings.Contains(out, strings.TrimSpace(string(b))) {
		t.Errorf("--sandbox-token-file: %q, %v; output\n%s", b, err, out)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v", fi.Mode())
	}

	if got := mustRein(t, s.URL(), "rm", "s3"); got != "deleted session s3\n" {
		t.Errorf("rm: %q", got)
	}
}

func TestSessions(t *testing.T) {
	s := startServer(t, app.Options{Now: func() time.Time { return testNow }})
	if got := mustRein(t, s.URL(), "sessions"); got != "no sessions\n" {
		t.Errorf("empty: %q", got)
	}
	mustRein(t, s.URL(), "create", "alpha", "--project", "web")
	mustRein(t, s.URL(), "create", "beta")
	tok := createSession(t, s, "gamma")
	postEvents(t, s, "gamma", tok, `[{"type":"session_info","summary":"fix the flaky test in the payment service and make sure every retry path is covered"}]`)
	golden(t, "sessions.golden", mustRein(t, s.URL(), "sessions"))
	golden(t, "sessions_web.golden", mustRein(t, s.URL(), "ls", "-p", "web"))

	var got []protocol.Session
	for _, line := range strings.Split(strings.TrimSpace(mustRein(t, s.URL(), "sessions", "--json")), "\n") {
		var rec protocol.Session
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, rec)
	}
	if len(got) != 3 || got[0].ID != "alpha" || *got[0].Project != "web" || got[2].Summary == nil {
		t.Errorf("sessions --json: %+v", got)
	}
}

func TestSessionsWatch(t *testing.T) {
	s := startServer(t, app.Options{Now: func() time.Time { return testNow }})
	mustRein(t, s.URL(), "create", "alpha")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan result, 1)
	go func() { done <- reinTo(t, ctx, &out, &errOut, s.URL(), "sessions", "--watch") }()
	waitFor(t, &out, "alpha  bootstrapping")
	mustRein(t, s.URL(), "create", "beta")
	waitFor(t, &out, "beta   bootstrapping")
	mustRein(t, s.URL(), "rm", "alpha")
	waitFor(t, &out, "ID    STATUS         PROJECT  AGE  SUMMARY\nbeta  bootstrapping  -        1m   -\n\n")
	cancel()
	if r := <-done; r.code != 130 {
		t.Errorf("interrupted watch: exit %d, stderr %q", r.code, r.stderr)
	}
	golden(t, "sessions_watch.golden", out.String())
}

// waitFor waits until out contains want.
func waitFor(t testing.TB, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(testDeadline)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output never contained %q; it is\n%s", want, out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCommands(t *testing.T) {
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")

	// No sandbox holds the command stream yet: the error points to
	// --queue, not to the API's "queue": true.
	r := rein(t, s.URL(), "prompt", "s1", "hello")
	if want := "rein: no sandbox is connected to session \"s1\" (rerun with --queue to have the prompt delivered when one connects) (no_sandbox)\n"; r.code != 1 || r.stderr != want {
		t.Errorf("prompt without sandbox: %+v, want stderr %q", r, want)
	}

	next := sandbox(t, s, "s1", tok)
	postEvents(t, s, "s1", tok, `[
		{"type":"permission_requested","id":"perm-1","title":"run rm","options":[{"id":"no","name":"No","kind":"reject_once"},{"id":"always","name":"Always","kind":"allow_always"},{"id":"yes","name":"Yes","kind":"allow_once"}]},
		{"type":"permission_requested","id":"perm-2","title":"write","options":[{"id":"ok","name":"OK","kind":"allow_once"},{"id":"nope","name":"Nope","kind":"reject_always"}]},
		{"type":"permission_requested","id":"perm-3","title":"read","options":[{"id":"ok","name":"OK","kind":"allow_once"}]},
		{"type":"permission_requested","id":"perm-4","title":"done","options":[{"id":"ok","name":"OK","kind":"allow_once"}]},
		{"type":"permission_resolved","id":"perm-4","outcome":"selected","optionId":"ok"},
		{"type":"permission_requested","id":"perm-5","title":"run ls","options":[{"id":"no","name":"No","kind":"reject_once"},{"id":"always","name":"Always","kind":"allow_always"},{"id":"yes","name":"Yes","kind":"allow_once"}]}]`)

	for _, tc := range []struct {
		args []string
		out  string
		want protocol.Command
	}{
		{[]string{"prompt", "s1", "fix", "the bug"}, "prompt sent to s1 (command 1)\n", protocol.Command{ID: 1, Type: protocol.CommandPrompt, Text: "fix the bug"}},
		{[]string{"prompt", "s1", "--", "-v is a flag"}, "prompt sent to s1 (command 2)\n", protocol.Command{ID: 2, Type: protocol.CommandPrompt, Text: "-v is a flag"}},
		{[]string{"abort", "s1"}, "abort sent to s1 (command 3)\n", protocol.Command{ID: 3, Type: protocol.CommandAbort}},
		{[]string{"approve", "s1", "perm-1"}, "approved perm-1 with option yes (command 4)\n", protocol.Command{ID: 4, Type: protocol.CommandPermissionResponse, RequestID: "perm-1", OptionID: "yes", Outcome: protocol.OutcomeSelected, RequestSeq: 1}},
		{[]string{"approve", "s1", "perm-5", "always"}, "approved perm-5 with option always (command 5)\n", protocol.Command{ID: 5, Type: protocol.CommandPermissionResponse, RequestID: "perm-5", OptionID: "always", Outcome: protocol.OutcomeSelected, RequestSeq: 5}},
		{[]string{"deny", "s1", "perm-2"}, "denied perm-2: no reject_once option, request cancelled (command 6)\n", protocol.Command{ID: 6, Type: protocol.CommandPermissionResponse, RequestID: "perm-2", Outcome: protocol.OutcomeCancelled, RequestSeq: 2}},
		{[]string{"deny", "s1", "perm-3"}, "denied perm-3: no reject_once option, request cancelled (command 7)\n", protocol.Command{ID: 7, Type: protocol.CommandPermissionResponse, RequestID: "perm-3", Outcome: protocol.OutcomeCancelled, RequestSeq: 3}},
	} {
		if got := mustRein(t, s.URL(), tc.args...); got != tc.out {
			t.Errorf("rein %v: printed %q, want %q", tc.args, got, tc.out)
		}
		if got := next(); got != tc.want {
			t.Errorf("rein %v: sandbox got %+v, want %+v", tc.args, got, tc.want)
		}
	}

	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"approve", "s1", "perm-9"}, `rein: session s1 has no permission request "perm-9"` + "\n"},
		{[]string{"approve", "s1", "perm-1", "maybe"}, `rein: permission request "perm-1" has no option "maybe" (options: no, always, yes)` + "\n"},
		{[]string{"approve", "s1", "perm-4"}, `rein: permission request "perm-4" is already approved` + "\n"},
		{[]string{"approve", "nope", "perm-1"}, `rein: session "nope" not found (not_found)` + "\n"},
		// Pending in the transcript, but answered already: the server's
		// refusal, as it says it.
		{[]string{"approve", "s1", "perm-1", "always"}, `rein: requestId: permission request "perm-1" of session "s1" was already answered by command 4; the agent takes that first answer only (conflict)` + "\n"},
	} {
		r := rein(t, s.URL(), tc.args...)
		if r.code != 1 || r.stderr != tc.stderr || r.stdout != "" {
			t.Errorf("rein %v: %+v, want stderr %q", tc.args, r, tc.stderr)
		}
	}
}

func TestErrors(t *testing.T) {
	s := startServer(t, app.Options{})
	createSession(t, s, "s1")
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"wrong token", []string{"--token", "wrong-token-0123456789", "sessions"}, 1, "rein: the bearer token is not valid (wrong, rotated, or its session was deleted) (unauthorized)\n"},
		{"no token", []string{"--token", "", "watch", "s1"}, 1, "rein: missing Authorization: Bearer <token> (unauthorized)\n"},
		{"unknown session", []string{"watch", "nope"}, 1, "rein: session \"nope\" not found (not_found)\n"},
		{"rm unknown", []string{"rm", "nope"}, 1, "rein: session \"nope\" not found (not_found)\n"},
		{"token unknown", []string{"token", "nope"}, 1, "rein: session \"nope\" not found (not_found)\n"},
		{"session named help", []string{"rm", "help"}, 1, "rein: session \"help\" not found (not_found)\n"},
		{"session named h", []string{"watch", "h"}, 1, "rein: session \"h\" not found (not_found)\n"},
		{"exists", []string{"create", "s1"}, 1, "rein: session \"s1\" already exists (if you created it and do not have its sandbox token, rein token s1 gives it a new one) (conflict)\n"},
		{"bad id", []string{"create", "a b"}, 1, "rein: session id: may contain only letters, digits, '.', '_' and '-' (found ' ') (invalid)\n"},
		{"empty id", []string{"watch", ""}, 1, "rein: session id: must not be empty (invalid)\n"},
		{"id naming a route", []string{"rm", "x/stream"}, 1, "rein: session id: may contain only letters, digits, '.', '_' and '-' (found '/') (invalid)\n"},
		{"reserved id", []string{"verify", ".."}, 1, "rein: session id \"..\" is reserved: an id made only of dots is a relative path segment (browsers and URL libraries resolve it away) (invalid)\n"},
		{"missing arg", []string{"prompt", "s1"}, 2, "rein: usage: rein prompt ID TEXT...\n"},
		{"no args taken", []string{"ls", "s1"}, 2, "rein: rein sessions takes no arguments; got \"s1\"\n"},
		{"bad flag", []string{"watch", "s1", "--bogus"}, 2, "rein: flag provided but not defined: -bogus\n"},
		{"flag without value", []string{"create", "s2", "--prompt"}, 2, "rein: flag needs an argument: -prompt\n"},
		{"flag without value last", []string{"prompt", "--queue", "s1", "hi", "--idempotency-key"}, 2, "rein: flag needs an argument: -idempotency-key\n"},
		{"unknown command", []string{"bogus", "s1"}, 2, "rein: unknown command \"bogus\"; commands: sessions, create, token, rm, prompt, abort, approve, deny, inbox, verify, watch\n"},
		{"no help command", []string{"help"}, 2, "rein: unknown command \"help\"; commands: sessions, create, token, rm, prompt, abort, approve, deny, inbox, verify, watch\n"},
		{"unknown subcommand", []string{"inbox", "bogus", "--follow"}, 2, "rein: unknown command \"inbox bogus\"; inbox commands: approve, deny\n"},
		{"bad server", []string{"--server", "localhost:1", "sessions"}, 1, "rein: server address \"localhost:1\": want http://host:port or https://host:port\n"},
		{"token file", []string{"--token-file", tokenFile, "sessions", "--json"}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rein(t, s.URL(), tc.args...)
			if r.code != tc.code || r.stderr != tc.stderr {
				t.Errorf("exit %d, stderr %q; want %d, %q", r.code, r.stderr, tc.code, tc.stderr)
			}
		})
	}
}

// scripted is a turn with everything the transcript shows, as a sandbox
// posts it.
const scripted = `[
 {"type":"agent_started","agent":{"name":"demo-agent","protocol":"native"}},
 {"type":"turn_started","turnId":"t1","source":"user"},
 {"type":"user_message","id":"u1","text":"list files"},
 {"type":"reasoning_delta","id":"r1","delta":"Two steps."},
 {"type":"reasoning_end","id":"r1"},
 {"type":"plan_updated","id":"plan","entries":[{"content":"list","status":"in_progress"},{"content":"count","status":"pending"}]},
 {"type":"text_delta","id":"m1","delta":"Running "},
 {"type":"text_delta","id":"m1","delta":"ls."},
 {"type":"text_end","id":"m1"},
 {"type":"tool_call_start","id":"call-1","name":"shell","kind":"execute","title":"ls"},
 {"type":"tool_call_update","id":"call-1","status":"running"},
 {"type":"tool_output_delta","id":"call-1","delta":"a.txt\nb.t"},
 {"type":"tool_output_delta","id":"call-1","delta":"xt\n"},
 {"type":"tool_call_end","id":"call-1","status":"completed","exitCode":0},
 {"type":"permission_requested","id":"perm-1","toolCallId":"call-2","title":"delete a.txt","options":[{"id":"allow","name":"Allow","kind":"allow_once"},{"id":"deny","name":"Deny","kind":"reject_once"}]},
 {"type":"permission_resolved","id":"perm-1","outcome":"selected","optionId":"deny"},
 {"type":"plan_updated","id":"plan","entries":[{"content":"list","status":"completed"},{"content":"count","status":"completed"}]},
 {"type":"file_changed","path":"notes.md","change":"update","diff":"-a\n+b\n"},
 {"type":"notice","level":"warning","message":"low disk"},
 {"type":"usage_updated","inputTokens":100,"outputTokens":25,"costUsd":0.0012},
 {"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}]`

func TestWatchScripted(t *testing.T) {
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")
	postEvents(t, s, "s1", tok, scripted)
	golden(t, "watch_scripted.golden", mustRein(t, s.URL(), "watch", "s1", "--until-idle", "--idle-grace", "0"))

	// --json: one stream event per line, after the connection's line,
	// ending with snapshot_complete.
	lines := strings.Split(strings.TrimSpace(mustRein(t, s.URL(), "watch", "--json", "s1", "--until-idle", "--idle-grace=0")), "\n")
	var first, last streamLine
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &last); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if i == 0 {
			first = last
		}
	}
	arts, _ := s.Artifacts(context.Background(), "s1")
	if len(lines) != len(arts)+2 || first.Event != client.EventConnected || string(first.Data) != "{}" || last.Event != protocol.SSESnapshotComplete || last.ID == 0 {
		t.Errorf("watch --json: %d lines for %d artifacts, first %+v, last %+v", len(lines), len(arts), first, last)
	}
}

// rerun is a prompt run twice under one turn id: agentd died after the
// turn started, before it saved its command cursor, closed the turn as
// interrupted when it came back and ran the prompt again. The agent,
// restarted, counts its tool call ids from the start again, and agentd's
// permission ids derive from the turn id: the second run repeats the
// first's ids.
const rerun = `[
 {"type":"turn_started","turnId":"turn-5","promptId":"prompt-5","source":"user","agentSeq":1},
 {"type":"user_message","id":"user-5","text":"remove the build dir","promptId":"prompt-5","agentSeq":2},
 {"type":"tool_call_start","id":"call-1","name":"shell","kind":"execute","title":"rm -rf build","agentSeq":3},
 {"type":"permission_requested","id":"turn-5:perm-1","toolCallId":"call-1","title":"May I run rm -rf build?","options":[{"id":"allow","name":"Allow","kind":"allow_once"},{"id":"deny","name":"Deny","kind":"reject_once"}],"agentSeq":4},
 {"type":"turn_completed","turnId":"turn-5","stopReason":"interrupted","error":"agentd restarted","agentSeq":5},
 {"type":"turn_started","turnId":"turn-5","promptId":"prompt-5","source":"user","agentSeq":6},
 {"type":"user_message","id":"user-5","text":"remove the build dir","promptId":"prompt-5","agentSeq":7},
 {"type":"tool_call_start","id":"call-1","name":"shell","kind":"execute","title":"rm -rf build","agentSeq":8},
 {"type":"permission_requested","id":"turn-5:perm-1","toolCallId":"call-1","title":"May I run rm -rf build?","options":[{"id":"allow","name":"Allow","kind":"allow_once"},{"id":"deny","name":"Deny","kind":"reject_once"}],"agentSeq":9},
 {"type":"permission_resolved","id":"turn-5:perm-1","outcome":"selected","optionId":"allow","agentSeq":10},
 {"type":"tool_output_delta","id":"call-1","delta":"removed\n","agentSeq":11},
 {"type":"tool_call_end","id":"call-1","status":"completed","exitCode":0,"agentSeq":12},
 {"type":"turn_completed","turnId":"turn-5","stopReason":"end_turn","agentSeq":13}]`

// TestWatchRepeatedIDs replays a session whose second turn repeats the
// first's turn, tool call and permission ids: each permission is printed
// with the tool call of its own turn, the second run's approval in the
// second turn, not under the first turn's tool call of the same id.
func TestWatchRepeatedIDs(t *testing.T) {
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")
	postEvents(t, s, "s1", tok, rerun)
	golden(t, "watch_repeated_ids.golden", mustRein(t, s.URL(), "watch", "s1", "--until-idle", "--idle-grace", "0"))
}

// TestWatchResume drops the watch's connection on the server side in the
// middle of a turn, changes the session while it is away, and checks that
// the transcript it prints has everything exactly once.
func TestWatchResume(t *testing.T) {
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")
	p := newProxy(t, s.URL())
	postEvents(t, s, "s1", tok, `[
		{"type":"turn_started","turnId":"t1","source":"user"},
		{"type":"user_message","id":"u1","text":"go"},
		{"type":"text_delta","id":"m1","delta":"Hello"},
		{"type":"tool_call_start","id":"call-1","name":"shell","title":"make"},
		{"type":"tool_output_delta","id":"call-1","delta":"step 1\n"}]`)

	out, done := watchInBackground(t, p.URL(), "s1")
	waitFor(t, out, "  │ step 1\n")
	postEvents(t, s, "s1", tok, `[{"type":"tool_output_delta","id":"call-1","delta":"step 2\n"}]`)
	waitFor(t, out, "  │ step 2\n")

	p.Cut() // drops the connection and refuses new ones until Restore
	postEvents(t, s, "s1", tok, `[
		{"type":"tool_output_delta","id":"call-1","delta":"step 3\n"},
		{"type":"tool_call_end","id":"call-1","status":"completed"},
		{"type":"text_delta","id":"m1","delta":", world"}]`)
	p.Restore()
	waitFor(t, out, "step 3")
	postEvents(t, s, "s1", tok, `[
		{"type":"text_delta","id":"m1","delta":"!"},
		{"type":"text_end","id":"m1"},
		{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}]`)

	r := watchEnded(t, done, out)
	if p.Accepted() < 2 {
		t.Errorf("watch connected %d times, want a reconnect", p.Accepted())
	}
	if !strings.Contains(r.stderr, "reconnecting") {
		t.Errorf("stderr does not say it reconnected: %q", r.stderr)
	}
	golden(t, "watch_resume.golden", r.stdout)
}

// TestWatchHistoryWentBack: the server rein watch follows comes back with
// an older history of the session (a restore from an older backup, a
// failover to a standby that had not caught up): rein watch says so and
// prints the session as the server now has it, rather than leaving what
// is gone on screen as if it still happened and diffing the new history
// against it.
func TestWatchHistoryWentBack(t *testing.T) {
	newer := startServer(t, app.Options{})
	older := startServer(t, app.Options{})
	const kept = `[
		{"type":"turn_started","turnId":"t1","source":"user"},
		{"type":"user_message","id":"u1","text":"hello"},
		{"type":"text_delta","id":"m1","delta":"You said: hello"},
		{"type":"text_end","id":"m1"},
		{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}]`
	tok := createSession(t, newer, "s1")
	postEvents(t, newer, "s1", tok, kept)
	postEvents(t, newer, "s1", tok, `[
		{"type":"turn_started","turnId":"t2","source":"user"},
		{"type":"user_message","id":"u2","text":"delete the tests"},
		{"type":"text_delta","id":"m2","delta":"Deleting them"}]`)
	postEvents(t, older, "s1", createSession(t, older, "s1"), kept)

	p := newProxy(t, newer.URL())
	out, done := watchInBackground(t, p.URL(), "s1")
	waitFor(t, out, "Deleting them")
	p.Cut()
	p.Retarget(older.URL())
	p.Restore()

	r := watchEnded(t, done, out)
	golden(t, "watch_history_back.golden", r.stdout)
}

// A session deleted and created again under its id while rein watch was
// away, and that has passed the revision watch saw, is not resumed as if
// it were the one watch followed (the new one's changes laid over the old
// transcript): the stream's Rein-Session-Created says it is another, and
// watch starts again with a full replay of the new one. With --json, the
// new connection's line says so ("replaced":true).
func TestWatchSessionCreatedAgain(t *testing.T) {
	t.Run("transcript", func(t *testing.T) {
		out := watchSessionCreatedAgain(t)
		_, after, ok := strings.Cut(out, "went back")
		if !ok || !strings.Contains(after, "Keeping them, all of them.") || strings.Contains(after, "Deleting them") {
			t.Fatalf("watch did not start again on the new session; output\n%s", out)
		}
	})
	t.Run("json", func(t *testing.T) {
		out := watchSessionCreatedAgain(t, "--json")
		_, after, ok := strings.Cut(out, `{"event":"connected","data":{"replaced":true}}`)
		if !ok || !strings.Contains(after, "Keeping them, all of them.") || strings.Contains(after, "Deleting them") {
			t.Fatalf("watch --json did not say it started again on the new session; output\n%s", out)
		}
	})
}

// watchSessionCreatedAgain runs rein watch with args through the deletion
// and creation of the session it follows, and returns what it printed.
func watchSessionCreatedAgain(t *testing.T, args ...string) string {
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")
	postEvents(t, s, "s1", tok, `[
		{"type":"turn_started","turnId":"t1","source":"user"},
		{"type":"user_message","id":"u1","text":"delete the tests"},
		{"type":"text_delta","id":"m1","delta":"Deleting them"}]`)
	old := storedSession(t, s, "s1")

	p := newProxy(t, s.URL())
	out, done := watchInBackground(t, p.URL(), "s1", args...)
	waitFor(t, out, "Deleting them")
	p.Cut()
	cl, err := client.New(s.URL(), testToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.DeleteSession(context.Background(), "s1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // another createdAt, in ms
	tok = createSession(t, s, "s1")
	postEvents(t, s, "s1", tok, `[
		{"type":"turn_started","turnId":"t1","source":"user"},
		{"type":"user_message","id":"u1","text":"keep the tests"},
		{"type":"text_delta","id":"m1","delta":"Keeping "},
		{"type":"text_delta","id":"m1","delta":"them, "},
		{"type":"text_delta","id":"m1","delta":"all of them."},
		{"type":"text_end","id":"m1"},
		{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}]`)
	if now := storedSession(t, s, "s1"); now.CreatedAt == old.CreatedAt {
		t.Fatalf("the new session has the old one's createdAt %d", old.CreatedAt)
	}
	p.Restore()
	return watchEnded(t, done, out).stdout
}

// storedSession reads a session's record.
func storedSession(t *testing.T, s *app.App, id string) protocol.Session {
	t.Helper()
	cl, err := client.New(s.URL(), testToken)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := cl.Session(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// watchInBackground starts rein watch session --until-idle (and args)
// against url, and returns its output as it grows and, once it ends, its
// result (watchEnded).
func watchInBackground(t *testing.T, url, session string, args ...string) (*syncBuffer, <-chan result) {
	t.Helper()
	var out, errOut syncBuffer
	done := make(chan result, 1)
	args = append([]string{"watch", session, "--until-idle", "--idle-grace", "0"}, args...)
	go func() {
		done <- reinTo(t, context.Background(), &out, &errOut, url, args...)
	}()
	return &out, done
}

// watchEnded waits for a rein watch --until-idle started in the
// background to end, and for it to have ended well.
func watchEnded(t *testing.T, done <-chan result, out *syncBuffer) result {
	t.Helper()
	var r result
	select {
	case r = <-done:
	case <-time.After(testDeadline):
		t.Fatalf("watch did not end; output\n%s", out.String())
	}
	if r.code != 0 {
		t.Fatalf("watch: exit %d, stderr %q", r.code, r.stderr)
	}
	return r
}

// proxy is a TCP proxy in front of the server whose connections can be
// cut, as a network or a restarting load balancer would.
type proxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu       sync.Mutex
	conns    []net.Conn
	refuse   bool
	accepted int
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: strings.TrimPrefix(target, "http://")}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.refuse {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.accepted++
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.Cut(); wg.Wait() })
	return p
}

func (p *proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Cut closes every connection and refuses new ones until Restore.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Restore accepts connections again.
func (p *proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = false
}

// Retarget sends new connections to another server (a failover, or the
// same address served from a restored backup).
func (p *proxy) Retarget(url string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = strings.TrimPrefix(url, "http://")
}

// Accepted is how many connections were let through.
func (p *proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// TestQueuedAndInitialPrompts: rein create --prompt and rein prompt
// --queue are accepted before any sandbox connects and reach the first
// one, in order; an empty --prompt is refused naming the field.
func TestQueuedAndInitialPrompts(t *testing.T) {
	s := startServer(t, app.Options{})
	out := mustRein(t, s.URL(), "create", "s1", "--prompt", "first", "--sandbox-token-file", filepath.Join(t.TempDir(), "tok"))
	if !strings.Contains(out, "initial prompt queued (command 1)") {
		t.Errorf("create --prompt printed\n%s", out)
	}
	if got := mustRein(t, s.URL(), "prompt", "--queue", "s1", "second"); got != "prompt sent to s1 (command 2)\n" {
		t.Errorf("prompt --queue printed %q", got)
	}
	r := rein(t, s.URL(), "create", "s2", "--prompt", "")
	if r.code != 1 || !strings.Contains(r.stderr, "prompt: must not be empty") {
		t.Errorf("create --prompt '': %+v", r)
	}

	tok := createSession(t, s, "s3")
	mustRein(t, s.URL(), "prompt", "--queue", "s3", "queued")
	next := sandbox(t, s, "s3", tok)
	if got, want := next(), (protocol.Command{ID: 1, Type: protocol.CommandPrompt, Text: "queued"}); got != want {
		t.Errorf("first sandbox got %+v, want %+v", got, want)
	}
}

// TestAgentTextCannotDriveTheTerminal: what an agent writes (its text, a
// tool's output and name, a permission's title, a summary) reaches the
// user's terminal through rein watch, rein sessions and rein inbox. Its
// control characters would be commands to the terminal (rewrite what was
// printed, set the title or the clipboard with OSC 52): rein prints them
// escaped, never raw.
func TestAgentTextCannotDriveTheTerminal(t *testing.T) {
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")
	postEvents(t, s, "s1", tok, `[
		{"type":"turn_started","turnId":"t1","source":"user"},
		{"type":"user_message","id":"u1","text":"hi \u001b[31mred"},
		{"type":"reasoning_delta","id":"r1","delta":"think\u001b[2J"},
		{"type":"text_delta","id":"m1","delta":"x\u001b]52;c;ZXZpbA==\u0007y\r\n"},
		{"type":"text_end","id":"m1"},
		{"type":"tool_call_start","id":"c1","name":"sh\u009b1m","title":"ls\u001b[5m"},
		{"type":"tool_output_delta","id":"c1","delta":"out\u001b[?1049h\r\n"},
		{"type":"tool_call_end","id":"c1","status":"failed","error":"e\u001b[1A"},
		{"type":"notice","level":"warning","message":"m\u001b[8m"},
		{"type":"plan_updated","id":"plan","entries":[{"content":"p\u001b[1m","status":"pending"}]},
		{"type":"file_changed","path":"f\u001b[1m","change":"update","diff":"-a\u001b[1m\n"},
		{"type":"permission_requested","id":"p1","title":"t\u001b]0;title\u0007","options":[{"id":"a","name":"A\u001b[1m","kind":"allow_once"}]},
		{"type":"session_info","summary":"sum\u001b[41m\nsecond line"}]`)

	var out, errOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() { done <- reinTo(t, ctx, &out, &errOut, s.URL(), "watch", "s1") }()
	waitFor(t, &out, "rein deny s1 p1")
	// Live, streamed text is printed delta by delta: each is cleaned.
	postEvents(t, s, "s1", tok, `[{"type":"text_delta","id":"m2","delta":"live "},{"type":"text_delta","id":"m2","delta":"\u001b[1Adone\r\n"}]`)
	waitFor(t, &out, "live \\x1b[1Adone\n")
	cancel()
	<-done
	for name, got := range map[string]string{
		"watch":    out.String(),
		"sessions": mustRein(t, s.URL(), "sessions"),
		"inbox":    mustRein(t, s.URL(), "inbox"),
	} {
		if i := strings.IndexFunc(got, func(r rune) bool {
			return r != '\n' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0))
		}); i >= 0 {
			t.Errorf("rein %s printed control character %q:\n%q", name, got[i:i+1], got)
		}
		if !strings.Contains(got, `\x1b`) {
			t.Errorf("rein %s does not show the escape as \\x1b:\n%s", name, got)
		}
	}
	if want := "x\\x1b]52;c;ZXZpbA==\\x07y\n"; !strings.Contains(out.String(), want) {
		t.Errorf("watch: no %q (CRLF shown as a line end) in\n%s", want, out.String())
	}
	if got, want := mustRein(t, s.URL(), "sessions"), `sum\x1b[41m\x0asecond line`+"\n"; !strings.HasSuffix(got, want) {
		t.Errorf("sessions: want the summary on one line, ending %q:\n%s", want, got)
	}
}

// A token flag that clashes with the other's environment variable (the
// README's setup exports REIN_API_TOKEN_FILE) is refused naming that
// variable, not only a flag the user did not type.
func TestTokenFlagAndEnvironment(t *testing.T) {
	s := startServer(t, app.Options{})
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REIN_API_TOKEN_FILE", file)
	r := rein(t, s.URL(), "--token", testToken, "sessions")
	if want := "rein: give --token or --token-file, not both (REIN_API_TOKEN_FILE, set in the environment, counts as the flag; unset it)\n"; r.code != 2 || r.stderr != want {
		t.Errorf("--token with REIN_API_TOKEN_FILE set: exit %d, stderr %q; want 2, %q", r.code, r.stderr, want)
	}
}

// A token file from REIN_API_TOKEN_FILE with a relative path (as the
// README's setup exports it) that rein cannot open from the directory it
// runs in: the error names the variable and the directory, not only
// "open api-token: no such file or directory".
func TestTokenFileFromTheEnvironmentNamed(t *testing.T) {
	s := startServer(t, app.Options{})
	t.Chdir(t.TempDir())
	t.Setenv("REIN_API_TOKEN_FILE", "api-token")
	var out, errOut syncBuffer
	code := run(t.Context(), []string{"rein", "--server", s.URL(), "sessions"}, &env{stdout: &out, stderr: &errOut, now: time.Now})
	wd, _ := os.Getwd()
	if want := "token file api-token (from REIN_API_TOKEN_FILE, relative to the current directory " + wd + "): open api-token: no such file or directory"; code != 1 || !strings.Contains(errOut.String(), want) {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut.String(), want)
	}
}

// A client token as an environment variable often ends in a newline (a
// Kubernetes secret, a value copied from a file), which no HTTP header
// can carry: rein trims the token, as it trims --token-file's; a control
// character inside it is refused at once. Sent as it was, every request
// failed before leaving the machine, as if the network were down: rein
// watch reconnected forever and rein prompt "sent it again" four times.
func TestTokenWithControlCharacters(t *testing.T) {
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")
	postEvents(t, s, "s1", tok, `[
		{"type":"turn_started","turnId":"t1","source":"user"},
		{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}]`)
	t.Setenv("REIN_API_TOKEN", testToken+"\n")
	// Not through rein(), which gives --token: the environment's is used.
	var out, errOut syncBuffer
	e := &env{stdout: &out, stderr: &errOut, now: time.Now}
	ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
	defer cancel()
	code := run(ctx, []string{"rein", "--server", s.URL(), "watch", "s1", "--until-idle", "--idle-grace", "0"}, e)
	if code != 0 || !strings.Contains(out.String(), "── completed (end_turn) ──") || errOut.String() != "" {
		t.Errorf("watch with REIN_API_TOKEN ending in a newline: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}

	r := rein(t, s.URL(), "--token", "test-client\ntoken", "prompt", "--queue", "s1", "hi")
	if want := "rein: client token: contains a control character (byte 0x0a at 11); it cannot be sent in an HTTP header\n"; r.code != 1 || r.stderr != want {
		t.Errorf("prompt with a newline inside the token: exit %d, stderr %q; want 1, %q", r.code, r.stderr, want)
	}
}
