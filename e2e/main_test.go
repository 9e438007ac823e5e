package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/client"
	"github.com/rein-ai/rein/server/pgtest"
)

// bins are built once for the whole suite.
var bins Binaries

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rein-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if raceEnabled {
		// A binary built with -race sleeps a second before it exits
		// (GORACE atexit_sleep_ms, default 1000), so that goroutines
		// still running can report a race. Every test stops a server,
		// an agentd and its agent, many kill and restart them: that
		// second, paid at each exit, was a third of the suite's time.
		// A race found while the process runs is reported all the same.
		if v := os.Getenv("GORACE"); !strings.Contains(v, "atexit_sleep_ms") {
			os.Setenv("GORACE", strings.TrimSpace(v+" atexit_sleep_ms=0"))
		}
	}
	start := time.Now()
	bins, err = Build(context.Background(), dir, raceEnabled)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "e2e: built rein-server, agentd and demo-agent (race=%v) in %v\n", raceEnabled, time.Since(start).Round(time.Millisecond))
	// pgtest.Main stops the PostgreSQL cluster if a test started one.
	code := pgtest.Main(m)
	if n := ChildRaces(); n > 0 {
		// Which test's child it was is in that test's log, on the
		// line before the race's stacks.
		fmt.Fprintf(os.Stderr, "e2e: %d data race(s) reported by the binaries the tests ran: search the log for WARNING: DATA RACE\n", n)
		code = max(code, 1)
	}
	if n := ChildHangs(); n > 0 {
		fmt.Fprintf(os.Stderr, "e2e: %d child(ren) did not exit within the grace after SIGINT: search the log for \"after SIGINT: a shutdown hang\"\n", n)
		code = max(code, 1)
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one rein-server with a client and a session-stream watcher. The
// suite runs with authentication on, as production does: the client holds
// the client token and each agentd only its session's sandbox token.
type env struct {
	t      *testing.T
	ctx    context.Context
	srv    *Server
	c      *client.Client // the product's own Go client, with the client token
	sw     *SessionWatcher
	dir    string
	tokens map[string]string // session -> sandbox token file
}

// clientToken is the suite's client token (at least 16 bytes).
const clientToken = "e2e-client-token-0123456789abcdef"

// testDB returns the --db for a test's server: "" (a SQLite file in the
// server's directory) unless REIN_E2E_DB=postgres, which runs the suite
// on a fresh PostgreSQL database of a throwaway cluster (see pgtest).
func testDB(t *testing.T) string {
	t.Helper()
	switch db := os.Getenv("REIN_E2E_DB"); db {
	case "", "sqlite":
		return ""
	case "postgres":
		return pgtest.NewDatabase(t)
	default:
		t.Fatalf("REIN_E2E_DB=%q: want sqlite or postgres", db)
		return ""
	}
}

// newEnv starts a server on a fresh database in t.TempDir() (or on
// PostgreSQL: see testDB).
func newEnv(t *testing.T, serverArgs ...string) *env {
	t.Helper()
	return newEnvIn(t, "", serverArgs...)
}

// newEnvIn is newEnv with the SQLite database in dbDir when it is not "".
func newEnvIn(t *testing.T, dbDir string, serverArgs ...string) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "api-token")
	if err := os.WriteFile(tokenFile, []byte(clientToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--api-token-file", tokenFile}, serverArgs...)
	cfg := ServerConfig{Bin: bins.Server, Dir: dir, DB: testDB(t), Args: args}
	if dbDir != "" {
		cfg.Dir, cfg.DB = dbDir, ""
	}
	srv, err := StartServer(ctx, t.Logf, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(15 * time.Second) })
	c, err := client.New(srv.URL, clientToken)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, srv: srv, c: c, dir: dir, tokens: map[string]string{}}
	e.sw = WatchSessions(ctx, e.c)
	t.Cleanup(e.sw.Close)
	return e
}

// agentd starts agentd for session against serverURL, running cmd (the
// demo agent when cmd is empty), and stops it at cleanup.
func (e *env) agentd(serverURL, session string, envv, flags []string, cmd ...string) *Proc {
	e.t.Helper()
	if len(cmd) == 0 {
		cmd = []string{bins.DemoAgent}
	}
	args := []string{"--server", serverURL, "--session", session}
	if f := e.tokens[session]; f != "" {
		args = append(args, "--token-file", f)
	}
	if !slices.Contains(flags, "--state-dir") {
		// One state dir per test: each session gets its own subdirectory.
		args = append(args, "--state-dir", filepath.Join(e.dir, "agentd-state"))
	}
	args = append(args, flags...)
	args = append(append(args, "--"), cmd...)
	p, err := Start(e.t.Logf, "agentd "+session, envv, bins.Agentd, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { p.Stop(15 * time.Second) })
	return p
}

// create creates a session and keeps its sandbox token in a file for the
// agentd that will serve it.
func (e *env) create(id, project string) {
	e.t.Helper()
	res, err := e.c.CreateSession(e.ctx, id, project)
	if err != nil {
		e.t.Fatalf("create %s: %v", id, err)
	}
	if res.SandboxToken == "" {
		e.t.Fatalf("create %s: no sandboxToken in the 201 body", id)
	}
	f := filepath.Join(e.dir, "sandbox-token-"+id)
	if err := os.WriteFile(f, []byte(res.SandboxToken), 0o600); err != nil {
		e.t.Fatal(err)
	}
	e.tokens[id] = f
}

// session creates a session, starts agentd with the demo agent, follows
// the artifact stream, and waits until the sandbox is connected.
func (e *env) session(id string, envv ...string) (*Proc, *Follower) {
	e.t.Helper()
	return e.sessionWith(id, envv, nil)
}

