package process

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// DefaultDrainTimeout bounds reading the agent's pipes after it exited: a
// grandchild that escaped the process group may still hold them open.
const DefaultDrainTimeout = 2 * time.Second

// maxStderrLine bounds one logged stderr line.
const maxStderrLine = 16 << 10

// pipeMax is the most a pipe can hold (Linux's default
// /proc/sys/fs/pipe-max-size): what a read of the agent's stdout past its
// drain deadline may still take (drainReader).
const pipeMax = 1 << 20

// Spec says what to start.
type Spec struct {
	// Argv is the command and its arguments; Argv[0] is looked up in PATH.
	Argv []string
	// Env is the whole environment; nil means none.
	Env []string
	// Dir is the working directory; "" means agentd's.
	Dir string
	// DrainTimeout: see DefaultDrainTimeout (used when zero).
	DrainTimeout time.Duration
	// Logger receives the agent's stderr, one record per line.
	Logger *slog.Logger
}

// Process is a started agent. Read Stdout until EOF, write commands to
// Stdin, and call Wait once.
type Process struct {
	// Stdin is the agent's standard input. Closing it tells most agents to
	// exit; writes fail once the agent is gone.
	Stdin io.WriteCloser
	// Stdout is the agent's standard output. It reaches EOF when the agent
	// and everything in its process group have exited, or fails with
	// os.ErrDeadlineExceeded DrainTimeout after the agent exited if
	// something outside the group still holds it; what the agent wrote
	// before it exited is read first, however late (drainReader).
	Stdout io.Reader

	cmd        *exec.Cmd
	pid        int
	stdoutR    *os.File
	stdoutEnd  <-chan struct{}
	stderrR    *os.File
	done       chan struct{} // closed when the process has exited
	stderrDone chan struct{}
	exit       Exit
	started    time.Time
}

// Exit is how the agent ended.
type Exit struct {
	// Code is the exit code, or nil when a signal ended it.
	Code *int
	// Signal names the signal that ended it ("SIGKILL"), or "".
	Signal string
	// Err is set when waiting itself failed.
	Err error
	// Ran is how long the process lived.
	Ran time.Duration
}

// String describes the exit for logs and error messages.
func (e Exit) String() string {
	switch {
	case e.Signal != "":
		return "killed by " + e.Signal
	case e.Code != nil:
		return "exited with code " + strconv.Itoa(*e.Code)
	case e.Err != nil:
		return "wait failed: " + e.Err.Error()
	}
	return "exited"
}

// Start starts the process in its own process group.
func Start(spec Spec) (*Process, error) {
	if len(spec.Argv) == 0 {
		return nil, errors.New("start agent: no command")
	}
	log := spec.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	drain := spec.DrainTimeout
	if drain <= 0 {
		drain = DefaultDrainTimeout
	}
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Env = spec.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Dir = spec.Dir
	// Own process group: abort and shutdown signal the whole group, so a
	// tool the agent runs cannot outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithParent(cmd.SysProcAttr)

	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start agent %s: stdin: %w", spec.Argv[0], err)
	}
	// Our own os.Pipes rather than StdoutPipe: exec's Wait would close
	// the read end while the adapter may still be reading the agent's last
	// lines, and these can carry read deadlines.
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start agent %s: stdout: %w", spec.Argv[0], err)
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		stdoutR.Close()
		stdoutW.Close()
		return nil, fmt.Errorf("start agent %s: stderr: %w", spec.Argv[0], err)
	}
	cmd.Stdout, cmd.Stderr = stdoutW, stderrW
	// Registered before a reaper can see it: a child not registered is
	// taken for an orphan (adopt.go).
	adoption.mu.Lock()
	err = cmd.Start()
	if err == nil {
		registerLocked(cmd.Process.Pid)
	}
	adoption.mu.Unlock()
	if err != nil {
		stdin.Close()
		for _, f := range []*os.File{stdoutR, stdoutW, stderrR, stderrW} {
			f.Close()
		}
		return nil, fmt.Errorf("start agent %s: %w", spec.Argv[0], err)
	}
	// The child has its copies; ours would keep the read ends from EOF.
	stdoutW.Close()
	stderrW.Close()

	stdout := &drainReader{f: stdoutR, left: pipeMax, eof: make(chan struct{})}
	p := &Process{
		Stdin:      stdin,
		Stdout:     stdout,
		cmd:        cmd,
		pid:        cmd.Process.Pid,
		stdoutR:    stdoutR,
		stdoutEnd:  stdout.eof,
		stderrR:    stderrR,
		done:       make(chan struct{}),
		stderrDone: make(chan struct{}),
		started:    time.Now(),
	}
	go p.logStderr(log)
	go p.wait(drain, log)
	return p, nil
}

// StdoutEnded is closed once a read of Stdout has reached its end (EOF),
// whether or not the agent still runs.
func (p *Process) StdoutEnded() <-chan struct{} { return p.stdoutEnd }

// Pid is the agent's pid, which is also its process group id.
func (p *Process) Pid() int { return p.pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Signal sends sig to the agent's whole process group.
func (p *Process) Signal(sig syscall.Signal) error {
	if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal agent group %d %s: %w", p.pid, SignalName(sig), err)
	}
	return nil
}

