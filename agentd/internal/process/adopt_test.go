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
)

// adoptEnv runs TestOrphansKilledLiveAgentsSpared's body in a child test
// process: AdoptOrphans changes the whole process, and the other tests
// here count on orphans escaping to init.
const adoptEnv = "PROCESS_TEST_ADOPT"

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
	if os.Getenv(adoptEnv) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestOrphansKilledLiveAgentsSpared$", "-test.v")
		// A race-built child that exits 0 sleeps atexit_sleep_ms (1 s)
		// first, for nothing here.
		cmd.Env = append(os.Environ(), adoptEnv+"=1", "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
		out, err := cmd.CombinedOutput()
		t.Logf("child test process:\n%s", out)
		if err != nil {
			t.Fatalf("child test process: %v", err)
		}
		return
	}
	stop, err := AdoptOrphans()
	if err != nil {
		t.Fatalf("AdoptOrphans: %v", err)
	}
	defer stop()
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
