package agentd_test

import (
	"context"
	"fmt"
	"log/slog"
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

// logWatch passes records on and closes hit at the first whose message
// starts with prefix.
type logWatch struct {
	slog.Handler
	prefix string
	hit    chan struct{}
	once   *sync.Once
}

func (w logWatch) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, w.prefix) {
		w.once.Do(func() { close(w.hit) })
	}
	return w.Handler.Handle(ctx, r)
}

func (w logWatch) WithAttrs(as []slog.Attr) slog.Handler {
	w.Handler = w.Handler.WithAttrs(as)
	return w
}

func (w logWatch) WithGroup(name string) slog.Handler {
	w.Handler = w.Handler.WithGroup(name)
	return w
}

// newFIFO makes a FIFO named release in dir, for a stub agent to wait on.
func newFIFO(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "release")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// releaseFIFO writes a line to the FIFO at path, which a stub agent waits
// on: opening it for writing blocks until the agent opens it to read.
func releaseFIFO(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("x\n")); err != nil {
		t.Fatal(err)
	}
}

// waitBackedUp waits until agentd logged that the agent's commands
// backed up (full closes then).
func waitBackedUp(t *testing.T, full <-chan struct{}) {
	t.Helper()
	timeout := time.NewTimer(fakeserver.WaitTimeout)
	defer timeout.Stop()
	select {
	case <-full:
	case <-timeout.C:
		t.Fatal("the agent's commands never backed up")
	}
}

// TestAgentNotReadingCommandsLosesNone: an agent that reads no command
// for a while (busy, or stuck until an abort) fills the channel of
// commands waiting for it. agentd used to drop each command that did
// not fit and count it as taken, so the cursor passed it: a prompt the
// server had accepted never ran, and no restart brought it back. Now
// agentd stops reading the command stream until the agent reads again,
// and every prompt reaches the agent, in order, once.
func TestAgentNotReadingCommandsLosesNone(t *testing.T) {
	agentd.SetAgentCommandBuffer(t, 4)
	release := newFIFO(t, t.TempDir())
	full := make(chan struct{})
	log := slog.New(logWatch{Handler: testLogger(t).Handler(), prefix: "agent is not reading its commands", hit: full, once: new(sync.Once)})
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{
		Command: []string{os.Args[0]},
		Env:     append(os.Environ(), stubEnv+"=deaf", "AGENTD_TEST_RELEASE="+release),
		Logger:  log,
	})
	waitStarted(t, srv, 1)
	// Large prompts fill the agent's stdin pipe after a few.
	const n = 100
	pad := strings.Repeat("x", 16<<10)
	for i := range n {
		srv.Prompt(fmt.Sprintf("p%03d %s", i+1, pad))
	}
	waitBackedUp(t, full)
	releaseFIFO(t, release)
	// Prompts run in order: once the last one sent has, every earlier
	// one the agent got has too.
	srv.Prompt("end")
	evs := srv.Wait(t, "the last prompt run", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventNotice && ev.Message == "end" })
	})
	var got []string
	for _, ev := range evs {
		if ev.Type == protocol.EventNotice {
			got = append(got, ev.Message)
		}
	}
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("p%03d", i+1))
	}
	want = append(want, "end")
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("the agent ran prompts %v, want %v", got, want)
	}
}

// An answer handed to a native agent's run that its adapter never wrote
// (it was still writing a prompt into the agent's full stdin pipe) ends
// with the agent: its request ended with it. The transcript says so once
// (the supervisor's untaken, or the adapter's own notice when it reaches
// the answer after the agent's output ended), the answer counts as taken,
// and every prompt, the one cut off mid-write too, runs on the next agent
// in order.
func TestAnswerTheAgentNeverReadIsTold(t *testing.T) {
	agentd.SetAgentCommandBuffer(t, 4)
	srv, release, full := startDeafAgent(t, "exit 0")
	// A prompt larger than a pipe holds: its write blocks, so nothing
	// handed over after it is written. The answer goes next, then
	// prompts until the run's channel (4) is full.
	pad := strings.Repeat("x", 128<<10)
	srv.Prompt("p1 " + pad)
	answer := srv.Send(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "perm-1", OptionID: "allow"})
	const n = 6
	for i := 2; i <= n; i++ {
		srv.Prompt(fmt.Sprintf("p%d %s", i, pad))
	}
	waitBackedUp(t, full)
	releaseFIFO(t, release)

	evs := srv.Wait(t, "every prompt run on the next agent", func(evs []protocol.Event) bool {
		return fakeserver.Count(evs, protocol.EventTurnCompleted) >= n
	})
	told := 0
	for _, ev := range evs {
		if ev.Type == protocol.EventNotice && ev.NoticeCode == agentd.NoticeAnswerNotApplied &&
			strings.Contains(ev.Message, fmt.Sprintf("(command %d)", answer)) {
			told++
		}
	}
	if told != 1 {
		t.Errorf("%d notices say answer %d was not applied; want 1:\n%s", told, answer, fakeserver.Format(evs))
	}
	if fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.NoticeCode == agentd.NoticeAgentInputClosed }) {
		t.Errorf("the transcript says the agent that exited stopped reading its input:\n%s", fakeserver.Format(evs))
	}
	if got, want := promptsRun(evs), "p1 p2 p3 p4 p5 p6"; got != want {
		t.Errorf("the next agent ran prompts %s, want %s", got, want)
	}
}

