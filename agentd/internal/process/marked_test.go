//go:build linux

package process

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// firstLine starts cmd and returns the first line it prints.
func firstLine(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("%s printed no line: %v", cmd.Path, err)
	}
	return line
}

// starterEnv runs TestAgentDiesWithItsStarter's starter in a child test
// process: the starter starts an agent, prints the agent's pid and that
// of the agent's child, and waits to be killed.
const starterEnv = "PROCESS_TEST_STARTER"

// TestAgentDiesWithItsStarter: the kernel kills an agent when the process
// that started it dies (agentd killed, crashed, out of memory), even an
// agent that never reads its stdin. What the agent started lives on: the
// next agentd's KillMarked finds it (below).
func TestAgentDiesWithItsStarter(t *testing.T) {
	if os.Getenv(starterEnv) != "" {
		p, err := Start(Spec{Argv: []string{"sh", "-c", `sleep 1000 & echo $$ $!; exec sleep 1001`}})
		if err != nil {
			fmt.Println("start:", err)
			os.Exit(1)
		}
		line, err := ReadLine(bufio.NewReader(p.Stdout), 64)
		if err != nil {
			fmt.Println("read:", err)
			os.Exit(1)
		}
		fmt.Println(string(line))
		select {} // until killed
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAgentDiesWithItsStarter$")
	cmd.Env = append(os.Environ(), starterEnv+"=1")
	line := firstLine(t, cmd)
	var agent, child int
	if _, err := fmt.Sscan(line, &agent, &child); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the starter printed %q (%v), want the agent's pid and its child's", line, err)
	}
	defer syscall.Kill(agent, syscall.SIGKILL)
	defer syscall.Kill(child, syscall.SIGKILL)
	if !running(agent) || !running(child) {
		t.Fatalf("agent %d running %v, its child %d running %v: want both running", agent, running(agent), child, running(child))
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for running(agent) {
		if time.Now().After(deadline) {
			t.Fatalf("the agent (pid %d) still runs 10 s after its starter was killed", agent)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKillMarked: every process whose environment holds the marker is
// killed, the processes below one included (they inherit it), and
// nothing else: not a process whose value only starts the same.
func TestKillMarked(t *testing.T) {
	mark := "REIN_TEST_MARK=" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	start := func(env string, script string) (*exec.Cmd, []int) {
		t.Helper()
		cmd := exec.Command("sh", "-c", script)
		cmd.Env = append(os.Environ(), env)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // out of reach of a signal to this group
		var pids []int
		for _, f := range strings.Fields(firstLine(t, cmd)) {
			p, _ := strconv.Atoi(f)
			pids = append(pids, p)
		}
		t.Cleanup(func() {
			for _, p := range pids {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
			_ = cmd.Wait()
		})
		return cmd, pids
	}
	_, marked := start(mark, `sleep 1000 & echo $$ $!; wait`)
	_, other := start(mark+"x", `echo $$; exec sleep 1000`)
	n, err := KillMarked(mark, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(marked) {
		t.Errorf("KillMarked killed %d processes, want %d (%v)", n, len(marked), marked)
	}
	for _, p := range marked {
		if running(p) {
			t.Errorf("marked process %d still running", p)
		}
	}
	for _, p := range other {
		if !running(p) {
			t.Errorf("process %d with another value was killed", p)
		}
	}
	if left, err := Marked(mark); err != nil || len(left) > 0 {
		t.Errorf("Marked after KillMarked: %v, %v", left, err)
	}
}

// spareEnv runs TestKillMarkedSparesItsAncestors's sweep in a child test
// process whose environment, and whose parent shell's, hold the marker.
const spareEnv = "PROCESS_TEST_SPARE"

// TestKillMarkedSparesItsAncestors: an agentd started from a shell that
// inherited the marker (a tool of the old agent restarting agentd) kills
// what else holds it, not itself nor the shell that started it.
func TestKillMarkedSparesItsAncestors(t *testing.T) {
	mark := "REIN_TEST_MARK=spare-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if v := os.Getenv(spareEnv); v != "" {
		sleep := exec.Command("sleep", "1000")
		if err := sleep.Start(); err != nil {
			fmt.Println("start:", err)
			os.Exit(1)
		}
		n, err := KillMarked(v, 10*time.Second)
		_ = sleep.Wait()
		fmt.Printf("killed %d, err %v\n", n, err)
		return
	}
	cmd := exec.Command("sh", "-c", `"$0" -test.run='^TestKillMarkedSparesItsAncestors$'; echo "shell still here"`, os.Args[0])
	cmd.Env = append(os.Environ(), mark, spareEnv+"="+mark)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the shell holding the marker: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "killed 1, err <nil>") || !strings.Contains(string(out), "shell still here") {
		t.Fatalf("want the marked sleep killed (1) and the sweeping process and its shell spared; got:\n%s", out)
	}
}
