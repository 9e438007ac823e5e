//go:build linux

package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

// stubbornAgent is a native agent that ignores shutdown (its input
// closing), SIGINT and SIGTERM, as do the processes it starts: a sleep in
// its process group and one in a session of its own. It writes their
// pids to files in dir, then the notices kept-1 to kept-3.
const stubbornAgent = `trap '' INT TERM
echo $$ > "$DIR/agent.pid"
sleep 1000 & echo $! > "$DIR/child.pid"
setsid sleep 1000 & echo $! > "$DIR/escaped.pid"
for i in 1 2 3; do echo '{"type":"notice","level":"info","message":"kept-'$i'"}'; done
while :; do sleep 1; done`

// TestSecondSignalStopsAtOnce: the first SIGTERM starts the graceful
// shutdown, which here would wait an hour for an agent that ignores it; a
// second SIGTERM ends agentd at once (exit 128+15) with the agent and
// everything it started killed, and the events the server had not taken
// are posted, once, by the next agentd on the same state dir.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	dir, bin := buildAgentd(t)
	state := filepath.Join(dir, "state")
	srv := fakeserver.New(t, "s1")
	var down atomic.Bool
	down.Store(true)
	srv.SetEventsFault(func(int) (int, bool) {
		if down.Load() {
			return 503, false
		}
		return 0, false
	})
	agentd := func(agent string) (*exec.Cmd, <-chan string) {
		cmd := exec.Command(bin, "--server", srv.URL, "--session", "s1", "--state-dir", state,
			"--shutdown-grace", "1h", "--kill-step", "1h", "--flush-timeout", "1h",
			"--", "sh", "-c", agent)
		cmd.Env = append(os.Environ(), "DIR="+dir)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		logs := make(chan string, 1000)
		go func() {
			defer close(logs)
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				logs <- sc.Text()
			}
		}()
		return cmd, logs
	}
	waitLog := func(logs <-chan string, want string) {
		t.Helper()
		for line := range logs {
			t.Log(line)
			if strings.Contains(line, want) {
				return
			}
		}
		t.Fatalf("agentd's stderr ended before %q", want)
	}

	first, logs := agentd(stubbornAgent)
	// The notices are in the outbox; the server refuses them (503).
	eventually(t, "kept-3 in the outbox", func() bool {
		segs, _ := filepath.Glob(filepath.Join(state, "s1", "*.seg"))
		for _, s := range segs {
			if b, _ := os.ReadFile(s); bytes.Contains(b, []byte("kept-3")) {
				return true
			}
		}
		return false
	})
	var pids []int
	for _, name := range []string{"agent.pid", "child.pid", "escaped.pid"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}

	if err := first.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(logs, "shutting down")
	if err := first.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() {
		for line := range logs {
			t.Log(line)
		}
		exited <- first.Wait()
	}()
	var err error
	select {
	case err = <-exited:
	case <-time.After(fakeserver.WaitTimeout):
		// Only a broken agentd gets here: clean up after it.
		_ = first.Process.Kill()
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		t.Fatalf("agentd still running %s after a second SIGTERM", fakeserver.WaitTimeout)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 128+int(syscall.SIGTERM) {
		t.Errorf("agentd after a second SIGTERM: %v; want exit status %d", err, 128+int(syscall.SIGTERM))
	}
	for i, pid := range pids {
		what := []string{"the agent", "the agent's child", "the agent's child in a session of its own"}[i]
		eventually(t, what+" gone", func() bool { return !running(pid) })
	}

	// The next agentd posts what the first kept, once.
	down.Store(false)
	second, logs := agentd(`read line`) // exits at the shutdown command
	go func() {
		for line := range logs {
			t.Log(line)
		}
	}()
	evs := srv.Wait(t, "kept-1 to kept-3", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, func(e protocol.Event) bool { return e.Message == "kept-3" })
	})
	for _, want := range []string{"kept-1", "kept-2", "kept-3"} {
		n := 0
		for _, e := range evs {
			if e.Type == protocol.EventNotice && e.Message == want {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s posted %d times; want once\n%s", want, n, fakeserver.Format(evs))
		}
	}
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); err != nil {
		t.Errorf("the next agentd's shutdown: %v", err)
	}
}

// running reports whether pid is a process that has not exited (a zombie
// waiting for its new parent to reap it has).
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && !bytes.HasPrefix(bytes.TrimSpace(b[i+1:]), []byte("Z"))
}

// eventually polls cond until it holds; the bound only keeps a broken
// test from hanging.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(fakeserver.WaitTimeout); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("never happened: %s", what)
}
