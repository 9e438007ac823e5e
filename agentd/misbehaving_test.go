package agentd_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

// watchWriter is an adapter transcript that tells the test when a line
// holding want was written.
type watchWriter struct {
	mu   sync.Mutex
	b    bytes.Buffer
	want string
	seen chan struct{}
}

func newWatchWriter(want string) *watchWriter {
	return &watchWriter{want: want, seen: make(chan struct{})}
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.b.String(), w.want)
	w.b.Write(p)
	if !had && strings.Contains(w.b.String(), w.want) {
		close(w.seen)
	}
	return len(p), nil
}

func (w *watchWriter) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-w.seen:
	case <-time.After(fakeserver.WaitTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// Fake agents that, once their input ends (agentd's shutdown closes it),
// finish the turn they are in, as Claude Code does with stream-json
// input: an adapter that queued a prompt behind that turn must not start
// it then, on an agent that can no longer read it.
const (
	// reqID is the id of the JSON-RPC request in $line (agentd writes
	// "jsonrpc" first, then "id").
	reqID = `id=$(printf '%s' "$line" | sed -n 's/^{"jsonrpc":"2.0","id":\([0-9]*\),.*/\1/p')`

	finishingClaude = `n=0
while IFS= read -r line; do
  case $line in *'"type":"user"'*) n=$((n+1)) ;; esac
done
[ $n -gt 0 ] && echo '{"type":"result","subtype":"success","is_error":false,"result":"done"}'
exit 0
`
	finishingCodex = `turn=
while IFS= read -r line; do
  ` + reqID + `
  case $line in
  *'"method":"initialize"'*) echo "{\"id\":$id,\"result\":{\"userAgent\":\"fake/1.0\"}}" ;;
  *'"method":"thread/start"'* | *'"method":"thread/resume"'*) echo "{\"id\":$id,\"result\":{\"thread\":{\"id\":\"th1\"},\"model\":\"m\"}}" ;;
  *'"method":"turn/start"'*) turn=c$id; echo "{\"id\":$id,\"result\":{\"turn\":{\"id\":\"$turn\",\"status\":\"inProgress\"}}}" ;;
  esac
done
[ -n "$turn" ] && echo "{\"method\":\"turn/completed\",\"params\":{\"threadId\":\"th1\",\"turn\":{\"id\":\"$turn\",\"status\":\"completed\"}}}"
exit 0
`
	// The ACP agent lingers after answering, until the test opens the
	// fifo $RELEASE (if it is still there), so that its output does not
	// end with the answer: the adapter sees the turn end while the agent
	// runs.
	finishingACP = `prompt=
while IFS= read -r line; do
  ` + reqID + `
  case $line in
  *'"method":"initialize"'*) echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"protocolVersion\":1,\"agentCapabilities\":{}}}" ;;
  *'"method":"session/new"'*) echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"sessionId\":\"s1\"}}" ;;
  *'"method":"session/prompt"'*) [ -z "$prompt" ] && prompt=$id ;;
  esac
done
[ -n "$prompt" ] && echo "{\"jsonrpc\":\"2.0\",\"id\":$prompt,\"result\":{\"stopReason\":\"end_turn\"}}"
[ -p "$RELEASE" ] && read -r x < "$RELEASE"
exit 0
`
)

// TestQueuedPromptSurvivesShutdown: a prompt waiting in the adapter behind
// a running turn when agentd stops is not started on the agent whose
// input agentd closed (its turn_started would count it as taken, and it
// would be lost); the next agentd on the state dir gets it again.
func TestQueuedPromptSurvivesShutdown(t *testing.T) {
	for _, tc := range []struct{ protocol, agent string }{
		{agentd.ProtocolClaude, finishingClaude},
		{agentd.ProtocolCodex, finishingCodex},
		{agentd.ProtocolACP, finishingACP},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			bin := script(t, tc.agent)
			state := t.TempDir()
			release := filepath.Join(t.TempDir(), "release")
			if err := syscall.Mkfifo(release, 0o600); err != nil {
				t.Fatal(err)
			}
			srv := fakeserver.New(t, "s1")
			opts := func(tr *watchWriter) agentd.Options {
				return agentd.Options{
					StateDir: state, Protocol: tc.protocol, Command: []string{bin}, Transcript: tr,
					Env: append(os.Environ(), "RELEASE="+release),
					// The agents end their turn and exit by themselves
					// once their input is closed (the ACP one when
					// released): a grace they could miss only on a
					// loaded machine. At 200 ms, a shell that was not
					// scheduled in time was killed, its turn cancelled.
					ShutdownGrace: 10 * time.Second, KillStep: 100 * time.Millisecond,
				}
			}
			tr := newWatchWriter(`"text":"queued behind it"`)
			d := start(t, srv, opts(tr))
			waitStarted(t, srv, 1)
			srv.Prompt("first")
			srv.Wait(t, "the first turn", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventTurnStarted)) })
			srv.Prompt("queued behind it")
			tr.wait(t, "the adapter to queue the second prompt")
			d.cancel()
			srv.Wait(t, "the first turn ended by the agent", func(evs []protocol.Event) bool {
				return fakeserver.Has(evs, turnCompleted("turn-1", protocol.StopEndTurn))
			})
			if tc.protocol == agentd.ProtocolACP {
				// The adapter has seen the turn end while the agent
				// runs; now it may exit.
				f, err := os.OpenFile(release, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.Close()
				// The next agentd's agent need not wait.
				os.Remove(release)
			}
			if err := d.wait(); err != nil {
				t.Fatal(err)
			}
			queued := func(ev protocol.Event) bool {
				return ev.Type == protocol.EventUserMessage && ev.Text == "queued behind it"
			}
			if evs := srv.Events(); fakeserver.Has(evs, queued) {
				t.Fatalf("events:\n%s\nthe queued prompt was started on an agent whose input was closed", fakeserver.Format(evs))
			}

			start(t, srv, opts(newWatchWriter("-")))
			srv.Wait(t, "the queued prompt run by the next agentd", func(evs []protocol.Event) bool { return fakeserver.Has(evs, queued) })
		})
	}
}

