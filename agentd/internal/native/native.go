package native

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rein-ai/rein/agentd/internal/notapplied"
	"github.com/rein-ai/rein/agentd/internal/process"
	"github.com/rein-ai/rein/protocol"
)

// Protocol is the agent.protocol value of native agents.
const Protocol = "native"

// DefaultStartWait is how long agentd waits for the agent's own
// agent_started line before reporting one itself.
const DefaultStartWait = 2 * time.Second

// NoticeInvalidEvent is the notice code for an agent line that is not a
// valid ReinEvent.
const NoticeInvalidEvent = "invalid_agent_event"

// NoticeInputClosed is the notice code when the agent stopped reading its
// stdin (closed it) and goes on running, so commands can no longer reach
// it. An agent that exits is not told so: its agent_exited says it.
const NoticeInputClosed = "agent_input_closed"

// Options wires one run of a native agent.
type Options struct {
	Stdin  io.WriteCloser
	Stdout io.Reader
	// Commands are written to the agent's stdin in order until the channel
	// is closed or Serve returns.
	Commands <-chan protocol.Command
	// Emit receives every event in stdout order; it may block
	// (backpressure reaches the agent through its stdout pipe).
	Emit func(context.Context, protocol.Event) error
	// Name is the agent name reported when the agent does not report its
	// own (the command's base name).
	Name string
	// Cwd is reported in agent_started.
	Cwd string
	// StartWait: see DefaultStartWait (used when zero).
	StartWait time.Duration
	Logger    *slog.Logger
	// Conversation, when set, gets the conversationId an agent_started
	// line carries: the agent's own conversation, which agentd hands the
	// next run of the agent (REIN_CONVERSATION_ID) to resume.
	Conversation func(id string)
}

type line struct {
	b   []byte
	err error
}

// Serve relays commands and events until the agent's stdout ends (the
// agent exited or closed it): it then closes stdin and returns nil. It
// returns early with an error only when Emit fails (ctx done). Either way
// it has waited for the goroutines it started.
func Serve(ctx context.Context, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.StartWait <= 0 {
		opts.StartWait = DefaultStartWait
	}
	stop := make(chan struct{})
	lines := make(chan line)
	// outputEnded closes when the reader is done: the agent's stdout
	// ended (or Serve is returning). It can come before stop, which
	// waits for the last lines to be emitted.
	outputEnded := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(outputEnded)
		readLines(opts.Stdout, lines, stop)
	}()
	go func() {
		defer wg.Done()
		writeCommands(ctx, opts.Stdin, opts.Commands, stop, outputEnded, opts.Emit, log)
	}()
	defer func() {
		close(stop)
		// Unblock a writer stuck on a full pipe and a reader on a live one.
		opts.Stdin.Close()
		if c, ok := opts.Stdout.(io.Closer); ok {
			c.Close()
		}
		wg.Wait()
	}()

	s := &session{opts: opts, log: log}
	// The agent's first line decides who reports agent_started: an agent
	// that prints its own gets its name and version on record.
	startWait := time.NewTimer(opts.StartWait)
	defer startWait.Stop()
	select {
	case l, ok := <-lines:
		if !ok {
			return s.emit(ctx, s.started(nil))
		}
		if err := s.first(ctx, l); err != nil {
			return err
		}
	case <-startWait.C:
		if err := s.emit(ctx, s.started(nil)); err != nil {
			return err
		}
	}
	for l := range lines {
		if err := s.handle(ctx, l); err != nil {
			return err
		}
	}
	return nil
}

type session struct {
	opts Options
	log  *slog.Logger
}

func (s *session) emit(ctx context.Context, ev protocol.Event) error {
	if err := s.opts.Emit(ctx, ev); err != nil {
		return fmt.Errorf("native agent %s: emit %s: %w", s.opts.Name, ev.Type, err)
	}
	return nil
}

// started completes the agent's own agent_started, or makes one.
func (s *session) started(own *protocol.Event) protocol.Event {
	ev := protocol.Event{Type: protocol.EventAgentStarted, Agent: &protocol.AgentInfo{Name: s.opts.Name}}
	if own != nil {
		ev = *own
		info := *own.Agent
		ev.Agent = &info
	}
	ev.Agent.Protocol = Protocol
	if ev.Cwd == "" {
		ev.Cwd = s.opts.Cwd
	}
	return ev
}

func (s *session) first(ctx context.Context, l line) error {
	if ev, err := decode(l); err == nil && ev.Type == protocol.EventAgentStarted {
		s.conversation(l)
		return s.emit(ctx, s.started(&ev))
	}
	if err := s.emit(ctx, s.started(nil)); err != nil {
		return err
	}
	return s.handle(ctx, l)
}

