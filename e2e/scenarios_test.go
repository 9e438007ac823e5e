package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/client"
)

// words is what demo-agent streams for "slow: n".
func words(n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = fmt.Sprintf("w%d", i+1)
	}
	return strings.Join(w, " ")
}

// 1. Happy path: a plain prompt streams text; a run: prompt runs a real
// command as a tool call; the client's model equals GET /artifacts.
func TestHappyPath(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	_, f := e.session("happy")
	e.prompt("happy", "hello world")
	waitTurns(t, e.ctx, f, 1)
	e.prompt("happy", "run: echo hello")
	waitTurns(t, e.ctx, f, 2)
	// stderr and a failing command; alone, since the order of two pipes
	// is not defined.
	e.prompt("happy", "run: echo oops >&2; exit 3")
	waitTurns(t, e.ctx, f, 3)
	arts := e.assertModelMatchesServer(f, "happy")
	wantTranscript(t, "happy", arts, []string{
		"turn completed end_turn",
		"user: hello world",
		"text done: You said: hello world",
		"turn completed end_turn",
		"user: run: echo hello",
		"text done: Running `echo hello`",
		`tool shell completed exit=0 output="hello\n"`,
		"text done: Exit code 0.",
		"turn completed end_turn",
		"user: run: echo oops >&2; exit 3",
		"text done: Running `echo oops >&2; exit 3`",
		`tool shell failed exit=3 output="oops\n"`,
		"text done: Exit code 3.",
	})
	e.waitIdle("happy")
	s, err := e.c.Session(e.ctx, "happy")
	if err != nil || s.Summary == nil || *s.Summary != "hello world" {
		t.Fatalf("session %+v, %v: want summary %q", s, err, "hello world")
	}
}

