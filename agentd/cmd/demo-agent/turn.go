package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// ids of prompt n's events. They restart at 1 in a new process; the
// reducer copes with reused ids.
type ids struct{ n int }

func (i ids) turn() string   { return "t" + strconv.Itoa(i.n) }
func (i ids) prompt() string { return "p" + strconv.Itoa(i.n) }
func (i ids) user() string   { return "u" + strconv.Itoa(i.n) }
func (i ids) text() string   { return "m" + strconv.Itoa(i.n) }
func (i ids) text2() string  { return "m" + strconv.Itoa(i.n) + "-2" }
func (i ids) tool() string   { return "tool-" + strconv.Itoa(i.n) }
func (i ids) perm() string   { return "perm-" + strconv.Itoa(i.n) }
func (i ids) plan() string   { return "plan-" + strconv.Itoa(i.n) }

// turn runs prompt n from turn_started to turn_completed.
func (a *agent) turn(ctx context.Context, n int, text string) {
	id := ids{n}
	a.emit(protocol.Event{Type: protocol.EventTurnStarted, TurnID: id.turn(), PromptID: id.prompt(), Source: protocol.SourceUser})
	a.emit(protocol.Event{Type: protocol.EventUserMessage, ID: id.user(), Text: text, PromptID: id.prompt()})

	verb, arg, _ := strings.Cut(text, ":")
	arg = strings.TrimSpace(arg)
	var err error
	switch strings.TrimSpace(verb) {
	case "run":
		err = a.run(ctx, id, arg)
	case "ask":
		err = a.ask(ctx, id, arg)
	case "slow":
		if k, perr := strconv.Atoi(arg); perr == nil && k > 0 {
			err = a.slow(ctx, id, k)
		} else {
			err = a.echo(ctx, id, text)
		}
	case "plan":
		err = a.plan(ctx, id, arg)
	case "exit":
		if code, perr := strconv.Atoi(arg); perr == nil {
			a.log.Printf("exiting with code %d as asked", code)
			os.Exit(code)
		}
		err = a.echo(ctx, id, text)
	default:
		err = a.echo(ctx, id, text)
	}
	stop := protocol.StopEndTurn
	if errors.Is(err, context.Canceled) {
		stop = protocol.StopCancelled
		a.log.Printf("turn %s aborted", id.turn())
	}
	a.emit(protocol.Event{Type: protocol.EventTurnCompleted, TurnID: id.turn(), StopReason: stop})
}

