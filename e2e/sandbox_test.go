package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rein-ai/rein/e2e/internal/loadgen"
	"github.com/rein-ai/rein/protocol"
)

// outboxEvents reads every event in a session's agentd outbox (the frame
// format agentd/README.md documents: u32 length, u32 CRC-32C, u64
// agentSeq, JSON), acknowledged or not: nothing is compacted in a test
// this small, so it is everything agentd read from its agent.
func outboxEvents(t *testing.T, dir string) []protocol.Event {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no outbox segments in %s (%v)", dir, err)
	}
	var out []protocol.Event
	for _, s := range segs {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		for len(b) >= 16 {
			n := int(binary.LittleEndian.Uint32(b[0:4]))
			if len(b) < 16+n {
				break // a torn tail: agentd drops it too
			}
			var ev protocol.Event
			if err := json.Unmarshal(b[16:16+n], &ev); err != nil {
				t.Fatalf("outbox record: %v", err)
			}
			out = append(out, ev)
			b = b[16+n:]
		}
	}
	return out
}

// readTurnText is the text the outbox holds for the last turn: the deltas
// after its turn_started, in order.
func readTurnText(evs []protocol.Event) (text string, deltas int) {
	var sb strings.Builder
	for _, ev := range evs {
		switch ev.Type {
		case protocol.EventTurnStarted:
			sb.Reset()
			deltas = 0
		case protocol.EventTextDelta:
			sb.WriteString(ev.Delta)
			deltas++
		}
	}
	return sb.String(), deltas
}

var agentPid = regexp.MustCompile(`msg="agent started".* pid=(\d+)`)

// killSandbox kills agentd and then its agent with SIGKILL, as a crashed
// container would: agentd first, so it cannot report the agent's end.
func killSandbox(t *testing.T, d *Proc) {
	t.Helper()
	var pid int
	for _, l := range d.Output() {
		if m := agentPid.FindStringSubmatch(l); m != nil {
			pid, _ = strconv.Atoi(m[1])
		}
	}
	if pid == 0 {
		t.Fatal("no agent pid in agentd's log")
	}
	d.Kill()
	// The agent has a process group of its own (agentd signals it).
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// TestAgentdKilledAloneTakesItsAgentAlong: agentd alone dies (the OOM
// killer, a crash) while its agent runs, here an agent that never reads
// its stdin, with a tool of its own. The kernel kills the agent with
// agentd; the agentd started next on the state dir kills the tool the
// agent left, before it says the agent is gone and starts the next one.
// Both used to run on, the agent unsupervised, while the transcript said
// it was gone and another agent worked in the same place.
func TestAgentdKilledAloneTakesItsAgentAlong(t *testing.T) {
	e := newEnv(t)
	id := "alone"
	e.create(id, "")
	d := e.agentd(e.srv.URL, id, nil, nil, "sh", "-c", "sleep 3117 & exec sleep 3118")
	var agent int
	for deadline := time.Now().Add(30 * time.Second); agent == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no agent pid in agentd's log within 30 s")
		}
		for _, l := range d.Output() {
			if m := agentPid.FindStringSubmatch(l); m != nil {
				agent, _ = strconv.Atoi(m[1])
			}
		}
	}
	tool, err := loadgen.WaitChildren(agent, "3117", 10*time.Second)
	if err != nil {
		t.Fatalf("the agent's tool: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(agent, syscall.SIGKILL)
		_ = syscall.Kill(tool[0], syscall.SIGKILL)
	})
	d.Kill() // agentd's own process group: the agent's is another
	for deadline := time.Now().Add(10 * time.Second); loadgen.Alive(agent); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the agent (pid %d) still runs 10 s after its agentd was killed", agent)
		}
	}
	if !loadgen.Alive(tool[0]) {
		t.Fatalf("the agent's tool (pid %d) died with it: nothing left for the next agentd to find", tool[0])
	}
	next := e.agentd(e.srv.URL, id, nil, nil)
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	if _, err := next.WaitLine(ctx, "killed what the agent of a previous agentd on this state dir left running"); err != nil {
		t.Fatalf("the next agentd did not say it killed the tool: %v", err)
	}
	if loadgen.Alive(tool[0]) {
		t.Fatalf("the tool (pid %d) the old agent left still runs after the next agentd started", tool[0])
	}
}