// 2. Abort in the middle of a running tool: the turn and the tool are
// cancelled, and the agent takes the next prompt.
func TestAbortRunningTool(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	_, f := e.session("abort")
	e.prompt("abort", "run: echo started; sleep 30")
	err := f.WaitFor(e.ctx, "tool output", func(arts []*protocol.Artifact) bool {
		for _, a := range arts {
			if a.Type == protocol.ArtifactToolCall && strings.Contains(a.String("output"), "started") {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Command(e.ctx, "abort", protocol.Command{Type: protocol.CommandAbort}); err != nil {
		t.Fatal(err)
	}
	waitTurns(t, e.ctx, f, 1)
	e.prompt("abort", "still there?")
	waitTurns(t, e.ctx, f, 2)
	arts := e.assertModelMatchesServer(f, "abort")
	wantTranscript(t, "abort", arts, []string{
		"turn cancelled cancelled",
		"user: run: echo started; sleep 30",
		"text done: Running `echo started; sleep 30`",
		`tool shell cancelled exit=<nil> output="started\n"`,
		"turn completed end_turn",
		"user: still there?",
		"text done: You said: still there?",
	})
}

// 3. Permission: a pending permission artifact, answered by a client
// command; once approved, once denied.
func TestPermissionApproveAndDeny(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	_, f := e.session("perm")
	answer := func(turn int, option string) {
		t.Helper()
		reqID := waitPermission(t, e.ctx, f)
		if _, err := e.c.Command(e.ctx, "perm", protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: reqID, OptionID: option}); err != nil {
			t.Fatal(err)
		}
		waitTurns(t, e.ctx, f, turn)
	}
	e.prompt("perm", "ask: may I read the repo?")
	answer(1, "allow")
	e.prompt("perm", "ask: may I delete it?")
	answer(2, "deny")
	arts := e.assertModelMatchesServer(f, "perm")
	wantTranscript(t, "perm", arts, []string{
		"turn completed end_turn",
		"user: ask: may I read the repo?",
		`permission approved "may I read the repo?" option=allow`,
		"text done: Permission granted.",
		"turn completed end_turn",
		"user: ask: may I delete it?",
		`permission denied "may I delete it?" option=deny`,
		"text done: Permission denied.",
	})
}

// assertSlowText checks that the one slow turn's text is exactly what the
// agent produced: no gap, no repeat.
func assertSlowText(t *testing.T, arts []*protocol.Artifact, n int) {
	t.Helper()
	var texts []string
	for _, a := range arts {
		if a.Type == protocol.ArtifactAssistantText {
			texts = append(texts, a.String("text"))
		}
	}
	if len(texts) != 1 || texts[0] != words(n) {
		t.Fatalf("streamed text is not exactly the agent's %d words:\n%s", n, strings.Join(render(arts), "\n"))
	}
}

// 4. kill -9 of the server during a long streamed turn, restart on the same
// database: agentd and the client reconnect by themselves and the text is
// exactly what the agent produced.
func TestServerKilledMidTurn(t *testing.T) {
	e := newEnv(t)
	const n = 400
	_, f := e.session("crash", "DEMO_AGENT_DELAY=10ms")
	e.prompt("crash", fmt.Sprintf("slow: %d", n))
	err := f.WaitFor(e.ctx, "some streamed words", func(arts []*protocol.Artifact) bool {
		for _, a := range arts {
			if a.Type == protocol.ArtifactAssistantText && len(a.String("text")) > 200 {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Kill()
	if err := e.srv.Restart(e.ctx); err != nil {
		t.Fatal(err)
	}
	waitTurns(t, e.ctx, f, 1)
	arts := e.assertModelMatchesServer(f, "crash")
	assertSlowText(t, arts, n)
	if f.Connects() < 2 {
		t.Fatalf("the client connected %d times; the kill should have forced a reconnect", f.Connects())
	}
	// And a client that was never connected sees the same.
	fresh := Follow(e.ctx, e.c, "crash")
	defer fresh.Close()
	e.assertModelMatchesServer(fresh, "crash")
}

// 4b. kill -9 of the server while a tool prints megabytes, past the size
// at which the server stops writing an output whole and keeps it as
// appends and, at its close, a head (server/README.md, Memory): after the
// restart the state is folded from the log, so the output's next change
// writes its body without the text and the whole text as appends again,
// before more appends and the head. The output is exactly what the
// command printed, for the follower and for a new client.
func TestServerKilledDuringBigOutput(t *testing.T) {
	e := newEnv(t)
	_, f := e.session("bigout")
	const lines, width = 60, 99_999 // 6 MB over 3 s at least
	e.prompt("bigout", bigOutputPrompt(lines, width))
	waitPrinting(t, e.ctx, f, 1_500_000)
	e.srv.Kill()
	if err := e.srv.Restart(e.ctx); err != nil {
		t.Fatal(err)
	}
	waitTurns(t, e.ctx, f, 1)
	for _, follower := range []*Follower{f, Follow(e.ctx, e.c, "bigout")} {
		assertPrinted(t, e.assertModelMatchesServer(follower, "bigout"), lines, width)
		if follower != f {
			follower.Close()
		}
	}
}

// 4c. kill -9 of the server while a tool prints binary output, NUL in
// every line as `cat` of an executable prints it. Text holding NUL is
// appended like any other (on PostgreSQL, whose text type cannot store
// NUL, as bytes: migration 0011), so the restarted server reads those
// appends back and folds the log again, and the output then grows past
// the size at which it is kept as appends and a head (as in 4b); the
// output is exactly what the command printed, NUL and all, for the
// follower and for a new client. Under REIN_E2E_DB=postgres (make
// test-pg) it runs on PostgreSQL.
func TestServerKilledDuringBinaryOutput(t *testing.T) {
	e := newEnv(t)
	_, f := e.session("binout")
	const lines, zeros = 300, 4_000 // 1.2 MB over 3 s at least
	e.prompt("binout", fmt.Sprintf(`run: for i in $(seq 1 %d); do head -c %d /dev/zero; echo " line $i"; sleep 0.01; done`, lines, zeros))
	waitPrinting(t, e.ctx, f, lines*zeros/4)
	e.srv.Kill()
	if err := e.srv.Restart(e.ctx); err != nil {
		t.Fatal(err)
	}
	waitTurns(t, e.ctx, f, 1)
	var want strings.Builder
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&want, "%s line %d\n", strings.Repeat("\x00", zeros), i)
	}
	for _, follower := range []*Follower{f, Follow(e.ctx, e.c, "binout")} {
		a := firstTool(e.assertModelMatchesServer(follower, "binout"))
		if a == nil || a.String("status") != string(protocol.ToolCompleted) || a.String("output") != want.String() {
			got := "none"
			if a != nil {
				got = fmt.Sprintf("%s, %d bytes, %d NUL", a.String("status"), len(a.String("output")), strings.Count(a.String("output"), "\x00"))
			}
			t.Fatalf("the tool: %s; want completed, exactly the %d bytes printed", got, want.Len())
		}
		if follower != f {
			follower.Close()
		}
	}
}

// bigOutputPrompt is demo-agent's prompt for a tool that prints lines of
// width x's, one every 50 ms.
func bigOutputPrompt(lines, width int) string {
	return fmt.Sprintf(`run: for i in $(seq 1 %d); do head -c %d /dev/zero | tr '\0' x; echo; sleep 0.05; done`, lines, width)
}

// firstTool returns the first tool call of arts, or nil.
func firstTool(arts []*protocol.Artifact) *protocol.Artifact {
	for _, a := range arts {
		if a.Type == protocol.ArtifactToolCall {
			return a
		}
	}
	return nil
}

// waitPrinting waits until f shows the tool with more than n bytes of
// output, and fails unless it was still running then: the tests that
// call it kill something while the tool prints.
func waitPrinting(t *testing.T, ctx context.Context, f *Follower, n int) {
	t.Helper()
	var status string
	err := f.WaitFor(ctx, fmt.Sprintf("%d bytes of output", n), func(arts []*protocol.Artifact) bool {
		a := firstTool(arts)
		if a != nil {
			status = a.String("status")
		}
		return a != nil && len(a.String("output")) > n
	})
	if err != nil {
		t.Fatal(err)
	}
	if status != string(protocol.ToolRunning) {
		t.Fatalf("the tool was %s when it had printed %d bytes; the test needs it still printing", status, n)
	}
}

// assertPrinted fails unless arts hold the tool of bigOutputPrompt
// completed, with exactly what it printed.
func assertPrinted(t *testing.T, arts []*protocol.Artifact, lines, width int) {
	t.Helper()
	want := strings.Repeat(strings.Repeat("x", width)+"\n", lines)
	if a := firstTool(arts); a == nil || a.String("status") != string(protocol.ToolCompleted) || a.String("output") != want {
		got := "none"
		if a != nil {
			got = fmt.Sprintf("%s, %d bytes", a.String("status"), len(a.String("output")))
		}
		t.Fatalf("the tool: %s; want completed, exactly the %d bytes printed", got, len(want))
	}
}

// 5. A network partition between agentd and the server during a turn: the
// session shows disconnected, then live again, and nothing is lost.
func TestNetworkPartition(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	proxy, err := NewProxy(strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	// Closed after agentd stops (cleanups run last first), not when the
	// test returns: agentd's shutdown flushes its last events over it,
	// and without it waited out its whole --flush-timeout (10 s).
	t.Cleanup(func() { proxy.Close() })
	const n = 300
	e.create("part", "")
	f := Follow(e.ctx, e.c, "part")
	defer f.Close()
	e.agentd(proxy.URL(), "part", []string{"DEMO_AGENT_DELAY=10ms"}, nil)
	e.waitIdle("part")
	e.prompt("part", fmt.Sprintf("slow: %d", n))
	if err := f.WaitFor(e.ctx, "the turn to start streaming", func(arts []*protocol.Artifact) bool {
		for _, a := range arts {
			if a.Type == protocol.ArtifactAssistantText {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	if err := e.sw.WaitStatus(e.ctx, "part", protocol.StatusDisconnected); err != nil {
		t.Fatal(err)
	}
	// Keep the link down while agentd keeps trying: the fault lasts a while
	// on purpose, this is not waiting for a condition.
	time.Sleep(2 * time.Second)
	proxy.Restore()
	waitTurns(t, e.ctx, f, 1)
	arts := e.assertModelMatchesServer(f, "part")
	assertSlowText(t, arts, n)
	e.waitIdle("part")
	h := e.sw.History("part")
	i := indexOf(h, protocol.StatusDisconnected)
	if i < 0 || indexOf(h[i:], protocol.StatusLive) < 0 && indexOf(h[i:], protocol.StatusIdle) < 0 {
		t.Fatalf("status history %v: want disconnected and then live/idle again", h)
	}
}

func indexOf(h []protocol.SessionStatus, st protocol.SessionStatus) int {
	for i, s := range h {
		if s == st {
			return i
		}
	}
	return -1
}

// 6. A second agentd for the same session takes over; the first one, when
// it wakes up, is refused as superseded and exits saying so; the session
// carries on with the new one.
func TestAgentdTakeover(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	old, f := e.session("take")
	e.prompt("take", "first")
	waitTurns(t, e.ctx, f, 1)
	old.Signal(syscall.SIGSTOP) // frozen, as a process stuck on a dead host
	newer := e.agentd(e.srv.URL, "take", nil, nil)
	if err := e.sw.Wait(e.ctx, "the new agentd connected", func() bool {
		s := e.sw.sessions["take"]
		return s.Status == protocol.StatusIdle || s.Status == protocol.StatusLive
	}); err != nil {
		t.Fatal(err)
	}
	old.Signal(syscall.SIGCONT)
	if err := old.Wait(60 * time.Second); err != nil {
		t.Fatalf("the superseded agentd did not exit: %v", err)
	}
	if code := old.ExitCode(); code == 0 {
		t.Fatalf("superseded agentd exited 0; want non-zero")
	}
	if !strings.Contains(strings.ToLower(strings.Join(old.Output(), "\n")), "superseded") {
		t.Fatalf("superseded agentd's output does not say why:\n%s", strings.Join(old.Output(), "\n"))
	}
	e.waitIdle("take")
	e.prompt("take", "second")
	waitTurns(t, e.ctx, f, 2)
	arts := e.assertModelMatchesServer(f, "take")
	wantTranscript(t, "takeover", arts[len(arts)-3:], []string{
		"turn completed end_turn",
		"user: second",
		"text done: You said: second",
	})
	select {
	case <-newer.Done():
		t.Fatal("the new agentd exited")
	default:
	}
}

// vmRSS reads a process's resident memory in KiB.
func vmRSS(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb int
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%d", &kb)
			return kb
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// 7. A client that connects and never reads, beside a normal one: the
// normal one receives everything, the server drops the stalled one, and
// the server's memory stays bounded.
func TestStalledClient(t *testing.T) {
	// A short write timeout so the server gives up on the stalled client
	// well within the test.
	e := newEnv(t, "--write-timeout", "2s")
	_, f := e.session("stall")
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		// A tiny receive window, so the server's writes back up quickly.
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	stalled, err := d.DialContext(e.ctx, "tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	fmt.Fprintf(stalled, "GET /sessions/stall/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nAuthorization: Bearer %s\r\n\r\n", clientToken)
	before := vmRSS(t, e.srv.Pid())
	// 8,000,000 bytes of tool output, far more than the socket buffers
	// hold, in 8,000 lines: the bytes stall the client, and each line is
	// an event through race-built binaries (80,000 lines of 100 took
	// about a minute, as long as the rest of the suite's serial tests).
	const lines, width = 8000, 999
	line := strings.Repeat("x", width)
	e.prompt("stall", fmt.Sprintf("run: yes %s | head -n %d", line, lines))
	waitTurns(t, e.ctx, f, 1)
	arts := e.assertModelMatchesServer(f, "stall")
	want := strings.Repeat(line+"\n", lines)
	found := false
	for _, a := range arts {
		if a.Type != protocol.ArtifactToolCall {
			continue
		}
		out := a.String("output")
		found = out == want && a.String("status") == "completed"
		if !found {
			i := 0
			for i < len(out) && i < len(want) && out[i] == want[i] {
				i++
			}
			t.Errorf("tool output: %d bytes, want %d; first difference at byte %d (line %d)", len(out), len(want), i, i/(width+1))
		}
	}
	if !found {
		got := render(arts)
		for i, l := range got {
			if len(l) > 300 {
				got[i] = l[:300] + "…"
			}
		}
		t.Fatalf("the normal client did not get the exact output:\n%s", strings.Join(got, "\n"))
	}
	after := vmRSS(t, e.srv.Pid())
	// The server must drop the client that never reads, and say so. Only
	// then read the socket: reading earlier would un-stall it.
	if _, err := e.srv.WaitLine(e.ctx, "dropped a stream client"); err != nil {
		t.Fatal(err)
	}
	stalled.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 64<<10)
	var got int
	for {
		n, err := stalled.Read(buf)
		got += n
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("the stalled client's connection stayed open after the server said it dropped it (read %d bytes)", got)
			}
			break
		}
	}
	if got >= len(want) {
		t.Fatalf("the stalled client received %d bytes, the whole output: it never stalled the server", got)
	}
	t.Logf("server RSS %d KiB before, %d KiB after; the stalled client got %d of %d bytes before it was dropped", before, after, got, len(want))
	// Under the race detector RSS is mostly its shadow memory (several
	// times the heap), so the bound only means something without it.
	if growth := after - before; !raceEnabled && growth > 256<<10 {
		t.Fatalf("server RSS grew by %d KiB while one client stalled", growth)
	}
}

// 8. A session that never gets a sandbox is removed after the bootstrap
// timeout, and the session stream says so.
func TestBootstrapTimeout(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t, "--bootstrap-timeout", "1s")
	e.create("lonely", "p1")
	if err := e.sw.WaitRemoved(e.ctx, "lonely"); err != nil {
		t.Fatal(err)
	}
	var he *client.Error
	if _, err := e.c.Session(e.ctx, "lonely"); !errors.As(err, &he) || he.Status != 404 {
		t.Fatalf("GET a removed session: %v, want 404", err)
	}
}

// 9. Deleting a session while agentd is connected: agentd exits with a
// clear message, and the artifact stream ends.
func TestSessionDeletedUnderAgentd(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	p, f := e.session("doomed")
	e.prompt("doomed", "hi")
	waitTurns(t, e.ctx, f, 1)
	if err := e.c.DeleteSession(e.ctx, "doomed"); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	if p.ExitCode() == 0 {
		t.Fatal("agentd exited 0 after its session was deleted")
	}
	out := strings.ToLower(strings.Join(p.Output(), "\n"))
	if !strings.Contains(out, "doomed") || !(strings.Contains(out, "deleted") || strings.Contains(out, "not found")) {
		t.Fatalf("agentd's output does not say the session is gone:\n%s", out)
	}
	if err := f.WaitFor(e.ctx, "the stream to end", func([]*protocol.Artifact) bool { return false }); err == nil || f.Ended() == nil {
		t.Fatalf("the artifact stream did not end: %v", err)
	}
	var he *client.Error
	if !errors.As(f.Ended(), &he) || he.Status != 404 {
		t.Fatalf("follower ended with %v, want a 404 on reconnect", f.Ended())
	}
}

// 11. Many sessions at once, each with its own agentd and demo-agent,
// prompted in parallel: every session ends with exactly its own artifacts.
func TestManySessions(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	const n = 20
	followers := make([]*Follower, n)
	for i := range n {
		id := fmt.Sprintf("many-%02d", i)
		e.create(id, "fleet")
		followers[i] = Follow(e.ctx, e.c, id)
		defer followers[i].Close()
		e.agentd(e.srv.URL, id, nil, nil)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		id := fmt.Sprintf("many-%02d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
			defer cancel()
			if err := e.sw.WaitStatus(ctx, id, protocol.StatusIdle); err != nil {
				errs <- err
				return
			}
			// Plain prompts, not queued: "idle" means a sandbox holds
			// the command stream, even when agentd's first events
			// reach the server before its stream does (which the
			// twenty agentds starting at once make likely).
			for _, text := range []string{"hello from " + id, "run: echo " + id} {
				if _, err := e.c.Prompt(ctx, id, text); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, f := range followers {
		id := fmt.Sprintf("many-%02d", i)
		waitTurns(t, e.ctx, f, 2)
		arts := e.assertModelMatchesServer(f, id)
		wantTranscript(t, id, arts, []string{
			"turn completed end_turn",
			"user: hello from " + id,
			"text done: You said: hello from " + id,
			"turn completed end_turn",
			"user: run: echo " + id,
			"text done: Running `echo " + id + "`",
			fmt.Sprintf("tool shell completed exit=0 output=%q", id+"\n"),
			"text done: Exit code 0.",
		})
	}
}

// Rotating a session's sandbox token cuts off the agentd that holds the
// old one (it exits 4, saying why); an agentd given the new one takes over.
func TestSandboxTokenRotation(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	old, f := e.session("rot")
	newToken, err := e.c.RotateSandboxToken(e.ctx, "rot")
	if err != nil || newToken == "" {
		t.Fatalf("rotate: %q, %v", newToken, err)
	}
	if err := old.Wait(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	if code := old.ExitCode(); code != 4 {
		t.Fatalf("agentd with the rotated token exited %d, want 4", code)
	}
	if out := strings.Join(old.Output(), "\n"); !strings.Contains(out, "refused the token") || strings.Contains(out, newToken) {
		t.Fatalf("agentd's output should say the token was refused, and never show a token:\n%s", out)
	}
	if err := os.WriteFile(e.tokens["rot"], []byte(newToken), 0o600); err != nil {
		t.Fatal(err)
	}
	// The old stream's end reaches the session's status a moment after
	// the old agentd exits: wait for it, or "idle" below could be the
	// old agentd's and the prompt find no sandbox.
	if err := e.sw.WaitStatus(e.ctx, "rot", protocol.StatusDisconnected); err != nil {
		t.Fatal(err)
	}
	e.agentd(e.srv.URL, "rot", nil, nil)
	e.waitIdle("rot")
	e.prompt("rot", "after rotation")
	waitTurns(t, e.ctx, f, 1)
	wantTranscript(t, "rotation", e.assertModelMatchesServer(f, "rot"), []string{
		// The old agentd stopped its agent after the 401 and could not
		// post agent_exited; it waited in the shared state dir, and the
		// new agentd posted it first.
		"notice info: agent exited (code 0)",
		"turn completed end_turn",
		"user: after rotation",
		"text done: You said: after rotation",
	})
}

// A sandbox token given in the environment the way a Kubernetes secret or
// an env file gives it, with a trailing newline, connects as the same
// token in a file does: agentd trims it. Untrimmed, Go's client refused
// every request before sending it ("invalid header field value"), which
// agentd took for a network failure and retried forever, never saying
// the token was the cause.
func TestSandboxTokenFromTheEnvironment(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	e.create("envtok", "")
	tok, err := os.ReadFile(e.tokens["envtok"])
	if err != nil {
		t.Fatal(err)
	}
	delete(e.tokens, "envtok") // no --token-file: REIN_TOKEN alone
	p := e.agentd(e.srv.URL, "envtok", []string{"REIN_TOKEN=" + string(tok) + "\n"}, nil)
	// The first word of the command stream: connected, or the retry
	// that never ends.
	line, err := p.WaitLine(e.ctx, "command stream")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, "command stream connected") {
		t.Fatalf("agentd with REIN_TOKEN ending in a newline did not connect: %s", line)
	}
	e.waitIdle("envtok")
	if out := strings.Join(p.Output(), "\n"); strings.Contains(out, string(tok)) {
		t.Fatalf("agentd's output shows the token:\n%s", out)
	}
}

// The real binary refuses what is not yours: no token, a sandbox token on
// a client route, and another session's sandbox token.
func TestAuthRefusals(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	e.create("mine", "")
	e.create("theirs", "")
	tok := func(id string) string {
		b, err := os.ReadFile(e.tokens[id])
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cases := []struct {
		token, method, path string
		want                int
	}{
		{"", "GET", "/sessions", 401},
		{"wrong-token-wrong-token", "GET", "/sessions", 401},
		{tok("mine"), "GET", "/sessions/mine/artifacts", 403},
		{tok("mine"), "POST", "/sessions/mine/commands", 403},
		{tok("theirs"), "POST", "/sessions/mine/events", 403},
		{tok("mine"), "POST", "/sessions/mine/events", 202},
		{clientToken, "GET", "/sessions/mine/artifacts", 200},
	}
	for _, tc := range cases {
		c, err := client.New(e.srv.URL, tc.token)
		if err != nil {
			t.Fatal(err)
		}
		var body any
		if tc.method == "POST" {
			body = map[string]string{"type": "notice", "level": "info", "message": "hi"}
			if strings.HasSuffix(tc.path, "/commands") {
				body = map[string]string{"type": "abort"}
			}
		}
		err = c.Do(e.ctx, tc.method, tc.path, body, nil)
		var he *client.Error
		switch {
		case tc.want/100 == 2 && err != nil:
			t.Errorf("%s %s with %q: %v, want %d", tc.method, tc.path, tc.token, err, tc.want)
		case tc.want/100 != 2 && (!errors.As(err, &he) || he.Status != tc.want):
			t.Errorf("%s %s with %q: %v, want %d", tc.method, tc.path, tc.token, err, tc.want)
		}
	}
}
