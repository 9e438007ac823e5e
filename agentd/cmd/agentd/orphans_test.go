//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/agentd/internal/testbuild"
	"github.com/rein-ai/rein/protocol"
)

// buildAgentd builds this agentd into a temporary dir, which it returns
// with the binary's path, for the tests of processes the agent starts in
// sessions of their own (setsid is needed).
func buildAgentd(t *testing.T) (dir, bin string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("SKIP no setsid: " + err.Error())
	}
	dir = t.TempDir()
	bin = filepath.Join(dir, "agentd")
	if err := testbuild.Build(".", bin, "."); err != nil {
		t.Fatal(err)
	}
	return dir, bin
}

// killListed kills the processes whose pids a test agent appended to the
// files names in dir: by pid, never by name.
func killListed(dir string, names ...string) {
	for _, f := range names {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		for _, s := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(s); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// runLeaver runs the agentd bin on a fake server with the shell agent
// (DIR is dir), without a state dir and restarting the agent only after
// an hour, and waits for its agent_started. Cleanup kills agentd and the
// processes whose pids the agent listed in the files pidFiles (only a
// broken agentd leaves any running).
func runLeaver(t *testing.T, dir, bin, agent string, pidFiles []string, flags ...string) *fakeserver.Server {
	t.Helper()
	srv := fakeserver.New(t, "s1")
	args := append([]string{"--server", srv.URL, "--session", "s1", "--state-dir", "", "--restart-delay-max", "1h"}, flags...)
	cmd := exec.Command(bin, append(args, "--", "sh", "-c", agent)...)
	cmd.Env = append(os.Environ(), "DIR="+dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		killListed(dir, pidFiles...)
	})
	srv.Wait(t, "agent_started", func(evs []protocol.Event) bool {
		return fakeserver.Count(evs, protocol.EventAgentStarted) >= 1
	})
	return srv
}

// pids reads the pids a test agent appended to file, one a line.
func pids(t *testing.T, file string) []int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, pid)
	}
	return out
}

// TestOrphansOfTheAgentDieWithIt: processes the agent started in a
// session of its own (setsid) are out of reach of a signal to its
// process group, and once the agent dies they were reparented to init
// and ran on unsupervised, holding its stdout open. agentd adopts them
// (it is the child subreaper) and, when the agent's run ends, kills them
// before it posts agent_exited; a process the agent orphaned while it
// ran (a double fork) that exits is reaped at once, not left a zombie.
func TestOrphansOfTheAgentDieWithIt(t *testing.T) {
	dir, bin := buildAgentd(t)
	// Each run leaves a sleep in a session of its own, orphans a short
	// process by a double fork (its pid in "short"), and exits 3 after
	// a prompt.
	agent := `setsid sleep 4242 & echo $! >> "$DIR/setsid"
sh -c 'sleep 0.1 & echo $! >> "$DIR/short"'
echo '{"type":"agent_started","agent":{"name":"leaver","protocol":"native"}}'
read line
exit 3`
	srv := runLeaver(t, dir, bin, agent, []string{"setsid", "short"})
	short := pids(t, filepath.Join(dir, "short"))[0]
	eventually(t, "the orphaned short process reaped", func() bool {
		_, err := os.Stat("/proc/" + strconv.Itoa(short))
		return err != nil
	})

	srv.WaitState(t, "an open command stream", func() bool { return srv.OpenStreams() > 0 })
	srv.Prompt("exit")
	srv.Wait(t, "agent_exited", func(evs []protocol.Event) bool {
		return fakeserver.Count(evs, protocol.EventAgentExited) >= 1
	})
	orphan := pids(t, filepath.Join(dir, "setsid"))[0]
	if running(orphan) {
		t.Errorf("the agent's sleep in a session of its own (pid %d) still runs after agent_exited", orphan)
	}
}

// TestAbortKillsWhatTheTurnOrphaned: a process the agent starts during a
// turn in a session of its own, whose parent then exits, is adopted by
// agentd and no longer below the agent, where the abort's kill looked: it
// ran on after the aborted turn ended, until the agent's run ended. The
// abort kills it now, before the turn's end is posted, and leaves alone
// the agent and what it orphaned before the turn.
func TestAbortKillsWhatTheTurnOrphaned(t *testing.T) {
	dir, bin := buildAgentd(t)
	// Before any turn, and again in its turn, the agent orphans a sleep
	// in a session of its own (the sh in between exits at once, so the
	// sleep is agentd's by the time the next line is written); it ends
	// an aborted turn as cancelled, and runs on.
	agent := `sh -c 'setsid sleep 4242 & echo $! >> "$DIR/before"'
echo '{"type":"agent_started","agent":{"name":"leaver","protocol":"native"}}'
while IFS= read -r line; do
  case $line in
  *'"type":"prompt"'*)
    echo '{"type":"turn_started","turnId":"t1","source":"user"}'
    sh -c 'setsid sleep 4343 & echo $! >> "$DIR/turn"'
    echo '{"type":"notice","level":"info","message":"orphaned"}' ;;
  *'"type":"abort"'*)
    echo '{"type":"turn_completed","turnId":"t1","stopReason":"cancelled"}' ;;
  esac
done`
	srv := runLeaver(t, dir, bin, agent, []string{"before", "turn"}, "--abort-grace", "1h")
	srv.WaitState(t, "an open command stream", func() bool { return srv.OpenStreams() > 0 })
	srv.Prompt("work")
	srv.Wait(t, "the turn's orphan", func(evs []protocol.Event) bool {
		return fakeserver.Count(evs, protocol.EventNotice) >= 1
	})
	before, turn := pids(t, filepath.Join(dir, "before"))[0], pids(t, filepath.Join(dir, "turn"))[0]
	if !running(turn) {
		t.Fatalf("the turn's sleep (pid %d) is not running before the abort", turn)
	}
	srv.Send(protocol.Command{Type: protocol.CommandAbort})
	evs := srv.Wait(t, "the cancelled turn", func(evs []protocol.Event) bool {
		return fakeserver.Count(evs, protocol.EventTurnCompleted) >= 1
	})
	// The kill is done before the turn's end is queued: no waiting here.
	if running(turn) {
		t.Errorf("the sleep the aborted turn orphaned (pid %d) still runs after the turn ended", turn)
	}
	if !running(before) {
		t.Errorf("the sleep orphaned before the turn (pid %d) was killed by the turn's abort", before)
	}
	if n := fakeserver.Count(evs, protocol.EventAgentExited); n > 0 {
		t.Errorf("the agent exited (%d agent_exited) although it ended the aborted turn", n)
	}
}