func (s *session) handle(ctx context.Context, l line) error {
	ev, err := decode(l)
	if err != nil {
		if err := s.emit(ctx, s.invalid(err.Error())); err != nil {
			return err
		}
		if end, ok := cutTurnEnd(l); ok {
			return s.emit(ctx, end)
		}
		return nil
	}
	if ev.Type == protocol.EventAgentStarted {
		s.conversation(l)
		ev = s.started(&ev)
	}
	return s.emit(ctx, ev)
}

// cutTurnEnd reads the start of a line over maxLineBytes: when its "type",
// before the cut, is turn_completed, the agent ended its turn, and the
// turn is ended as an error saying why its end could not be read (with
// the turnId, when that too comes before the cut). Without it the turn
// would stay running in the transcript for ever, and the next prompt's
// turn would be taken for the agent's retry of it. What the line said
// besides (its stop reason, its result) is lost, and the error says so.
func cutTurnEnd(l line) (protocol.Event, bool) {
	if l.err != errLineTooLong {
		return protocol.Event{}, false
	}
	dec := json.NewDecoder(bytes.NewReader(l.b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return protocol.Event{}, false
	}
	var typ, turn string
	// Up to the cut: a decode past it fails, as does anything else
	// that is not the JSON of an object's fields.
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			break
		}
		switch k {
		case "type":
			err = dec.Decode(&typ)
		case "turnId":
			err = dec.Decode(&turn)
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			break
		}
	}
	if typ != string(protocol.EventTurnCompleted) {
		return protocol.Event{}, false
	}
	end := protocol.Event{Type: protocol.EventTurnCompleted, TurnID: turn, StopReason: protocol.StopError,
		Error: "the agent ended its turn, but agentd could not read how: its turn_completed line was " + errLineTooLong.Error() + " (its stop reason and result are lost)"}
	// Checked as any line is: a turnId that is not a valid id would
	// have the end refused by the server.
	b, err := json.Marshal(end)
	if err != nil {
		return protocol.Event{}, false
	}
	if _, err := protocol.DecodeEventUnlimited(b); err != nil {
		end.TurnID = ""
	}
	return end, true
}

// conversation reports the conversationId of an agent_started line. The
// field is agentd's alone: ReinEvent has no such field, so it is not posted.
func (s *session) conversation(l line) {
	if s.opts.Conversation == nil {
		return
	}
	var c struct {
		ID string `json:"conversationId"`
	}
	if json.Unmarshal(l.b, &c) == nil && c.ID != "" {
		s.opts.Conversation(c.ID)
	}
}

// decode validates one line as one event. Envelope fields are agentd's to
// set, so whatever the agent put there is cleared.
func decode(l line) (protocol.Event, error) {
	if l.err != nil {
		return protocol.Event{}, l.err
	}
	if len(l.b) == 0 || l.b[0] != '{' {
		return protocol.Event{}, errors.New("a line must be one JSON object")
	}
	b := validUTF8(l.b)
	// Sizes are left to the uploader, which cuts an event to the limits
	// (uploader/fit.go) as it does every adapter's: refused here, a text
	// over MaxTextLen (or one that U+FFFD made so) would lose the whole
	// event, a turn's end leaving its turn running.
	ev, err := protocol.DecodeEventUnlimited(b)
	if err != nil {
		// What agentd sets itself is not the agent's to get wrong:
		// refusing the line for it would lose the event.
		filled, ok := withAgentdFields(b)
		if !ok {
			return protocol.Event{}, err
		}
		if ev, err = protocol.DecodeEventUnlimited(filled); err != nil {
			return protocol.Event{}, err
		}
	}
	if ev.Type == protocol.EventAgentExited {
		// agentd reports the exit when the agent's process ends. One
		// the running agent writes would tell the transcript it is gone
		// (failing its open turn, whose true end is then ignored, and
		// ending the requests it waits on) while it goes on.
		return protocol.Event{}, errors.New("agent_exited is agentd's to report, when the agent's process ends")
	}
	ev.AgentSeq, ev.Ts = 0, 0
	return ev, nil
}

