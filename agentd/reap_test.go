package agentd_test

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || !strings.HasPrefix(s[i+1:], " Z")
}

// waitGone waits for pid to exit; SIGKILL is delivered asynchronously.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(fakeserver.WaitTimeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An agent that ends an aborted turn but leaves the turn's command running
// (in a session of its own, out of reach of signals to its group) does not
// keep it: agentd kills what the turn started, and only that.
func TestAbortKillsWhatTheTurnStarted(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc: agentd cannot list an agent's processes here")
	}
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{
		Command: []string{os.Args[0]}, Env: append(os.Environ(), stubEnv+"=leaver"), AbortGrace: time.Minute,
	})
	waitStarted(t, srv, 1)
	srv.Prompt("work")
	pids := map[string]int{}
	srv.Wait(t, "the child's pid", func(evs []protocol.Event) bool {
		for _, ev := range evs {
			var name string
			var pid int
			if ev.Type == protocol.EventNotice {
				if _, err := fmt.Sscanf(ev.Message, "%s %d", &name, &pid); err == nil {
					pids[name] = pid
				}
			}
		}
		return pids["child"] != 0 && pids["helper"] != 0
	})
	t.Cleanup(func() {
		syscall.Kill(pids["child"], syscall.SIGKILL)
	})
	srv.Send(protocol.Command{Type: protocol.CommandAbort})
	evs := srv.Wait(t, "the cancelled turn", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, turnCompleted("l1", protocol.StopCancelled))
	})
	waitGone(t, pids["child"])
	if !alive(pids["helper"]) {
		t.Errorf("the helper the agent started before the turn was killed")
	}
	if fakeserver.Has(evs, isType(protocol.EventAgentExited)) {
		t.Errorf("the agent was stopped although it ended the turn")
	}
}

// A turn_completed may leave turnId out (docs/PROTOCOL.md: it ends the
// open turn). One that ends an aborted turn so ended the turn and called
// off the abort's escalation, but the kill of what the turn started
// compared the aborted turn with the event's turnId, "", and never ran:
// the turn's command ran on until the agent's run ended.
func TestAbortKillsWhatTheTurnStartedWhenItsEndNamesNoTurn(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc: agentd cannot list an agent's processes here")
	}
	dir := t.TempDir()
	bin := script(t, `echo '{"type":"agent_started","agent":{"name":"anonymous-end","protocol":"native"}}'
while IFS= read -r line; do
  case $line in
  *'"type":"prompt"'*)
    echo '{"type":"turn_started","turnId":"t1","source":"user"}'
    setsid sleep 1000 &
    echo $! > "`+dir+`/child"
    echo '{"type":"notice","level":"info","message":"started"}' ;;
  *'"type":"abort"'*)
    echo '{"type":"turn_completed","stopReason":"cancelled"}' ;;
  *'"type":"shutdown"'*) exit 0 ;;
  esac
done
`)
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{Command: []string{bin}, AbortGrace: time.Hour})
	waitStarted(t, srv, 1)
	srv.Prompt("work")
	srv.Wait(t, "the child started", func(evs []protocol.Event) bool {
		return fakeserver.Count(evs, protocol.EventNotice) >= 1
	})
	b, err := os.ReadFile(dir + "/child")
	if err != nil {
		t.Fatal(err)
	}
	var child int
	if _, err := fmt.Sscan(string(b), &child); err != nil {
		t.Fatalf("child pid %q: %v", b, err)
	}
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
	srv.Send(protocol.Command{Type: protocol.CommandAbort})
	srv.Wait(t, "the cancelled turn", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, turnCompleted("", protocol.StopCancelled))
	})
	waitGone(t, child)
}