// startDeafAgent runs agentd on a fake server with an agent that never
// reads its stdin and, once a line is written to the FIFO release names,
// runs exit (shell: "exit 0", or closing its stdin first); the agent
// agentd starts after it is the demo agent. full is closed when agentd
// logs that the agent is not reading its commands (see waitBackedUp).
func startDeafAgent(t *testing.T, exit string) (srv *fakeserver.Server, release string, full chan struct{}) {
	t.Helper()
	dir := t.TempDir()
	release = newFIFO(t, dir)
	script := `if [ -e "$MARK" ]; then exec "$DEMO"; fi
touch "$MARK"
echo '{"type":"agent_started","agent":{"name":"deaf"}}'
read x < "$RELEASE"
` + exit + "\n"
	full = make(chan struct{})
	log := slog.New(logWatch{Handler: testLogger(t).Handler(), prefix: "agent is not reading its commands", hit: full, once: new(sync.Once)})
	srv = fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{
		Command: []string{"sh", "-c", script},
		Env:     append(os.Environ(), "DEMO_AGENT_DELAY=1ms", "MARK="+filepath.Join(dir, "mark"), "DEMO="+demoAgent, "RELEASE="+release),
		Logger:  log,
	})
	waitStarted(t, srv, 1)
	return srv, release, full
}

// promptsRun is the first word of each prompt the transcript shows run,
// in order, joined by spaces.
func promptsRun(evs []protocol.Event) string {
	var got []string
	for _, ev := range evs {
		if ev.Type == protocol.EventUserMessage {
			word, _, _ := strings.Cut(ev.Text, " ")
			got = append(got, word)
		}
	}
	return strings.Join(got, " ")
}

// A native agent that exits while agentd is blocked writing a prompt into
// its full stdin pipe makes that write fail (EPIPE) as its stdin closes, a
// moment before agentd reads the end of its stdout. agentd took the failed
// write for an agent that stopped reading its input and goes on running,
// and the transcript said "the agent stopped reading its input ...:
// commands cannot reach it until it exits" as the agent exited. Now the
// transcript tells only the exit, and the prompts, the one cut off
// mid-write first, run on the next agent in order.
//
// An agent that simply exits wins that race against agentd's reader only
// now and then (the kernel closes its stdin just before its stdout); one
// that closes its stdin as it exits, a moment before its stdout (an agent
// shutting its input down first, then flushing), makes the same race
// certain.
func TestAgentThatExitsMidWriteIsNotToldAsNotReading(t *testing.T) {
	for _, tc := range []struct{ name, exit string }{
		{"exits", "exit 0"},
		{"closes its stdin as it exits", "exec 0<&-\nsleep 0.1\nexit 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agentd.SetAgentCommandBuffer(t, 1)
			srv, release, full := startDeafAgent(t, tc.exit)
			// A control character is written as a six-byte escape: the
			// first prompt's line is over 1 MiB, more than a pipe can
			// hold, so its write blocks until the agent exits. The
			// prompts after it fill the run's channel (1) and back up:
			// the adapter, which takes each command as it comes, is
			// held in that write.
			srv.Prompt("p1 " + strings.Repeat("\x01", 200<<10))
			srv.Prompt("p2")
			srv.Prompt("p3")
			waitBackedUp(t, full)
			releaseFIFO(t, release)

			evs := srv.Wait(t, "every prompt run on the next agent", func(evs []protocol.Event) bool {
				return fakeserver.Count(evs, protocol.EventTurnCompleted) >= 3
			})
			for _, ev := range evs {
				if ev.Type == protocol.EventNotice && ev.NoticeCode == agentd.NoticeAgentInputClosed {
					t.Errorf("the transcript says the agent stopped reading its input as it exited: %q", ev.Message)
				}
			}
			i := indexOf(evs, protocol.EventAgentExited)
			if i == len(evs) {
				t.Fatalf("no agent_exited:\n%s", fakeserver.Format(evs))
			}
			if ex := evs[i]; ex.ExitStatus == nil || *ex.ExitStatus != 0 || ex.Signal != "" || ex.Error != "" {
				t.Errorf("agent_exited = %s, want exit code 0 and no error", strings.TrimSpace(fakeserver.Format(evs[i:i+1])))
			}
			if j := indexOf(evs, protocol.EventUserMessage); j < i {
				t.Errorf("a prompt ran before the agent exited:\n%s", fakeserver.Format(evs))
			}
			if got, want := promptsRun(evs), "p1 p2 p3"; got != want {
				t.Errorf("the next agent ran prompts %s, want %s", got, want)
			}
		})
	}
}
