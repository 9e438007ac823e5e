package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/client"
)

// userMessages counts the user messages with text in a transcript.
func userMessages(arts []*protocol.Artifact, text string) int {
	n := 0
	for _, a := range arts {
		if a.Type == protocol.ArtifactUserMessage && a.String("text") == text {
			n++
		}
	}
	return n
}

// waitNoPending waits until the session has no accepted command its
// sandbox has not acknowledged (a bounded poll for a condition).
func (e *env) waitNoPending(id string) protocol.Session {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec, err := e.c.Session(e.ctx, id)
		if err != nil {
			e.t.Fatal(err)
		}
		if rec.PendingCommands == 0 {
			return rec
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("session %s still has %d pending commands (acked %d)", id, rec.PendingCommands, rec.AckedCommandID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNewInstanceTakesOverMidTurn: agentd and its agent die mid-turn
// (kill -9) and a new agentd WITHOUT the old state dir (a new container,
// a new Rein-Instance) takes the session. The server closes the dead turn
// as interrupted, and the prompt it had accepted but the dead agent never
// started is delivered to the new instance and run, once.
func TestNewInstanceTakesOverMidTurn(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	id := "takeover"
	env := []string{"DEMO_AGENT_DELAY=5ms"}
	e.create(id, "")
	f := Follow(e.ctx, e.c, id)
	defer f.Close()
	d := e.agentd(e.srv.URL, id, env, []string{"--state-dir", filepath.Join(e.dir, "state-old")})
	e.waitIdle(id)
	e.prompt(id, "slow: 5000")
	if err := f.WaitFor(e.ctx, "some streamed words", func(arts []*protocol.Artifact) bool {
		_, txt := textOf(arts, 1)
		return txt != nil && len(txt.String("text")) > 200
	}); err != nil {
		t.Fatal(err)
	}
	e.prompt(id, "after the takeover")
	// The agent took the slow prompt and not the second: the server hears
	// agentd's cursor on its event posts.
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec, err := e.c.Session(e.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if rec.AckedCommandID == 1 && rec.PendingCommands == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %+v: want command 1 acknowledged and 1 pending", rec)
		}
		time.Sleep(20 * time.Millisecond)
	}
	killSandbox(t, d)

	e.agentd(e.srv.URL, id, env, []string{"--state-dir", filepath.Join(e.dir, "state-new")})
	waitTurns(t, e.ctx, f, 2)
	e.waitNoPending(id)
	e.prompt(id, "next")
	waitTurns(t, e.ctx, f, 3)
	arts := e.assertModelMatchesServer(f, id)
	tr, txt := textOf(arts, 1)
	if tr.String("status") != "interrupted" || tr.String("stopReason") != "interrupted" || txt == nil || txt.String("status") != "interrupted" {
		t.Fatalf("transcript:\n%s\nwant the dead turn and its text interrupted", strings.Join(render(arts), "\n"))
	}
	rest := render(arts[indexArt(arts, txt)+1:])
	if len(rest) == 0 || !strings.HasPrefix(rest[0], "notice warning: turn t1 was interrupted: sandbox instance ") || !strings.Contains(rest[0], "took over the session") {
		t.Fatalf("after the dead turn:\n%s\nwant the server's interrupted notice first", strings.Join(rest, "\n"))
	}
	wantTranscript(t, "after the takeover", arts[indexArt(arts, txt)+2:], []string{
		"turn completed end_turn",
		"user: after the takeover",
		"text done: You said: after the takeover",
		"turn completed end_turn",
		"user: next",
		"text done: You said: next",
	})
	e.waitIdle(id)
}

// TestInitialAndQueuedPrompts: a prompt given at creation and one queued
// before any sandbox exists are run, in order and once each, when the
// first agentd connects; an agentd restarted on the same state dir does
// not run them again; a prompt without queue still gets 409 no_sandbox.
func TestInitialAndQueuedPrompts(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	id := "queued"
	first := "first"
	res, err := e.c.CreateSessionWith(e.ctx, id, protocol.CreateSessionRequest{Prompt: &first})
	if err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(e.dir, "sandbox-token-"+id)
	if err := os.WriteFile(tok, []byte(res.SandboxToken), 0o600); err != nil {
		t.Fatal(err)
	}
	e.tokens[id] = tok
	if _, err := e.c.Prompt(e.ctx, id, "refused"); protocol.CodeOf(err) != protocol.CodeNoSandbox {
		t.Fatalf("prompt without a sandbox: %v; want no_sandbox", err)
	}
	if n, err := e.c.QueuePrompt(e.ctx, id, "second"); err != nil || n != 2 {
		t.Fatalf("queued prompt: id %d, %v; want command 2", n, err)
	}
	if rec, err := e.c.Session(e.ctx, id); err != nil || rec.PendingCommands != 2 {
		t.Fatalf("before any sandbox: %+v, %v; want 2 pending commands", rec, err)
	}
	f := Follow(e.ctx, e.c, id)
	defer f.Close()

	d := e.agentd(e.srv.URL, id, nil, nil)
	waitTurns(t, e.ctx, f, 2)
	e.waitNoPending(id)
	// A restarted agentd (same state dir, same instance) resumes after
	// its cursor: nothing is run twice.
	d.Signal(syscall.SIGTERM)
	if err := d.Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	e.agentd(e.srv.URL, id, nil, nil)
	// Queued: whether or not the new agentd has connected yet.
	if _, err := e.c.QueuePrompt(e.ctx, id, "third"); err != nil {
		t.Fatal(err)
	}
	waitTurns(t, e.ctx, f, 3)
	arts := e.assertModelMatchesServer(f, id)
	for _, text := range []string{"first", "second", "third"} {
		if n := userMessages(arts, text); n != 1 {
			t.Errorf("prompt %q ran %d times; want once:\n%s", text, n, strings.Join(render(arts), "\n"))
		}
	}
	if n := userMessages(arts, "refused"); n != 0 {
		t.Errorf("the refused prompt ran %d times", n)
	}
	var got []string
	for _, a := range arts {
		if a.Type == protocol.ArtifactUserMessage {
			got = append(got, a.String("text"))
		}
	}
	if fmt.Sprint(got) != "[first second third]" {
		t.Errorf("prompts ran in the order %v", got)
	}
}

// TestRecreatedSessionGetsNoStaleState: agentd and its agent are killed
// mid-turn, the session is deleted and created again with the same id,
// and agentd is started again on the same state dir. What it saved for the
// deleted session (its command cursor, the open turn, its instance) must
// not be applied to the new one: the new session's first prompt runs, and
// its transcript holds that turn only, with no interrupted turn of the old
// session and no server notice of a takeover.
func TestRecreatedSessionGetsNoStaleState(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	id := "again"
	env := []string{"DEMO_AGENT_DELAY=5ms"}
	e.create(id, "")
	old := Follow(e.ctx, e.c, id)
	d := e.agentd(e.srv.URL, id, env, nil)
	e.waitIdle(id)
	e.prompt(id, "hello")
	waitTurns(t, e.ctx, old, 1)
	e.prompt(id, "slow: 5000")
	if err := old.WaitFor(e.ctx, "some streamed words", func(arts []*protocol.Artifact) bool {
		_, txt := textOf(arts, 2)
		return txt != nil && len(txt.String("text")) > 200
	}); err != nil {
		t.Fatal(err)
	}
	e.waitNoPending(id)
	killSandbox(t, d)
	old.Close()

	if err := e.c.DeleteSession(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	e.create(id, "")
	f := Follow(e.ctx, e.c, id)
	defer f.Close()
	e.agentd(e.srv.URL, id, env, nil)
	e.waitIdle(id)
	e.prompt(id, "in the new session")
	// With the deleted session's cursor (2) applied, this prompt (id 1)
	// would be skipped as already taken: bound the wait.
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	waitTurns(t, ctx, f, 1)
	arts := e.assertModelMatchesServer(f, id)
	wantTranscript(t, "the new session", arts, []string{
		"turn completed end_turn",
		"user: in the new session",
		"text done: You said: in the new session",
	})
	e.waitNoPending(id)
}

// TestRecreatedWhileAgentdCutOff: with authentication off (the make run
// default: no sandbox token tells two sessions of one id apart), the
// session is deleted and created again with a first prompt while its
// agentd is cut off by a proxy in the middle of a turn, its outbox filling
// up. When the link comes back, that agentd's requests name the old
// session: the server refuses them and agentd exits with code 3. Its
// command cursor must not count the new session's first prompt as taken,
// and none of its events may enter the new transcript: a new agentd gets
// the prompt, and the transcript holds that turn only.
func TestRecreatedWhileAgentdCutOff(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	srv, err := StartServer(ctx, t.Logf, ServerConfig{Bin: bins.Server, Dir: dir, DB: testDB(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(15 * time.Second) })
	c, err := client.New(srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, srv: srv, c: c, dir: dir, tokens: map[string]string{}}
	e.sw = WatchSessions(ctx, c)
	t.Cleanup(e.sw.Close)
	proxy, err := NewProxy(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()

	id := "cutoff"
	if _, err := c.CreateSession(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	old := Follow(ctx, c, id)
	defer old.Close()
	oldAgentd := e.agentd(proxy.URL(), id, []string{"DEMO_AGENT_DELAY=10ms"}, []string{"--state-dir", filepath.Join(dir, "old-sandbox")})
	e.waitIdle(id)
	e.prompt(id, "hello")
	waitTurns(t, ctx, old, 1)
	e.prompt(id, "slow: 400")
	if err := old.WaitFor(ctx, "some streamed words", func(arts []*protocol.Artifact) bool {
		_, txt := textOf(arts, 2)
		return txt != nil && len(txt.String("text")) > 100
	}); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	old.Close()

	if err := c.DeleteSession(ctx, id); err != nil {
		t.Fatal(err)
	}
	first := "the new session's first prompt"
	if _, err := c.CreateSessionWith(ctx, id, protocol.CreateSessionRequest{Prompt: &first}); err != nil {
		t.Fatal(err)
	}
	proxy.Restore()
	if err := oldAgentd.Wait(90 * time.Second); err != nil {
		t.Fatalf("the old session's agentd did not exit: %v", err)
	}
	if code := oldAgentd.ExitCode(); code != 3 {
		t.Fatalf("the old session's agentd exited %d; want 3 (its session is gone)", code)
	}
	rec, err := c.Session(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.AckedCommandID != 0 || rec.PendingCommands != 1 {
		t.Fatalf("after the old agentd: ackedCommandId %d, pendingCommands %d; want 0 and 1 (the first prompt not taken)", rec.AckedCommandID, rec.PendingCommands)
	}
	if arts, err := c.Artifacts(ctx, id); err != nil || len(arts) != 0 {
		t.Fatalf("after the old agentd, the new session's transcript: %v, %v; want it empty", render(arts), err)
	}

	f := Follow(ctx, c, id)
	defer f.Close()
	e.agentd(srv.URL, id, []string{"DEMO_AGENT_DELAY=5ms"}, []string{"--state-dir", filepath.Join(dir, "new-sandbox")})
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	waitTurns(t, wctx, f, 1)
	arts := e.assertModelMatchesServer(f, id)
	wantTranscript(t, "the new session", arts, []string{
		"turn completed end_turn",
		"user: " + first,
		"text done: You said: " + first,
	})
}