// withAgentdFields returns the line b without the envelope fields and, for
// an agent_started whose agent is an object, with agent.protocol set to
// Protocol, as started sets it; false when that changes nothing (or b is
// not an object). The envelope (agentSeq, ts, receivedAt) is agentd's and
// the server's to set, and NATIVE.md tells agents whatever they write there
// is replaced: an agent stamping its events with its own clock (a float
// from Python's time.time()*1000, an ISO date) had every event refused and
// replaced by an invalid_agent_event notice, its turn's end included,
// which left the turn running for ever. An agent_started that leaves
// agent.protocol out or empty is the agent's all the same: refusing it
// would lose the agent's name and the conversationId its next run resumes.
func withAgentdFields(b []byte) ([]byte, bool) {
	var ev map[string]json.RawMessage
	if json.Unmarshal(b, &ev) != nil || ev == nil {
		return nil, false
	}
	changed := false
	for _, k := range []string{"agentSeq", "ts", "receivedAt"} {
		if _, ok := ev[k]; ok {
			delete(ev, k)
			changed = true
		}
	}
	var agent map[string]json.RawMessage
	if string(ev["type"]) == `"`+string(protocol.EventAgentStarted)+`"` && json.Unmarshal(ev["agent"], &agent) == nil && agent != nil {
		agent["protocol"] = json.RawMessage(`"` + Protocol + `"`)
		var err error
		if ev["agent"], err = json.Marshal(agent); err != nil {
			return nil, false
		}
		changed = true
	}
	if !changed {
		return nil, false
	}
	out, err := json.Marshal(ev)
	return out, err == nil
}

// validUTF8 returns b with each byte that is not part of valid UTF-8
// replaced by U+FFFD, as encoding/json reads such a byte in a string (and
// as the other adapters' agents get theirs read). The server refuses a
// body that is not UTF-8, so the line would otherwise be refused whole: an
// agent that copies a command's raw bytes into its JSON would lose the
// event, even a tool_call_end or turn_completed, leaving its tool failed
// and its turn open. Outside a string such a byte was, and stays, a syntax
// error.
func validUTF8(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, b[:n]...)
		}
		b = b[n:]
	}
	return out
}

// invalid turns a refused line into a warning notice, so the session shows
// that something was lost without the batch being refused.
func (s *session) invalid(reason string) protocol.Event {
	s.log.Warn("agent wrote an invalid event line", "reason", reason)
	if len(reason) > 1024 {
		reason = reason[:1024] + "…"
	}
	return protocol.Event{
		Type:       protocol.EventNotice,
		Level:      protocol.LevelWarning,
		Message:    "agent wrote an invalid event: " + reason,
		NoticeCode: NoticeInvalidEvent,
	}
}

// maxLineBytes bounds one stdout line. A text is at most
// protocol.MaxTextLen bytes, but JSON may write each of its bytes as a
// six-byte escape (a control character; an agent escaping all but ASCII
// writes three bytes of UTF-8 as six), and the rest of an event is ids
// and short fields: so a line this long holds any event whose text is
// within the limit, however escaped, and the uploader cuts what is over
// the event's limits once decoded (uploader/fit.go). The command stream
// takes commands up to the same bound (protocol.MaxCommandBytes) for the
// same reason. A line is held only while it is handled, never between
// lines, but handling the longest costs: measured with cmd/agentd and a
// state dir, its peak resident memory went from 13.2 MB idle to 16.8 MB
// for a 480 KB turn_completed of \u0001 escapes and 22.1 MB for a 1.57 MB
// one (most of it the uploader encoding the event again as it cuts it,
// and this reader's copies as the line grows), past the 20 MiB budget
// README.md names for agentd, for as long as such a line takes. The
// alternative, refusing the line, lost the turn's end.
const maxLineBytes = 6*protocol.MaxTextLen + 64<<10

// errLineTooLong reports a stdout line above maxLineBytes.
var errLineTooLong = fmt.Errorf("line longer than %d bytes", maxLineBytes)