// stream emits text as deltas of one block, one word (with its following
// space) at a time, pausing delay before each word, then the block's end.
func (a *agent) stream(ctx context.Context, block, text string, delay time.Duration) error {
	var t *time.Timer
	if delay > 0 {
		t = time.NewTimer(delay)
		defer t.Stop()
	}
	for i, word := range strings.SplitAfter(text, " ") {
		if t != nil {
			if i > 0 {
				t.Reset(delay)
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return ctx.Err()
			}
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
		if word != "" {
			a.emit(protocol.Event{Type: protocol.EventTextDelta, ID: block, Delta: word})
		}
	}
	a.emit(protocol.Event{Type: protocol.EventTextEnd, ID: block, Text: text})
	return nil
}

// say emits a short text block in one delta.
func (a *agent) say(block, text string) {
	a.emit(protocol.Event{Type: protocol.EventTextDelta, ID: block, Delta: text})
	a.emit(protocol.Event{Type: protocol.EventTextEnd, ID: block, Text: text})
}

func (a *agent) echo(ctx context.Context, id ids, text string) error {
	return a.stream(ctx, id.text(), "You said: "+text, 0)
}

func (a *agent) slow(ctx context.Context, id ids, k int) error {
	words := make([]string, min(k, 100000))
	for i := range words {
		words[i] = "w" + strconv.Itoa(i+1)
	}
	return a.stream(ctx, id.text(), strings.Join(words, " "), a.delay)
}

func (a *agent) plan(ctx context.Context, id ids, arg string) error {
	var entries []protocol.PlanEntry
	for _, s := range strings.Split(arg, ";") {
		if s = strings.TrimSpace(s); s != "" {
			entries = append(entries, protocol.PlanEntry{Content: s, Status: protocol.PlanPending})
		}
	}
	update := func() {
		a.emit(protocol.Event{Type: protocol.EventPlanUpdated, ID: id.plan(), Entries: append([]protocol.PlanEntry(nil), entries...)})
	}
	update()
	for i := range entries {
		for _, st := range []protocol.PlanStatus{protocol.PlanInProgress, protocol.PlanCompleted} {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			entries[i].Status = st
			update()
		}
	}
	a.say(id.text(), "Plan done.")
	return nil
}

func (a *agent) ask(ctx context.Context, id ids, title string) error {
	a.emit(protocol.Event{
		Type: protocol.EventPermissionRequested, ID: id.perm(), Title: title,
		Options: []protocol.PermissionOption{
			{ID: "allow", Name: "Allow", Kind: protocol.AllowOnce},
			{ID: "deny", Name: "Deny", Kind: protocol.RejectOnce},
		},
	})
	for {
		select {
		case <-ctx.Done():
			a.emit(protocol.Event{Type: protocol.EventPermissionResolved, ID: id.perm(), Outcome: protocol.OutcomeCancelled})
			return ctx.Err()
		case c, ok := <-a.perms:
			if !ok {
				// stdin ended: nobody can answer any more.
				c = protocol.Command{RequestID: id.perm(), Outcome: protocol.OutcomeCancelled}
			}
			if c.RequestID != id.perm() {
				a.log.Printf("ignoring permission_response for %s while asking %s", c.RequestID, id.perm())
				continue
			}
			granted := false
			if c.Outcome == protocol.OutcomeCancelled {
				a.emit(protocol.Event{Type: protocol.EventPermissionResolved, ID: id.perm(), Outcome: protocol.OutcomeCancelled})
			} else {
				a.emit(protocol.Event{Type: protocol.EventPermissionResolved, ID: id.perm(), Outcome: protocol.OutcomeSelected, OptionID: c.OptionID})
				switch c.OptionID {
				case "allow", string(protocol.AllowOnce), string(protocol.AllowAlways):
					granted = true
				}
			}
			if granted {
				a.say(id.text(), "Permission granted.")
			} else {
				a.say(id.text(), "Permission denied.")
			}
			return nil
		}
	}
}

// chunk is one piece of a tool's output.
type chunk struct {
	stream string
	data   string
}

func (a *agent) run(ctx context.Context, id ids, command string) error {
	a.say(id.text(), "Running `"+command+"`")
	input, _ := json.Marshal(map[string]string{"command": command})
	a.emit(protocol.Event{Type: protocol.EventToolCallStart, ID: id.tool(), Name: "shell", Kind: "execute", Title: command, Input: input})
	a.emit(protocol.Event{Type: protocol.EventToolCallUpdate, ID: id.tool(), Status: protocol.ToolRunning})

	cmd := exec.Command("sh", "-c", command)
	cmd.Dir = a.cwd
	// Its own group so abort kills the whole pipeline; Pdeathsig so sh
	// dies with a killed agent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		a.emit(protocol.Event{Type: protocol.EventToolCallEnd, ID: id.tool(), Status: protocol.ToolFailed, Error: err.Error()})
		a.say(id.text2(), "Exit code 127.")
		return nil
	}
	a.mu.Lock()
	a.tool = cmd.Process
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.tool = nil
		a.mu.Unlock()
	}()

	chunks := make(chan chunk)
	var wg sync.WaitGroup
	for name, r := range map[string]io.Reader{"stdout": stdout, "stderr": stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			readChunks(r, name, chunks)
		}()
	}
	go func() {
		wg.Wait()
		close(chunks)
	}()

	var out strings.Builder
	cancelled := false
read:
	for {
		select {
		case c, ok := <-chunks:
			if !ok {
				break read
			}
			a.emit(protocol.Event{Type: protocol.EventToolOutputDelta, ID: id.tool(), Delta: c.data, Stream: c.stream})
			out.WriteString(c.data)
		case <-ctx.Done():
			cancelled = true
			killGroup(cmd.Process)
			for range chunks {
				// drain until the killed command's pipes close
			}
			break read
		}
	}
	// Output is done; the command may still run (it closed its pipes).
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var err error
	select {
	case err = <-waited:
	case <-ctx.Done():
		cancelled = true
		killGroup(cmd.Process)
		err = <-waited
	}
	if cancelled || ctx.Err() != nil {
		a.emit(protocol.Event{Type: protocol.EventToolCallEnd, ID: id.tool(), Status: protocol.ToolCancelled, Output: wholeOutput(out.String())})
		return context.Canceled
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode() // -1 when a signal ended it
	}
	status := protocol.ToolCompleted
	if code != 0 {
		status = protocol.ToolFailed
	}
	a.emit(protocol.Event{Type: protocol.EventToolCallEnd, ID: id.tool(), Status: status, ExitCode: &code, Output: wholeOutput(out.String())})
	a.say(id.text2(), "Exit code "+strconv.Itoa(code)+".")
	return nil
}

// readChunks sends r's output line by line (long lines in 32 KiB pieces).
func readChunks(r io.Reader, stream string, out chan<- chunk) {
	br := bufio.NewReaderSize(r, 32<<10)
	for {
		b, err := br.ReadSlice('\n')
		if len(b) > 0 {
			out <- chunk{stream: stream, data: strings.ToValidUTF8(string(b), "\uFFFD")}
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

// wholeOutput is the tool's complete output for tool_call_end, or "" when
// it is longer than a text field may be. The reducer treats a final output
// as authoritative and replaces what streamed with it, so a truncated one
// would destroy the streamed output; leaving it out keeps the deltas.
func wholeOutput(s string) string {
	if len(s) > protocol.MaxTextLen {
		return ""
	}
	return s
}

func killGroup(p *os.Process) {
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
}
