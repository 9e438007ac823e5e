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

// adoptEnv runs the body of a test that calls AdoptOrphans in a child
// test process: AdoptOrphans changes the whole process, and the other
// tests here count on orphans escaping to init.
const adoptEnv = "PROCESS_TEST_ADOPT"

// adoptingChild reports whether this is the child test process that runs
// t's body (adoptEnv set), and there calls AdoptOrphans for the test.
// Otherwise it runs that child, fails t if the child failed, and reports
// false: the caller returns.
func adoptingChild(t *testing.T) bool {
	t.Helper()
	if os.Getenv(adoptEnv) != "" {
		stop, err := AdoptOrphans()
		if err != nil {
			t.Fatalf("AdoptOrphans: %v", err)
		}
		t.Cleanup(stop)
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v")
	// A race-built child that exits 0 sleeps atexit_sleep_ms (1 s)
	// first, for nothing here.
	cmd.Env = append(os.Environ(), adoptEnv+"=1", "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	out, err := cmd.CombinedOutput()
	t.Logf("child test process:\n%s", out)
	if err != nil {
		t.Fatalf("child test process: %v", err)
	}
	return false
}

// running reports whether pid is a process that has not exited.
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && !strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}

// firstPid reads one line of the agent's stdout: a pid it printed.
func firstPid(t *testing.T, p *Process) int {
	t.Helper()
	line, err := ReadLine(bufio.NewReader(p.Stdout), 64)
	if err != nil {
		t.Fatalf("read the agent's pid line: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(line)))
	if err != nil {
		t.Fatalf("pid line %q: %v", line, err)
	}
	return pid
}

// When one agent's run ends, what it left in a session of its own is
// killed and reaped; another agent still running, and the processes
// below it (in its group, and in a session of their own), are not
// touched.
func TestOrphansKilledLiveAgentsSpared(t *testing.T) {
	if !adoptingChild(t) {
		return
	}
	var leftovers []int
	defer func() {
		for _, pid := range leftovers {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}()

	// The agent that keeps running, with a child in its group and one
	// in a session of its own.
	keep, err := Start(Spec{Argv: []string{"sh", "-c", `sleep 1000 & echo $!; setsid sleep 1000 & echo $!; wait`}})
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(keep.Stdout)
	var kept []int
	for range 2 {
		line, err := ReadLine(r, 64)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(string(line))
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, pid)
	}
	leftovers = append(leftovers, kept...)
	defer func() {
		keep.Signal(syscall.SIGKILL)
		keep.Wait()
	}()

	// The agent that ends, leaving a sleep in a session of its own: it
	// exits once the sleep has written its pid, from its own session,
	// so its group's SIGKILL cannot reach it.
	pidFile := t.TempDir() + "/orphan.pid"
	gone, err := Start(Spec{Argv: []string{"sh", "-c", `setsid sh -c 'echo $$ > "$0"; exec sleep 1000' "$1" & while [ ! -s "$1" ]; do sleep 0.01; done; cat "$1"`, "sh", pidFile}})
	if err != nil {
		t.Fatal(err)
	}
	orphan := firstPid(t, gone)
	leftovers = append(leftovers, orphan)
	gone.Wait()

	// Killed and reaped before Wait returned: no longer in /proc at all.
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", orphan)); err == nil {
		t.Errorf("the ended agent's sleep (pid %d) is still there (running: %v)", orphan, running(orphan))
	}
	for _, pid := range append([]int{keep.Pid()}, kept...) {
		if !running(pid) {
			t.Errorf("process %d of the agent still running was killed", pid)
		}
	}
}

// An orphan the SIGKILL cannot reach (a non-root agentd's orphan that
// became root: sudo's command, once sudo died) is reported and left to
// the SIGCHLD reaper, not waited for: waiting would hang the run's end,
// or the aborted turn's reap under the supervisor's lock, for as long as
// it runs. The other orphans are killed and reaped all the same. As root
// here no signal fails, so the refusal is made up (the EPERM a real one
// gives); the processes, the kills of the others and the reaping are
// real.
func TestOrphanOutOfReachIsNotWaitedFor(t *testing.T) {
	if !adoptingChild(t) {
		return
	}
	// Children this process started without Start are orphans to it,
	// as the ones that come to a subreaper are.
	var pids []int
	for range 2 {
		c := exec.Command("sleep", "1000")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, c.Process.Pid)
	}
	root, other := pids[0], pids[1]
	defer syscall.Kill(root, syscall.SIGKILL)
	defer syscall.Kill(other, syscall.SIGKILL)
	refuse := func(p int, sig syscall.Signal) error {
		if p == root {
			return syscall.EPERM
		}
		return syscall.Kill(p, sig)
	}

	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := killOrphansWith(nil, refuse)
		done <- result{n, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Errorf("killOrphans still running after 10 s: it waits for process %d, which its SIGKILL did not reach", root)
		syscall.Kill(root, syscall.SIGKILL) // lets the wait return
		res = <-done
	}
	want := fmt.Sprintf("kill process %d: %v", root, syscall.EPERM)
	if res.err == nil || !strings.Contains(res.err.Error(), want) {
		t.Errorf("error %v, want one saying %q", res.err, want)
	}
	if res.n != 1 {
		t.Errorf("counted %d killed, want 1 (process %d)", res.n, other)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", other)); err == nil {
		t.Errorf("the orphan within reach (pid %d) is still there (running: %v)", other, running(other))
	}
	if !running(root) {
		t.Errorf("the orphan out of reach (pid %d) is gone: the refusal was not the test's", root)
	}

	// Once it can be killed, the next kill takes it, and it is reaped.
	n, err := KillOrphans()
	if err != nil || n != 1 {
		t.Errorf("KillOrphans after: %d killed, err %v; want 1 and nil", n, err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", root)); err == nil {
		t.Errorf("process %d is still there after the second kill (running: %v)", root, running(root))
	}
}