func textOf(arts []*protocol.Artifact, turn int) (*protocol.Artifact, *protocol.Artifact) {
	n := 0
	var tr *protocol.Artifact
	for _, a := range arts {
		if a.Type == protocol.ArtifactTurn {
			n++
			if n == turn {
				tr = a
			}
		}
		if n == turn && a.Type == protocol.ArtifactAssistantText {
			return tr, a
		}
	}
	return tr, nil
}

// TestAgentdKilledMidTurn: kill -9 of agentd and its agent in the middle
// of a streamed turn, with the server healthy and with it frozen (so the
// events agentd read exist only in its outbox). agentd restarted on the
// same state dir posts every word it had read exactly once, closes the
// dead turn as interrupted, runs the prompt the server had accepted but
// the dead agent never started, and then the next prompt.
func TestAgentdKilledMidTurn(t *testing.T) {
	for _, frozen := range []bool{false, true} {
		name := "server healthy"
		if frozen {
			name = "server frozen"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			id := "kill9"
			const n = 5000
			f, d := e.slowTurn(id, n, nil)
			// Accepted (202) while the agent is busy: it waits in the
			// agent's queue and is never started by this agent.
			e.prompt(id, "after the crash")
			stateDir := filepath.Join(e.dir, "agentd-state", id)
			if frozen {
				_, before := readTurnText(outboxEvents(t, stateDir))
				e.srv.Signal(syscall.SIGSTOP)
				// Let agentd read a good deal more that only its outbox
				// holds (a bounded poll for a condition).
				deadline := time.Now().Add(30 * time.Second)
				for {
					if _, now := readTurnText(outboxEvents(t, stateDir)); now >= before+300 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("the outbox did not grow while the server was frozen")
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			killSandbox(t, d)
			want, deltas := readTurnText(outboxEvents(t, stateDir))
			if frozen {
				e.srv.Signal(syscall.SIGCONT)
			}
			if deltas == 0 || deltas >= n || !strings.HasPrefix(words(n), want) {
				t.Fatalf("outbox holds %d deltas %q...: want a cut-short prefix of the slow text", deltas, want[:min(len(want), 40)])
			}

			e.agentd(e.srv.URL, id, slowAgent, nil)
			waitTurns(t, e.ctx, f, 2)
			e.prompt(id, "next")
			waitTurns(t, e.ctx, f, 3)
			arts := e.assertModelMatchesServer(f, id)
			tr, txt := textOf(arts, 1)
			if txt == nil || txt.String("text") != want {
				got := ""
				if txt != nil {
					got = txt.String("text")
				}
				t.Fatalf("the killed turn's text (%d bytes) is not the %d words agentd had read (%d bytes), each once:\n got ...%q\nwant ...%q",
					len(got), deltas, len(want), got[max(0, len(got)-60):], want[max(0, len(want)-60):])
			}
			if tr.String("status") != "interrupted" || tr.String("stopReason") != "interrupted" || txt.String("status") != "interrupted" {
				t.Fatalf("killed turn %s %s, its text %s: want interrupted", tr.String("status"), tr.String("stopReason"), txt.String("status"))
			}
			wantTranscript(t, "after the restart", arts[indexArt(arts, txt)+1:], []string{
				"notice warning: turn t1 was interrupted: agentd or its agent stopped while this turn was running",
				agentGone,
				"turn completed end_turn",
				"user: after the crash",
				"text done: You said: after the crash",
				"turn completed end_turn",
				"user: next",
				"text done: You said: next",
			})
			e.waitIdle(id)
		})
	}
}

// slowAgent is demo-agent's environment for slowTurn: 5 ms a word.
var slowAgent = []string{"DEMO_AGENT_DELAY=5ms"}

// slowTurn starts session id (sessionWith) with demo-agent at
// slowAgent's pace, prompts "slow: n" and waits until some of the words
// are streamed. It returns the session's follower (closed at
// cleanup) and agentd.
func (e *env) slowTurn(id string, n int, flags []string) (*Follower, *Proc) {
	e.t.Helper()
	d, f := e.sessionWith(id, slowAgent, flags)
	e.prompt(id, fmt.Sprintf("slow: %d", n))
	if err := f.WaitFor(e.ctx, "some streamed words", func(arts []*protocol.Artifact) bool {
		_, txt := textOf(arts, 1)
		return txt != nil && len(txt.String("text")) > 200
	}); err != nil {
		e.t.Fatal(err)
	}
	return f, d
}

func indexArt(arts []*protocol.Artifact, a *protocol.Artifact) int {
	for i, x := range arts {
		if x == a {
			return i
		}
	}
	return -1
}

// TestAgentdSIGTERMMidTurn: a clean stop (docker stop) during a turn ends
// it as cancelled, not failed.
func TestAgentdSIGTERMMidTurn(t *testing.T) {
	e := newEnv(t)
	id := "sigterm"
	e.create(id, "")
	f := Follow(e.ctx, e.c, id)
	defer f.Close()
	d := e.agentd(e.srv.URL, id, []string{"DEMO_AGENT_DELAY=10ms"}, nil)
	e.waitIdle(id)
	e.prompt(id, "slow: 3000")
	if err := f.WaitFor(e.ctx, "some streamed words", func(arts []*protocol.Artifact) bool {
		_, txt := textOf(arts, 1)
		return txt != nil && len(txt.String("text")) > 50
	}); err != nil {
		t.Fatal(err)
	}
	d.Signal(syscall.SIGTERM)
	if err := d.Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if code := d.ExitCode(); code != 0 {
		t.Fatalf("agentd exited %d after SIGTERM, want 0", code)
	}
	waitTurns(t, e.ctx, f, 1)
	arts := e.assertModelMatchesServer(f, id)
	tr, txt := textOf(arts, 1)
	if tr.String("status") != "cancelled" || tr.String("stopReason") != "cancelled" || txt == nil || txt.String("status") != "interrupted" {
		t.Fatalf("transcript after SIGTERM:\n%s\nwant the turn cancelled and its text interrupted", strings.Join(render(arts), "\n"))
	}
}

// TestGarbledInstanceFileKeepsEvents: agentd logged its agent's events
// while the server was unreachable and stopped; its state dir's instance
// file was garbled since (a disk's error, a hand edit) into something the
// server refuses as a Rein-Instance header (400 invalid on every
// request). Posting under it, agentd would take each refusal for one of
// that event alone and drop the whole outbox, event by event. Instead it
// stops (exit 1) naming the file, keeping the events, and once the file
// holds the instance again the next agentd posts them.
func TestGarbledInstanceFileKeepsEvents(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	id := "garbled"
	e.create(id, "")
	proxy, err := NewProxy(strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.Cut()
	state := filepath.Join(e.dir, "state")
	d := e.agentd(proxy.URL(), id, nil, []string{"--state-dir", state})
	// The agent starts at once: its agent_started waits in the outbox.
	if _, err := d.WaitLine(e.ctx, "posting events failed; retrying"); err != nil {
		t.Fatal(err)
	}
	d.Stop(15 * time.Second)
	if code := d.ExitCode(); code != 0 {
		t.Fatalf("agentd stopped with the server unreachable: exit %d; want 0, its events kept in the outbox", code)
	}
	file := filepath.Join(state, id, "instance")
	instance, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("agentd 7f3a\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	d = e.agentd(e.srv.URL, id, nil, []string{"--state-dir", state})
	if err := d.Wait(30 * time.Second); err != nil {
		var dropped []string
		for _, l := range d.Output() {
			if strings.Contains(l, "dropping it") {
				dropped = append(dropped, l)
			}
		}
		t.Fatalf("%v; want it to stop on an instance id the server refuses. It dropped %d events:\n%s", err, len(dropped), strings.Join(dropped, "\n"))
	}
	if code := d.ExitCode(); code != 1 {
		t.Fatalf("agentd on a garbled instance file: exit %d; want 1", code)
	}
	if out := strings.Join(d.Output(), "\n"); !strings.Contains(out, "read instance") || !strings.Contains(out, "agentd 7f3a") {
		t.Fatalf("agentd's error does not name the instance file and what it holds:\n%s", out)
	}
	if page, err := e.c.EventLog(e.ctx, id, 0, 100); err != nil || len(page.Events) != 0 {
		t.Fatalf("event log after the refused start: %+v, %v; want nothing posted", page, err)
	}

	if err := os.WriteFile(file, instance, 0o600); err != nil {
		t.Fatal(err)
	}
	e.agentd(e.srv.URL, id, nil, []string{"--state-dir", state})
	e.waitIdle(id)
	page, err := e.c.EventLog(e.ctx, id, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var first protocol.Event
	if len(page.Events) > 0 {
		_ = json.Unmarshal(page.Events[0].Event, &first)
	}
	if len(page.Events) == 0 || first.Type != protocol.EventAgentStarted || page.Events[0].Instance != strings.TrimSpace(string(instance)) {
		t.Fatalf("event log: %+v; want the first agent's agent_started first, under the instance %s", page.Events, instance)
	}
}

// TestZeroSessionFileKeepsEvents: agentd recorded its session's createdAt
// in the state dir, then logged events it could not post and stopped; the
// session file was garbled since into 0 (a disk's error, a hand edit),
// which the outbox read as a number. Sent as Rein-Session-Created, the
// server refuses it with 400 invalid, and the next agentd's startup probe
// retried that for ever, its agent never started. Instead it stops (exit
// 1) naming the file, keeping the events, and once the file holds the
// createdAt again the next agentd posts them.
func TestZeroSessionFileKeepsEvents(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	id := "zero-session"
	e.create(id, "")
	proxy, err := NewProxy(strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	state := filepath.Join(e.dir, "state")
	// The agent's agent_started is logged before the command stream
	// connects (it cannot while cut off), so agentd re-sends it on the
	// connection: the order a loaded machine gives by chance, every run.
	proxy.Cut()
	d := e.agentd(proxy.URL(), id, nil, []string{"--state-dir", state})
	if _, err := d.WaitLine(e.ctx, "posting events failed; retrying"); err != nil {
		t.Fatal(err)
	}
	proxy.Restore()
	e.waitIdle(id) // connected: the session is recorded
	file := filepath.Join(state, id, "session")
	created, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// Cut off, agentd logs the agent's exit and cannot post it.
	proxy.Cut()
	d.Stop(15 * time.Second)
	if code := d.ExitCode(); code != 0 {
		t.Fatalf("agentd stopped with the server unreachable: exit %d; want 0, its events kept in the outbox", code)
	}
	if err := os.WriteFile(file, []byte("0\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	d = e.agentd(e.srv.URL, id, nil, []string{"--state-dir", state})
	if err := d.Wait(30 * time.Second); err != nil {
		t.Fatalf("%v; want it to stop on a session file of 0 rather than ask the server with it for ever", err)
	}
	if code := d.ExitCode(); code != 1 {
		t.Fatalf("agentd on a session file of 0: exit %d; want 1", code)
	}
	if out := strings.Join(d.Output(), "\n"); !strings.Contains(out, "read session") {
		t.Fatalf("agentd's error does not name the session file:\n%s", out)
	}

	if err := os.WriteFile(file, created, 0o600); err != nil {
		t.Fatal(err)
	}
	d = e.agentd(e.srv.URL, id, nil, []string{"--state-dir", state})
	if _, err := d.WaitLine(e.ctx, "agent started"); err != nil {
		t.Fatal(err)
	}
	// Stopping, agentd posts what its outbox holds before it exits.
	d.Stop(15 * time.Second)
	if code := d.ExitCode(); code != 0 {
		t.Fatalf("agentd with the session file restored: exit %d; want 0", code)
	}
	page, err := e.c.EventLog(e.ctx, id, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	// One agent_started per run of the agent, however many times agentd
	// sent it: it sends it again after each connection of its command
	// stream (PROTOCOL.md, status rules), and the first agentd's agent
	// logged its own before the stream connected.
	var types []protocol.EventType
	for _, le := range page.Events {
		var ev protocol.Event
		_ = json.Unmarshal(le.Event, &ev)
		if ev.Type == protocol.EventAgentStarted && len(types) > 0 && types[len(types)-1] == ev.Type {
			continue
		}
		if ev.Type == protocol.EventAgentStarted || ev.Type == protocol.EventAgentExited {
			types = append(types, ev.Type)
		}
	}
	want := []protocol.EventType{protocol.EventAgentStarted, protocol.EventAgentExited, protocol.EventAgentStarted, protocol.EventAgentExited}
	if !slices.Equal(types, want) {
		t.Fatalf("agent events in the log: %v; want %v (the first agent's exit, logged while cut off, posted by the third agentd)", types, want)
	}
}

// logAgent is a native agent in sh that appends every command line it
// reads to $CMDLOG. Each prompt starts a turn (turn t<n>, whose user
// message is the prompt's line number n) that it ends at once, unless
// $HANG is set: then its first turn never ends and it only logs what
// comes after, an abort included.
const logAgent = `echo '{"type":"agent_started","agent":{"name":"log-agent","protocol":"native"}}'
n=0
while IFS= read -r line; do
	printf '%s\n' "$line" >> "$CMDLOG"
	case "$line" in
	*'"type":"shutdown"'*) exit 0 ;;
	*'"type":"prompt"'*)
		n=$((n+1))
		if [ -n "$HANG" ] && [ $n -gt 1 ]; then continue; fi
		echo '{"type":"turn_started","turnId":"t'$n'","source":"user"}'
		echo '{"type":"user_message","id":"u'$n'","text":"prompt '$n'"}'
		if [ -z "$HANG" ]; then echo '{"type":"turn_completed","turnId":"t'$n'","stopReason":"end_turn"}'; fi
		;;
	esac
done
`

// waitLogged waits (a bounded poll) until the command log at path has a
// line containing substr, and returns its lines.
func waitLogged(t *testing.T, path, substr string) []string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), substr) {
			return strings.Split(strings.TrimSpace(string(b)), "\n")
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s in the agent's command log after 30 s:\n%s", substr, b)
		}
	}
}

// TestAgentdKilledAfterAbortTaken: the user aborts a running turn while
// the next prompt waits for it, and agentd is killed after handing the
// abort to its agent but before that prompt's turn started. The abort was
// taken; the prompt was not, so the command cursor stays before both, and
// the restarted agentd gets both again. The prompt must run on the new
// agent; the abort, which was for the dead turn, must not reach it: it
// would stop the prompt's turn, which nobody aborted.
func TestAgentdKilledAfterAbortTaken(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "log-agent")
	if err := os.WriteFile(script, []byte(logAgent), 0o755); err != nil {
		t.Fatal(err)
	}
	id := "aborted"
	// The ignored abort must not be escalated while the test runs.
	flags := []string{"--abort-grace", "10m"}
	e.create(id, "")
	first := filepath.Join(dir, "commands-1")
	d := e.agentd(e.srv.URL, id, []string{"HANG=1", "CMDLOG=" + first}, flags, "sh", script)
	e.waitIdle(id)
	e.prompt(id, "first")
	// Taken: its turn started, and the cursor is past it.
	cursor := filepath.Join(e.dir, "agentd-state", id, "cursor")
	for deadline := time.Now().Add(30 * time.Second); readFile(cursor) != "1"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("command cursor %q after 30 s, want 1: the first prompt's turn did not start", readFile(cursor))
		}
	}
	e.prompt(id, "second")
	if _, err := e.c.Abort(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	waitLogged(t, first, `"type":"abort"`)
	killSandbox(t, d)
	if err := e.sw.WaitStatus(e.ctx, id, protocol.StatusDisconnected); err != nil {
		t.Fatal(err)
	}

	second := filepath.Join(dir, "commands-2")
	e.agentd(e.srv.URL, id, []string{"CMDLOG=" + second}, flags, "sh", script)
	e.waitIdle(id)
	// Commands reach the agent in order: once it has this one, it has
	// every one the restarted agentd was given before it.
	e.prompt(id, "third")
	got := waitLogged(t, second, `"text":"third"`)
	want := []string{`"text":"second"`, `"text":"third"`}
	if len(got) != len(want) || !strings.Contains(got[0], want[0]) || !strings.Contains(got[1], want[1]) {
		t.Fatalf("the restarted agent got:\n%s\nwant the prompt that never started, then the next one (the abort was the dead turn's)", strings.Join(got, "\n"))
	}
}
