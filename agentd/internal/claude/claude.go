package claude

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/rein-ai/rein/agentd/internal/stdinqueue"
	"github.com/rein-ai/rein/protocol"
)

// Protocol is the agent.protocol value of Claude Code agents.
const Protocol = "claude"

// AgentName is the agent.name agentd reports for Claude Code.
const AgentName = "claude-code"

// maxLine bounds one stdout line. Tool results (a file read whole) can be
// large; a line beyond this is dropped with a warning rather than growing
// without limit.
const maxLine = 64 << 20

// Options wires one run of Claude Code.
type Options struct {
	Stdin  io.WriteCloser
	Stdout io.Reader
	// Commands: prompt, abort, permission_response and shutdown.
	Commands <-chan protocol.Command
	// Emit receives every event in order; it may block (backpressure).
	Emit func(context.Context, protocol.Event) error
	// Cwd is reported in agent_started until the CLI names its own.
	Cwd string
	// Transcript, when set, receives every input the adapter processes,
	// in order, one JSON object per line: {"stdout":<line>} for a line of
	// the CLI's stdout, {"command":<command>} for a command. Replaying it
	// through the adapter yields the same events (the tests record them).
	Transcript io.Writer
	Logger     *slog.Logger
	// Conversation, when set, gets the CLI's session id (from its init
	// message), which `claude --resume <id>` continues.
	Conversation func(id string)
}

// Serve relays commands and the CLI's messages until its stdout ends
// (nil). It writes prompts, interrupts and permission answers to stdin, and
// closes stdin on shutdown, which makes the CLI exit. It has waited for
// every goroutine it started when it returns.
func Serve(ctx context.Context, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Writes go through a queue: blocked in a write to a CLI that no
	// longer reads, Serve would stop taking its stdout, whose end (which
	// stops such a CLI) would then go unread.
	stdin := stdinqueue.New(opts.Stdin, func(err error) {
		// The CLI has exited or closed its stdin; its stdout ending
		// tells the supervisor.
		log.Warn("write to claude stdin", "err", err)
	})
	defer stdin.Stop()
	t := newTranslator(opts.Cwd, log,
		func(ev protocol.Event) {
			if err := opts.Emit(ctx, ev); err != nil {
				log.Warn("event not delivered", "type", ev.Type, "err", err)
			}
		},
		stdin.Write)

	lines := make(chan []byte)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		defer close(lines)
		if err := readLines(opts.Stdout, lines, log); err != nil {
			log.Warn("read claude stdout", "err", err)
		}
	})

	rec := func(key string, v any) {
		if opts.Transcript == nil {
			return
		}
		b, err := json.Marshal(map[string]any{key: v})
		if err != nil {
			log.Warn("transcript", "err", err)
			return
		}
		if _, err := opts.Transcript.Write(append(b, '\n')); err != nil {
			log.Warn("transcript", "err", err)
		}
	}

	t.session = opts.Conversation
	t.start()
	cmds := opts.Commands
	for {
		select {
		case c, ok := <-cmds:
			if !ok {
				cmds = nil
				continue
			}
			rec("command", c)
			t.command(c)
			if c.Type == protocol.CommandShutdown {
				// Claude Code ends when its input ends (once it has
				// read what was written before).
				stdin.Close()
			}
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			if json.Valid(line) {
				rec("stdout", json.RawMessage(line))
			}
			t.line(line)
		}
	}
}

// readLines sends each non-empty line of r (without its newline) until EOF.
func readLines(r io.Reader, out chan<- []byte, log *slog.Logger) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	drop := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !drop {
			if len(buf)+len(chunk) > maxLine {
				log.Warn("claude stdout line over the limit; dropping it", "limit", maxLine)
				drop, buf = true, buf[:0]
			} else {
				buf = append(buf, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue // the line goes on
		}
		if line := bytes.TrimSpace(buf); !drop && len(line) > 0 {
			out <- bytes.Clone(line)
		}
		buf, drop = buf[:0], false
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read line: %w", err)
		}
	}
}

// Replay feeds a transcript written through Options.Transcript to a fresh
// adapter and returns the events it emits; what it would have written to
// the CLI is discarded. cwd is the Options.Cwd of the recorded run.
func Replay(transcript io.Reader, cwd string) ([]protocol.Event, error) {
	var evs []protocol.Event
	t := newTranslator(cwd, slog.New(slog.DiscardHandler), func(ev protocol.Event) { evs = append(evs, ev) }, func([]byte) {})
	t.start()
	sc := bufio.NewScanner(transcript)
	sc.Buffer(nil, maxLine)
	for sc.Scan() {
		var in struct {
			Stdout  json.RawMessage   `json:"stdout"`
			Command *protocol.Command `json:"command"`
		}
		if err := json.Unmarshal(sc.Bytes(), &in); err != nil {
			return evs, fmt.Errorf("replay transcript line: %w", err)
		}
		switch {
		case in.Command != nil:
			t.command(*in.Command)
		case in.Stdout != nil:
			t.line(in.Stdout)
		}
	}
	if err := sc.Err(); err != nil {
		return evs, fmt.Errorf("replay transcript: %w", err)
	}
	return evs, nil
}