// TestAgentExitedSaysWhyAgentdStoppedIt: when agentd itself stops the
// agent (the adapter cannot go on with it, or it closed its output but
// lives on), agent_exited says so and why, not only that a signal or an
// exit code ended it, which would read as the agent's own doing.
func TestAgentExitedSaysWhyAgentdStoppedIt(t *testing.T) {
	for _, tc := range []struct {
		name, protocol, mode, agent, why string
	}{
		{"acp mode not offered", agentd.ProtocolACP, "missing", `while IFS= read -r line; do
  ` + reqID + `
  case $line in
  *'"method":"initialize"'*) echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"protocolVersion\":1,\"agentCapabilities\":{}}}" ;;
  *'"method":"session/new"'*) echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"sessionId\":\"s1\",\"modes\":{\"currentModeId\":\"a\",\"availableModes\":[{\"id\":\"a\",\"name\":\"A\"}]}}}" ;;
  esac
done
`, `mode "missing" is not one the agent offers (a)`},
		// A message over the ACP SDK's 10 MiB line limit ends its
		// connection, though the agent's output goes on.
		{"acp line the SDK cannot read", agentd.ProtocolACP, "", `while IFS= read -r line; do
  ` + reqID + `
  case $line in
  *'"method":"initialize"'*) echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"protocolVersion\":1,\"agentCapabilities\":{}}}" ;;
  *'"method":"session/new"'*) echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"sessionId\":\"s1\"}}"
    printf '{"jsonrpc":"2.0","id":99,"method":"_x/huge","params":{"p":"'
    head -c 11000000 /dev/zero | tr '\0' a
    printf '"}}\n' ;;
  esac
done
`, "connection"},
		{"stdout closed", agentd.ProtocolNative, "", `echo '{"type":"agent_started","agent":{"name":"closer"}}'
exec >&-
exec sleep 60
`, "closed its stdout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeserver.New(t, "s1")
			start(t, srv, agentd.Options{
				Protocol: tc.protocol, ACPMode: tc.mode, Command: []string{script(t, tc.agent)},
				ShutdownGrace: 100 * time.Millisecond, RestartDelay: time.Minute,
			})
			evs := srv.Wait(t, "agent_exited", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventAgentExited)) })
			ex := evs[indexOf(evs, protocol.EventAgentExited)]
			// Killed, or exited on its own when agentd closed its
			// input first: either way agentd stopped it.
			if !strings.HasPrefix(ex.Error, "agentd stopped the agent: ") || !strings.Contains(ex.Error, tc.why) {
				t.Errorf("agent_exited = %s, want an error saying agentd stopped it: %s", fakeserver.Format([]protocol.Event{ex}), tc.why)
			}
		})
	}
}

