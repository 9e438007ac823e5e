package acp_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd/internal/acp"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

// progress is the adapter's own transcript during a replay: it tells the
// replay how far the adapter got, so each recorded step is fed only after
// the previous one was handled, in the recorded order.
type progress struct {
	mu      sync.Mutex
	lines   int
	changed chan struct{}
}

func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lines++
	close(p.changed)
	p.changed = make(chan struct{})
	return len(b), nil
}

func (p *progress) wait(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.NewTimer(fakeserver.WaitTimeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		have, changed := p.lines, p.changed
		p.mu.Unlock()
		if have >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			tb.Fatalf("replay: the adapter handled %d of the first %d transcript steps", have, n)
		}
	}
}

// replay feeds a transcript recorded from a real ACP agent through the
// adapter: what the agent sent goes to the adapter's stdout, commands to
// its command channel, and what the adapter sends must be what it sent
// then. It returns the events the adapter emitted.
func replay(t *testing.T, path, cwd, mode string) []protocol.Event {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A recorded resume: the adapter was asked to load the session it
	// sent session/load for.
	var resume string
	for line := range bytes.Lines(data) {
		var step struct {
			To *struct {
				Method string `json:"method"`
				Params struct {
					SessionID string `json:"sessionId"`
				} `json:"params"`
			} `json:"to"`
		}
		if json.Unmarshal(line, &step) == nil && step.To != nil && step.To.Method == "session/load" {
			resume = step.To.Params.SessionID
			break
		}
	}
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	cmds := make(chan protocol.Command)
	var mu sync.Mutex
	var evs []protocol.Event
	prog := &progress{changed: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- acp.Serve(context.Background(), acp.Options{
			Stdin: stdinW, Stdout: stdoutR, Commands: cmds, Name: "agent", Cwd: cwd, Mode: mode, Transcript: prog, Resume: resume,
			Emit: func(_ context.Context, ev protocol.Event) error {
				mu.Lock()
				defer mu.Unlock()
				evs = append(evs, ev)
				return nil
			},
		})
	}()
	sent := bufio.NewReader(stdinR)
	i := 0
	for line := range bytes.Lines(data) {
		var step map[string]json.RawMessage
		if err := json.Unmarshal(line, &step); err != nil || len(step) != 1 {
			t.Fatalf("%s: bad step %q: %v", path, line, err)
		}
		switch {
		case step["from"] != nil:
			if _, err := stdoutW.Write(append(compact(t, step["from"]), '\n')); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		case step["command"] != nil:
			var c protocol.Command
			if err := json.Unmarshal(step["command"], &c); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			cmds <- c
		case step["to"] != nil:
			got, err := sent.ReadBytes('\n')
			if err != nil {
				t.Fatalf("step %d: the adapter sent nothing (%v); want %s", i, err, step["to"])
			}
			if g, w := compact(t, got), compact(t, step["to"]); !bytes.Equal(g, w) {
				t.Fatalf("step %d: the adapter sent\n%s\nwant\n%s", i, g, w)
			}
		default:
			t.Fatalf("step %d: unknown step %v", i, step)
		}
		i++
		prog.wait(t, i)
	}
	stdoutW.Close() // the agent exits
	go io.Copy(io.Discard, stdinR)
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return evs
}

func compact(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, bytes.TrimSpace(b)); err != nil {
		t.Fatalf("compact %q: %v", b, err)
	}
	return out.Bytes()
}

// TestReplay replays every transcript recorded from a real ACP agent
// (testdata/<agent>.jsonl, by `make test-agent-<agent> RECORD=1`) and
// expects the events that run produced (testdata/<agent>.events.jsonl).
func TestReplay(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.events.jsonl")
	if len(files) == 0 {
		t.Skip("no recorded ACP transcripts in testdata")
	}
	for _, ev := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(ev, "testdata/"), ".events.jsonl")
		t.Run(name, func(t *testing.T) {
			got := fakeserver.Format(versionless(replay(t, "testdata/"+name+".jsonl", sandboxWork, modes[name])))
			want, err := os.ReadFile(ev)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("replayed events:\n got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// versionless blanks the agent version in agent_started: live tests
// compare it with the CLI's own version on their own.
func versionless(evs []protocol.Event) []protocol.Event {
	out := make([]protocol.Event, len(evs))
	for i, ev := range evs {
		if ev.Agent != nil {
			a := *ev.Agent
			a.Version = ""
			ev.Agent = &a
		}
		out[i] = ev
	}
	return out
}
