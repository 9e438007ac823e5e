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
	"github.com/rein-ai/rein/protocol"
)

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
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("SKIP no setsid: " + err.Error())
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "agentd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// Each run leaves a sleep in a session of its own, orphans a short
	// process by a double fork (its pid in "short"), and exits 3 after
	// a prompt.
	agent := `setsid sleep 4242 & echo $! >> "$DIR/setsid"
sh -c 'sleep 0.1 & echo $! >> "$DIR/short"'
echo '{"type":"agent_started","agent":{"name":"leaver","protocol":"native"}}'
read line
exit 3`
	srv := fakeserver.New(t, "s1")
	cmd := exec.Command(bin, "--server", srv.URL, "--session", "s1", "--state-dir", "",
		"--restart-delay-max", "1h", "--", "sh", "-c", agent)
	cmd.Env = append(os.Environ(), "DIR="+dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		// Only a broken agentd leaves any: by pid, never by name.
		for _, f := range []string{"setsid", "short"} {
			b, _ := os.ReadFile(filepath.Join(dir, f))
			for _, s := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(s); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	})
	srv.Wait(t, "agent_started", func(evs []protocol.Event) bool {
		return fakeserver.Count(evs, protocol.EventAgentStarted) >= 1
	})
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