// TestStdoutClosedWhileAdapterWritesIsKilled: an agent that closes its
// stdout and lives on without reading its stdin can hold the adapter in a
// write to it (here, a prompt larger than the pipe holds). It is of no use
// without stdout: it gets the shutdown grace from its stdout's end, then
// the kill, rather than living on, its turn looking live, until an abort.
func TestStdoutClosedWhileAdapterWritesIsKilled(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "close")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// After the handshake the agent reads nothing more; it closes its
	// stdout when the test opens the fifo.
	agent := `while IFS= read -r line; do
  ` + reqID + `
  case $line in
  *'"method":"initialize"'*) echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"protocolVersion\":1,\"agentCapabilities\":{}}}" ;;
  *'"method":"session/new"'*) echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"sessionId\":\"s1\"}}"; break ;;
  esac
done
read -r x < ` + fifo + `
exec >&-
exec sleep 60
`
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{
		Protocol: agentd.ProtocolACP, Command: []string{script(t, agent)},
		ShutdownGrace: 100 * time.Millisecond, AbortGrace: time.Hour, RestartDelay: time.Minute,
	})
	waitStarted(t, srv, 1)
	srv.Prompt(strings.Repeat("x", 256<<10))
	srv.Wait(t, "the turn", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventTurnStarted)) })
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	evs := srv.Wait(t, "agent_exited", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventAgentExited)) })
	ex := evs[indexOf(evs, protocol.EventAgentExited)]
	if !strings.Contains(ex.Error, "closed its stdout") {
		t.Errorf("agent_exited = %s, want an error saying agentd stopped it as it closed its stdout", fakeserver.Format([]protocol.Event{ex}))
	}
}

// TestAgentCrashBeforeHandshakeIsNotSaidStoppedByAgentd: an ACP agent
// that exits on its own before it answers the handshake fails the
// adapter's handshake, but agentd stopped nothing: agent_exited carries
// the agent's own exit status and does not say agentd stopped it.
func TestAgentCrashBeforeHandshakeIsNotSaidStoppedByAgentd(t *testing.T) {
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{
		Protocol: agentd.ProtocolACP, Command: []string{script(t, "read -r line\nexit 3\n")},
		ShutdownGrace: time.Hour, RestartDelay: time.Minute,
	})
	evs := srv.Wait(t, "agent_exited", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventAgentExited)) })
	ex := evs[indexOf(evs, protocol.EventAgentExited)]
	if ex.ExitStatus == nil || *ex.ExitStatus != 3 || strings.Contains(ex.Error, "agentd stopped the agent") {
		t.Errorf("agent_exited = %s, want exit status 3 and no word of agentd stopping it", fakeserver.Format([]protocol.Event{ex}))
	}
}