// sessionWith is session with agentd's flags too.
func (e *env) sessionWith(id string, envv, flags []string) (*Proc, *Follower) {
	e.t.Helper()
	e.create(id, "")
	f := Follow(e.ctx, e.c, id)
	e.t.Cleanup(f.Close)
	p := e.agentd(e.srv.URL, id, envv, flags)
	e.waitIdle(id)
	return p, f
}

// waitIdle waits until the agent is connected and not in a turn.
func (e *env) waitIdle(id string) {
	e.t.Helper()
	if err := e.sw.WaitStatus(e.ctx, id, protocol.StatusIdle); err != nil {
		e.t.Fatal(err)
	}
}

// waitSandboxBack waits, after the server restarted, until session id's
// sandbox has connected to the new process and the session is idle.
// waitIdle alone can pass on the status the session stream held from
// before the restart, while agentd is still backing off: a prompt then
// gets no_sandbox.
func (e *env) waitSandboxBack(id string) {
	e.t.Helper()
	if _, err := e.srv.WaitLine(e.ctx, `msg="sandbox connected" session=`+id+" "); err != nil {
		e.t.Fatal(err)
	}
	e.waitIdle(id)
}

func (e *env) prompt(id, text string) {
	e.t.Helper()
	if _, err := e.c.Prompt(e.ctx, id, text); err != nil {
		e.t.Fatalf("prompt %q: %v", text, err)
	}
}

// waitTurns waits until n turns exist and all of them have ended.
func waitTurns(t *testing.T, ctx context.Context, f *Follower, n int) {
	t.Helper()
	err := f.WaitFor(ctx, fmt.Sprintf("%d ended turns", n), func(arts []*protocol.Artifact) bool {
		ended := 0
		for _, a := range arts {
			if a.Type == protocol.ArtifactTurn && a.String("status") != "running" && a.String("status") != "" {
				ended++
			}
		}
		return ended >= n
	})
	if err != nil {
		t.Fatalf("%v\nmodel:\n%s", err, strings.Join(render(f.Artifacts()), "\n"))
	}
}

// render turns artifacts into one line each, in seq order: what a person
// would read, and exact enough to compare whole transcripts.
func render(arts []*protocol.Artifact) []string {
	var out []string
	for _, a := range arts {
		var line string
		switch a.Type {
		case protocol.ArtifactTurn:
			line = fmt.Sprintf("turn %s %s", a.String("status"), a.String("stopReason"))
		case protocol.ArtifactUserMessage:
			line = "user: " + a.String("text")
		case protocol.ArtifactAssistantText:
			line = fmt.Sprintf("text %s: %s", a.String("status"), a.String("text"))
		case protocol.ArtifactReasoning:
			line = fmt.Sprintf("reasoning %s: %s", a.String("status"), a.String("text"))
		case protocol.ArtifactToolCall:
			line = fmt.Sprintf("tool %s %s exit=%v output=%q", a.String("name"), a.String("status"), a.Fields["exitCode"], a.String("output"))
		case protocol.ArtifactPermission:
			line = fmt.Sprintf("permission %s %q option=%s", a.String("status"), a.String("title"), a.String("optionId"))
		case protocol.ArtifactPlan:
			var entries []protocol.PlanEntry
			b, _ := json.Marshal(a.Fields["entries"])
			_ = json.Unmarshal(b, &entries)
			parts := make([]string, len(entries))
			for i, en := range entries {
				parts[i] = en.Content + "=" + string(en.Status)
			}
			line = "plan: " + strings.Join(parts, "; ")
		case protocol.ArtifactNotice:
			line = fmt.Sprintf("notice %s: %s", a.String("level"), a.String("message"))
		case protocol.ArtifactFileChange:
			line = fmt.Sprintf("file %s %s", a.String("change"), a.String("path"))
		default:
			line = "unknown " + string(a.Type)
		}
		out = append(out, line)
	}
	return out
}

// wantTranscript compares the rendered artifacts with want, line by line.
func wantTranscript(t *testing.T, what string, arts []*protocol.Artifact, want []string) {
	t.Helper()
	got := render(arts)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s transcript:\n--- got\n%s\n--- want\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// assertModelMatchesServer checks the follower's model against a fresh
// GET /artifacts, byte for byte, once the follower has caught up with it,
// and that the stream never broke its ordering promise.
func (e *env) assertModelMatchesServer(f *Follower, id string) []*protocol.Artifact {
	e.t.Helper()
	rest, err := e.c.Artifacts(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	var maxRev int64
	for _, a := range rest {
		maxRev = max(maxRev, a.Rev)
	}
	err = f.WaitFor(e.ctx, fmt.Sprintf("model at rev %d", maxRev), func(arts []*protocol.Artifact) bool {
		var m int64
		for _, a := range arts {
			m = max(m, a.Rev)
		}
		return m >= maxRev
	})
	if err != nil {
		e.t.Fatal(err)
	}
	model, _ := json.MarshalIndent(f.Artifacts(), "", " ")
	server, _ := json.MarshalIndent(rest, "", " ")
	if !bytes.Equal(model, server) {
		e.t.Fatalf("client model differs from GET /artifacts:\n--- model\n%s\n--- server\n%s", model, server)
	}
	if v := f.Violations(); len(v) > 0 {
		e.t.Fatalf("stream broke its promises: %v", v)
	}
	return rest
}

// waitPermission waits for a pending permission artifact and returns its
// id, the requestId a client answers with.
func waitPermission(t *testing.T, ctx context.Context, f *Follower) string {
	t.Helper()
	var reqID string
	err := f.WaitFor(ctx, "a pending permission", func(arts []*protocol.Artifact) bool {
		for _, a := range arts {
			if a.Type == protocol.ArtifactPermission && a.String("status") == "pending" {
				reqID = a.ID
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	return reqID
}