// Wait waits for the process to exit and its stderr to be logged, then
// returns how it ended. The caller must also have finished reading Stdout.
func (p *Process) Wait() Exit {
	<-p.done
	<-p.stderrDone
	p.stdoutR.Close()
	return p.exit
}

func (p *Process) wait(drain time.Duration, log *slog.Logger) {
	err := p.cmd.Wait()
	ran := time.Since(p.started)
	// Whatever is left of the group (a tool the agent started) dies with
	// the agent; otherwise it would hold the pipes and run unsupervised.
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	unregister(p.pid)
	// And so does what left the group, once adopted (AdoptOrphans): the
	// group's members and the processes in sessions of their own all
	// came to this process when the agent died. Before done, so the
	// agent's exit is reported only once they are gone.
	if n, err := KillOrphans(); err != nil {
		log.Error("kill the processes the agent left behind", "err", err)
	} else if n > 0 {
		log.Warn("killed the processes the agent left behind", "count", n)
	}
	deadline := time.Now().Add(drain)
	_ = p.stdoutR.SetReadDeadline(deadline)
	_ = p.stderrR.SetReadDeadline(deadline)

	exit := Exit{Ran: ran}
	var ee *exec.ExitError
	switch {
	case err == nil:
		exit.Code = new(int)
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			exit.Signal = SignalName(ws.Signal())
		} else {
			c := ee.ExitCode()
			exit.Code = &c
		}
	default:
		exit.Err = err
	}
	p.exit = exit
	close(p.done)
}

// drainReader is the agent's stdout. Once the agent has exited, wait sets
// a read deadline DrainTimeout ahead, so that a process that escaped the
// group and holds the pipe open cannot hold the run open. But the reader
// may come back only after that deadline (the adapter was blocked on a
// full queue: the server unreachable, the state dir's disk full), and
// the agent's last lines, its turn's end among them, are then still in
// the pipe: a plain read would fail at once and lose them. So a read past
// the deadline takes what the pipe holds without waiting, up to pipeMax
// bytes in all (an escaped process writing without end cannot hold the
// run open either); an empty pipe ends the output as before.
type drainReader struct {
	f       *os.File
	left    int           // bytes a read past the deadline may still take
	eof     chan struct{} // closed at the first EOF read
	eofOnce sync.Once
}

func (r *drainReader) Read(p []byte) (int, error) {
	n, err := r.read(p)
	if err == io.EOF {
		r.eofOnce.Do(func() { close(r.eof) })
	}
	return n, err
}

func (r *drainReader) read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	if n > 0 || len(p) == 0 || r.left <= 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		return n, err
	}
	rc, cerr := r.f.SyscallConn()
	if cerr != nil {
		return 0, err
	}
	p = p[:min(len(p), r.left)]
	var rerr error
	// Control, not rc.Read: that fails past the deadline too. The pipe is
	// in non-blocking mode (the runtime poller's), so an empty one
	// answers EAGAIN instead of waiting.
	cerr = rc.Control(func(fd uintptr) {
		for {
			n, rerr = syscall.Read(int(fd), p)
			if rerr != syscall.EINTR {
				return
			}
		}
	})
	switch {
	case cerr != nil:
		return 0, err
	case n > 0:
		r.left -= n
		return n, nil
	case n == 0 && rerr == nil:
		return 0, io.EOF // every writer has closed it
	}
	return 0, err // empty (EAGAIN): nothing more was written
}

// Close closes the pipe: the adapters close stdout to unblock their
// reader when they stop early.
func (r *drainReader) Close() error { return r.f.Close() }

func (p *Process) logStderr(log *slog.Logger) {
	defer close(p.stderrDone)
	defer p.stderrR.Close()
	r := bufio.NewReaderSize(p.stderrR, 4096)
	for {
		line, err := ReadLine(r, maxStderrLine)
		if len(line) > 0 {
			log.Info("agent", "stderr", string(line))
		}
		if err != nil {
			return
		}
	}
}

// ReadLine reads one line of an agent's output without its newline, keeping at most max bytes
// of it (the rest is discarded, so a huge line cannot exhaust memory).
func ReadLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line) < max {
			line = append(line, frag[:min(len(frag), max-len(line))]...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
		}
		return line, err
	}
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT",
	syscall.SIGILL: "SIGILL", syscall.SIGABRT: "SIGABRT", syscall.SIGBUS: "SIGBUS",
	syscall.SIGFPE: "SIGFPE", syscall.SIGKILL: "SIGKILL", syscall.SIGUSR1: "SIGUSR1",
	syscall.SIGSEGV: "SIGSEGV", syscall.SIGUSR2: "SIGUSR2", syscall.SIGPIPE: "SIGPIPE",
	syscall.SIGALRM: "SIGALRM", syscall.SIGTERM: "SIGTERM",
}

// SignalName is the conventional name of sig ("SIGTERM").
func SignalName(sig syscall.Signal) string {
	if n, ok := signalNames[sig]; ok {
		return n
	}
	return "SIG" + strconv.Itoa(int(sig))
}