// TestRepeatedTurnStartedTakesNoOtherPrompt: a native agent that writes
// the open turn's turn_started again (a retry of its own) has not started
// another prompt: the reducer takes the line as the same turn. agentd
// must not count it as taking the next prompt either, or that prompt,
// handed to the agent but never run, is not given to the agent restarted
// after a crash: accepted, and gone without a trace.
func TestRepeatedTurnStartedTakesNoOtherPrompt(t *testing.T) {
	mark := filepath.Join(t.TempDir(), "ran")
	// The first run starts turn t1 for the first prompt, reads the
	// second, says t1 started again and crashes; the next run runs each
	// prompt as a turn whose notice names it.
	agent := `if [ -e "` + mark + `" ]; then
  n=0
  while IFS= read -r line; do
    case $line in *'"type":"prompt"'*)
      n=$((n+1))
      text=$(printf '%s' "$line" | sed -n 's/.*"text":"\([^"]*\)".*/\1/p')
      echo "{\"type\":\"turn_started\",\"turnId\":\"r$n\",\"source\":\"user\"}"
      echo "{\"type\":\"notice\",\"level\":\"info\",\"message\":\"ran $text\"}"
      echo "{\"type\":\"turn_completed\",\"turnId\":\"r$n\",\"stopReason\":\"end_turn\"}" ;;
    *'"type":"shutdown"'*) exit 0 ;;
    esac
  done
  exit 0
fi
: > "` + mark + `"
read -r line
echo '{"type":"turn_started","turnId":"t1","source":"user"}'
read -r line
echo '{"type":"turn_started","turnId":"t1","source":"user"}'
exit 3
`
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{Command: []string{script(t, agent)}, AgentStartWait: 50 * time.Millisecond})
	waitStarted(t, srv, 1)
	srv.Prompt("one")
	srv.Prompt("two")
	srv.Wait(t, "the crash", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventAgentExited)) })
	srv.Prompt("three")
	evs := srv.Wait(t, "the third prompt's turn", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Message == "ran three" })
	})
	if got, want := strings.Join(notices(evs), ", "), "ran two, ran three"; got != want {
		t.Errorf("notices %q, want %q (the second prompt run by the restarted agent):\n%s", got, want, fakeserver.Format(withoutHeartbeats(evs)))
	}
}

// TestAbortAnsweredForAnotherTurnStillEndsTheTurn: an agent that answers
// an abort with the end of a turn that is not the open one has not ended
// the open turn (the reducer leaves it running). agentd must not take it
// for the aborted turn's end: the escalation goes on, and the turn ends
// cancelled, rather than showing running with no one to end it.
func TestAbortAnsweredForAnotherTurnStillEndsTheTurn(t *testing.T) {
	agent := `while IFS= read -r line; do
  case $line in
  *'"type":"prompt"'*) echo '{"type":"turn_started","turnId":"t1","source":"user"}' ;;
  *'"type":"abort"'*) echo '{"type":"turn_completed","turnId":"t0","stopReason":"cancelled"}' ;;
  esac
done
`
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{
		Command: []string{script(t, agent)}, AgentStartWait: 50 * time.Millisecond,
		AbortGrace: 100 * time.Millisecond, KillStep: 100 * time.Millisecond, RestartDelay: time.Minute,
	})
	waitStarted(t, srv, 1)
	srv.Prompt("work")
	srv.Wait(t, "the turn", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventTurnStarted)) })
	srv.Send(protocol.Command{Type: protocol.CommandAbort})
	srv.Wait(t, "turn t1 ended cancelled", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, turnCompleted("t1", protocol.StopCancelled))
	})
}

// TestAgentExitedFromTheAgentIsRefused: agent_exited is agentd's to
// report, when the agent's process ends. One a running native agent
// writes would tell the transcript it exited (failing its open turn, so
// that the turn's true end is then ignored) while it goes on: it is
// refused as an invalid event, with the warning notice that says so.
func TestAgentExitedFromTheAgentIsRefused(t *testing.T) {
	agent := `while IFS= read -r line; do
  case $line in *'"type":"prompt"'*)
    echo '{"type":"turn_started","turnId":"t1","source":"user"}'
    echo '{"type":"agent_exited","code":0}'
    echo '{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}' ;;
  *'"type":"shutdown"'*) exit 0 ;;
  esac
done
`
	srv := fakeserver.New(t, "s1")
	d := start(t, srv, agentd.Options{Command: []string{script(t, agent)}, AgentStartWait: 50 * time.Millisecond})
	waitStarted(t, srv, 1)
	srv.Prompt("work")
	srv.Wait(t, "the turn's end", func(evs []protocol.Event) bool { return fakeserver.Has(evs, turnCompleted("t1", protocol.StopEndTurn)) })
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range withoutHeartbeats(srv.Events()) {
		switch ev.Type {
		case protocol.EventAgentStarted:
		case protocol.EventNotice:
			got = append(got, "notice "+ev.NoticeCode)
		default:
			got = append(got, string(ev.Type))
		}
	}
	want := "turn_started, notice invalid_agent_event, turn_completed, agent_exited"
	if strings.Join(got, ", ") != want {
		t.Errorf("events %q, want %q:\n%s", strings.Join(got, ", "), want, fakeserver.Format(srv.Events()))
	}
}

