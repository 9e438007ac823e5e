package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// childRaces counts the data races children built with -race reported
// (their "WARNING: DATA RACE" lines). The binaries are built with the
// race detector so that the suite finds races in them, but a report went
// only to a test's log and failed nothing; TestMain fails the run on it.
var childRaces atomic.Int64

// ChildRaces is how many data races children have reported so far.
func ChildRaces() int64 { return childRaces.Load() }

// childHangs counts children still running when Stop's grace after
// SIGINT ran out. Stop's SIGKILL ended such a shutdown hang quietly (a
// passing test's log is not shown), so a hang in rein-server's or
// agentd's shutdown passed every test that did not wait on the exit
// itself; TestMain fails the run on it.
var childHangs atomic.Int64

// ChildHangs is how many children Stop had to kill so far.
func ChildHangs() int64 { return childHangs.Load() }

// Logf is where a child's output lines go: t.Logf in tests, a logger in
// the bench command.
type Logf func(format string, args ...any)

// Proc is a child process whose stdout and stderr are read line by line,
// logged with a prefix, and kept so a test can wait for a line.
type Proc struct {
	Name string
	cmd  *exec.Cmd

	// dumping is set when Stop gave up waiting: the child's output
	// (a Go binary's goroutines after SIGQUIT) goes to the run's
	// output too.
	dumping atomic.Bool

	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed and replaced whenever a line arrives

	readers sync.WaitGroup
	done    chan struct{} // closed when the process has exited
	err     error         // exit error, valid after done
}

// Start runs name with args. The child gets its own process group so Stop
// and Kill reach anything it started, and dies with the process that
// started it.
func Start(logf Logf, prefix string, env []string, name string, args ...string) (*Proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	// Pdeathsig: the child runs in a process group of its own, out of
	// reach of the terminal's ^C, so when the process that started it
	// dies (^C on make test or make bench, a test's timeout panic, a
	// kill -9) the kernel kills it rather than leave it running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p := &Proc{Name: prefix, cmd: cmd, more: make(chan struct{}), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.readers.Add(2)
	go p.read(logf, stdout)
	go p.read(logf, stderr)
	go func() {
		// Wait only after the readers drained the pipes (exec's rule).
		p.readers.Wait()
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *Proc) read(logf Logf, r io.Reader) {
	defer p.readers.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	racing := false // inside a race report, which goes to stderr too
	for sc.Scan() {
		line := sc.Text()
		logf("[%s] %s", p.Name, line)
		if p.dumping.Load() {
			fmt.Fprintf(os.Stderr, "[%s] %s\n", p.Name, line)
		}
		if strings.Contains(line, "WARNING: DATA RACE") {
			// A passing test's log is not shown: the report is
			// written where the run's output goes as well.
			childRaces.Add(1)
			racing = true
		}
		if racing {
			fmt.Fprintf(os.Stderr, "[%s] %s\n", p.Name, line)
			racing = line != "=================="
		}
		p.mu.Lock()
		p.lines = append(p.lines, line)
		close(p.more)
		p.more = make(chan struct{})
		p.mu.Unlock()
	}
}

// Pid is the child's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// WaitLine waits until a line containing substr has been printed and
// returns it.
func (p *Proc) WaitLine(ctx context.Context, substr string) (string, error) {
	return p.WaitLines(ctx, substr, 1)
}

// WaitLines waits until n lines containing substr have been printed and
// returns the nth.
func (p *Proc) WaitLines(ctx context.Context, substr string, n int) (string, error) {
	seen, found := 0, 0
	for {
		p.mu.Lock()
		for ; seen < len(p.lines); seen++ {
			if strings.Contains(p.lines[seen], substr) {
				if found++; found == n {
					line := p.lines[seen]
					p.mu.Unlock()
					return line, nil
				}
			}
		}
		more := p.more
		p.mu.Unlock()
		select {
		case <-more:
		case <-p.done:
			return "", fmt.Errorf("%s exited (%v) before printing %q", p.Name, p.err, substr)
		case <-ctx.Done():
			return "", fmt.Errorf("%s: waiting for %q: %w", p.Name, substr, ctx.Err())
		}
	}
}

// Output returns every line printed so far.
func (p *Proc) Output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// ExitCode is the exit code after Done (-1 when killed by a signal).
func (p *Proc) ExitCode() int {
	<-p.done
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		return -1
	}
	return 0
}

// Wait waits for the process to exit, or for the timeout.
func (p *Proc) Wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
		return fmt.Errorf("%s still running after %v", p.Name, timeout)
	}
}

// Signal sends sig to the child's process group.
func (p *Proc) Signal(sig syscall.Signal) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Stop asks the process to shut down (SIGINT) and kills it after grace.
// It returns once the process has exited. A process still running after
// grace is counted as a hang (ChildHangs) and first gets SIGQUIT, which
// makes a Go binary print every goroutine (to the run's output) and exit.
func (p *Proc) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.Signal(syscall.SIGINT)
	if p.Wait(grace) != nil {
		childHangs.Add(1)
		p.dumping.Store(true)
		fmt.Fprintf(os.Stderr, "e2e: %s still running %v after SIGINT: a shutdown hang; SIGQUIT for its goroutines, then SIGKILL\n", p.Name, grace)
		p.Signal(syscall.SIGQUIT)
		// A goroutine dump takes well under a second; a process
		// that ignores SIGQUIT too is killed all the same.
		_ = p.Wait(5 * time.Second)
		p.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// Kill sends SIGKILL to the process group and waits for the exit.
func (p *Proc) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.done
}