func readLines(r io.Reader, out chan<- line, stop <-chan struct{}) {
	defer close(out)
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		// b is the line's own copy, not br's buffer: it is handed on
		// as it is.
		b, err := process.ReadLine(br, maxLineBytes+1)
		var l line
		switch {
		case len(b) > maxLineBytes:
			// Its start is kept: it may still tell that the line ended
			// a turn (cutTurnEnd).
			l.b, l.err = trimSpace(b[:maxLineBytes]), errLineTooLong
		case len(trimSpace(b)) > 0:
			l.b = trimSpace(b)
		}
		if l.err != nil || l.b != nil {
			select {
			case out <- l:
			case <-stop:
				return
			}
		}
		if err != nil {
			// EOF, or the drain deadline after the agent exited.
			return
		}
	}
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// writeCommands writes each command to the agent's stdin, in order.
//
// A write fails once the agent no longer reads its stdin: it closed it
// and may go on running (it still reports what it does), or it exited.
// No command can reach it after that, so none is written again, and
// each is told for what it is rather than only logged: each permission
// answer that it was not applied (its sender would otherwise believe it
// decided something), and, for an agent that runs on, the transcript
// says once that it stopped reading its input. A prompt needs nothing
// here: it counts as taken only when its turn starts, so it waits, and
// the agent agentd starts after this one exits gets it. An abort is
// carried out with signals by the supervisor's escalation, and a
// shutdown likewise.
//
// An agent that exits says nothing of its input: its agent_exited tells
// the session, and "the agent stopped reading its input ... until it
// exits" would read as if it still ran. Its exit makes a write under way
// fail (EPIPE) as its stdin closes, a moment before the reader sees its
// stdout end (outputEnded), so a failed write waits up to exitGrace for
// that end before it is told as an agent that stopped reading.
//
// The agent is not stopped for it: it may be finishing work it has (a
// turn whose events still come, or a one-shot agent that closed its
// input once it read its prompt), which a kill would cut short; an open
// turn can still be aborted.
func writeCommands(ctx context.Context, w io.Writer, cmds <-chan protocol.Command, stop, outputEnded <-chan struct{}, emit func(context.Context, protocol.Event) error, log *slog.Logger) {
	var why string // why commands no longer reach the agent; "" while they do
	tell := func(ev protocol.Event) {
		if err := emit(ctx, ev); err != nil {
			log.Error("event not queued", "type", ev.Type, "code", ev.NoticeCode, "err", err)
		}
	}
	for {
		select {
		case c, ok := <-cmds:
			if !ok {
				return
			}
			if why == "" {
				select {
				case <-stop:
					// The agent's stdout ended: an answer written now
					// could not be told from one the agent read.
					why = whyEnded
				default:
					why = writeCommand(w, c, log)
					if why != "" && why != whyEnded && exiting(ctx, stop, outputEnded) {
						log.Info("the agent's output ended as a command to it failed: it is exiting", "id", c.ID, "type", c.Type, "err", why)
						why = whyEnded
					}
				}
				if why == "" {
					continue
				}
				log.Warn("command not written: the agent no longer reads its stdin; commands wait for it to exit", "id", c.ID, "type", c.Type, "why", why)
				if why != whyEnded {
					tell(protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelWarning, NoticeCode: NoticeInputClosed,
						Message: "the agent stopped reading its input (" + why + "): commands cannot reach it until it exits; prompts wait and go to the agent started after it, permission answers are not applied, an abort ends the turn with signals"})
				}
			} else {
				log.Warn("agent no longer reads its stdin; command not written", "id", c.ID, "type", c.Type)
			}
			if c.Type == protocol.CommandPermissionResponse {
				tell(notapplied.Notice(c, "the agent no longer reads its input ("+why+")"))
			}
		case <-stop:
			return
		}
	}
}

// whyEnded: agentd closed the agent's stdin itself, as Serve returns, or
// a write failed as the agent's stdout ended (it is exiting).
const whyEnded = "its output ended: it is exiting"

// exitGrace bounds how long a failed write waits for the agent's stdout
// to end before the agent is told as one that stopped reading its input
// and runs on. An agent's exit closes its stdin (the write fails) and its
// stdout together, but agentd reads the stdout's end only once what else
// held it (the tools in the agent's process group, the processes it left
// behind) is killed (process.Process's wait) and the reader has run:
// milliseconds, some hundreds on a loaded machine or under -race, which
// a second covers with room. Waiting costs only an agent that really
// closed its input and runs on: its notice comes a second later, while
// no command could reach it anyway (they wait in the run's channel). A
// stdout whose end agentd does not read within the second (held by a
// process agentd could not kill until the drain deadline,
// process.DefaultDrainTimeout; or not read while the upload queue is
// full, since the reader waits for its last line to be taken) still has
// the agent told as one that stopped reading.
const exitGrace = time.Second

// exiting reports whether the agent's stdout ends (outputEnded) or Serve
// returns (stop) within exitGrace: a write that failed just before then
// failed because the agent is exiting. It reports false when ctx is done
// first.
func exiting(ctx context.Context, stop, outputEnded <-chan struct{}) bool {
	t := time.NewTimer(exitGrace)
	defer t.Stop()
	select {
	case <-outputEnded:
		return true
	case <-stop:
		return true
	case <-ctx.Done():
		return false
	case <-t.C:
		return false
	}
}

// writeCommand writes c to the agent's stdin; it returns why it could not
// ("" when it did).
func writeCommand(w io.Writer, c protocol.Command, log *slog.Logger) string {
	b, err := json.Marshal(c)
	if err != nil {
		// Cannot happen for a command decoded from the stream; the
		// agent still reads, so the commands after it go on.
		log.Error("encode command", "id", c.ID, "err", err)
		return ""
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		if errors.Is(err, os.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
			return whyEnded
		}
		return fmt.Sprintf("write command %d to its stdin: %v", c.ID, err)
	}
	return ""
}