// TestAgentExitedSaysAgentdSignalledIt: an agent that does not honour an
// abort, or a shutdown, in time is signalled by agentd until it is gone.
// agent_exited says so, and why, rather than only that a signal ended
// it, which reads as a crash of the agent's own.
func TestAgentExitedSaysAgentdSignalledIt(t *testing.T) {
	for _, tc := range []struct{ name, why string }{
		{"abort", "agentd stopped the agent: the aborted turn did not end within --abort-grace"},
		{"shutdown", "agentd stopped the agent: it did not exit within --shutdown-grace of being asked to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeserver.New(t, "s1")
			d := start(t, srv, agentd.Options{
				Command: []string{os.Args[0]}, Env: append(os.Environ(), stubEnv+"=stubborn"),
				AgentStartWait: 50 * time.Millisecond, AbortGrace: 100 * time.Millisecond,
				ShutdownGrace: 100 * time.Millisecond, KillStep: 100 * time.Millisecond, RestartDelay: time.Minute,
			})
			waitStarted(t, srv, 1)
			srv.Prompt("work")
			srv.Wait(t, "the turn", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventTurnStarted)) })
			if tc.name == "abort" {
				srv.Send(protocol.Command{Type: protocol.CommandAbort})
				srv.Wait(t, "agent_exited", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventAgentExited)) })
			} else if err := d.stop(); err != nil {
				t.Fatal(err)
			}
			evs := srv.Events()
			i := indexOf(evs, protocol.EventAgentExited)
			if i == len(evs) {
				t.Fatalf("no agent_exited:\n%s", fakeserver.Format(evs))
			}
			if ex := evs[i]; ex.Signal != "SIGKILL" || ex.Error != tc.why {
				t.Errorf("agent_exited = %s, want SIGKILL with error %q", strings.TrimSpace(fakeserver.Format(evs[i:i+1])), tc.why)
			}
			if end := evs[i-1]; end.Type != protocol.EventTurnCompleted || end.StopReason != protocol.StopCancelled || !strings.Contains(end.Error, tc.why) {
				t.Errorf("before agent_exited: %s, want the turn cancelled, its error saying %q", strings.TrimSpace(fakeserver.Format(evs[i-1:i])), tc.why)
			}
		})
	}
}

// TestStdoutClosedAfterShutdownSignalSaysShutdown: an agent that ignores
// a shutdown is signalled after --shutdown-grace, and its stdout may end
// in answer (here it closes it on SIGTERM; a SIGKILL ends it before the
// exit is seen, under load). agentd then killed it for that end, and
// agent_exited said "it closed its stdout but did not exit", as if that
// were why agentd stopped it; the first reason is the one given.
func TestStdoutClosedAfterShutdownSignalSaysShutdown(t *testing.T) {
	agent := `trap 'exec >&-' TERM
echo '{"type":"agent_started","agent":{"name":"closer-on-term"}}'
while :; do sleep 0.05; done
`
	srv := fakeserver.New(t, "s1")
	d := start(t, srv, agentd.Options{
		Command: []string{script(t, agent)},
		// Only the end of its stdout can bring the SIGKILL.
		ShutdownGrace: 100 * time.Millisecond, KillStep: time.Hour,
	})
	waitStarted(t, srv, 1)
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	evs := srv.Events()
	i := indexOf(evs, protocol.EventAgentExited)
	if i == len(evs) {
		t.Fatalf("no agent_exited:\n%s", fakeserver.Format(evs))
	}
	const want = "agentd stopped the agent: it did not exit within --shutdown-grace of being asked to"
	if ex := evs[i]; ex.Signal != "SIGKILL" || ex.Error != want {
		t.Errorf("agent_exited = %s, want SIGKILL with error %q", strings.TrimSpace(fakeserver.Format(evs[i:i+1])), want)
	}
}

// TestAbortHonouredAfterSIGINTIsNoReason: an agent that ends its aborted
// turn only at the SIGINT has honoured the abort; when agentd stops it
// later for another reason, agent_exited gives that one, not the abort.
func TestAbortHonouredAfterSIGINTIsNoReason(t *testing.T) {
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{
		Command: []string{os.Args[0]}, Env: append(os.Environ(), stubEnv+"=sigint"),
		AbortGrace: 100 * time.Millisecond, KillStep: time.Hour, ShutdownGrace: 100 * time.Millisecond, RestartDelay: time.Minute,
	})
	waitStarted(t, srv, 1)
	srv.Prompt("work")
	srv.Wait(t, "the turn", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventTurnStarted)) })
	srv.Send(protocol.Command{Type: protocol.CommandAbort})
	srv.Wait(t, "the turn ended at the SIGINT", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, turnCompleted("t1", protocol.StopCancelled))
	})
	srv.Prompt("close")
	evs := srv.Wait(t, "agent_exited", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventAgentExited)) })
	const want = "agentd stopped the agent: it closed its stdout but did not exit"
	if ex := evs[indexOf(evs, protocol.EventAgentExited)]; ex.Error != want {
		t.Errorf("agent_exited = %s, want the error %q", strings.TrimSpace(fakeserver.Format([]protocol.Event{ex})), want)
	}
}

// An agent that closes its stdin and goes on running can be given no
// command. agentd wrote the first into the closed pipe, and every later
// one into nothing, logging it: prompts waited untaken until the agent
// happened to exit, and a permission answer counted as delivered and
// vanished, with not a word in the transcript. Now the transcript says
// once that the agent stopped reading its input, each answer is told
// not applied, and the prompts run on the agent started after it exits.
func TestAgentThatClosedItsStdinIsTold(t *testing.T) {
	dir := t.TempDir()
	release := newFIFO(t, dir)
	// The first run closes its stdin before it says it started (so every
	// command finds it closed), then lives until released; the next run
	// is the demo agent.
	script := `if [ -e "$MARK" ]; then exec "$DEMO"; fi
touch "$MARK"
exec 0<&-
echo '{"type":"agent_started","agent":{"name":"closer"}}'
read x < "$RELEASE"
exit 0
`
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{
		Command: []string{"sh", "-c", script},
		Env:     append(os.Environ(), "DEMO_AGENT_DELAY=1ms", "MARK="+filepath.Join(dir, "mark"), "DEMO="+demoAgent, "RELEASE="+release),
	})
	waitStarted(t, srv, 1)
	srv.Prompt("one")
	srv.Prompt("two")
	answer := srv.Send(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "perm-1", OptionID: "allow"})
	notApplied := func(ev protocol.Event) bool {
		return ev.Type == protocol.EventNotice && ev.NoticeCode == agentd.NoticeAnswerNotApplied &&
			strings.Contains(ev.Message, fmt.Sprintf("(command %d)", answer))
	}
	inputClosed := func(ev protocol.Event) bool {
		return ev.Type == protocol.EventNotice && ev.NoticeCode == agentd.NoticeAgentInputClosed
	}
	srv.Wait(t, "the notices", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, notApplied) && fakeserver.Has(evs, inputClosed)
	})

	releaseFIFO(t, release)
	evs := srv.Wait(t, "both prompts run on the next agent", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, turnCompleted("t2", protocol.StopEndTurn))
	})
	n := 0
	for _, ev := range evs {
		if inputClosed(ev) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d notices say the agent stopped reading its input; want 1:\n%s", n, fakeserver.Format(evs))
	}
	if !fakeserver.Has(evs, turnCompleted("t1", protocol.StopEndTurn)) {
		t.Errorf("the first prompt did not run:\n%s", fakeserver.Format(evs))
	}
}
