package codex_test

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

	"github.com/rein-ai/rein/agentd/internal/codex"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/agentd/internal/notapplied"
	"github.com/rein-ai/rein/protocol"
)

// progress is the adapter's own transcript during a replay: it tells the
// replay how far the adapter got, so each recorded step is fed only after
// the previous one was processed, in the recorded order.
type progress struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{}
}

func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lines = append(p.lines, strings.TrimRight(string(b), "\n"))
	close(p.changed)
	p.changed = make(chan struct{})
	return len(b), nil
}

// wait blocks until the adapter recorded n lines.
func (p *progress) wait(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.NewTimer(fakeserver.WaitTimeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		have, changed := len(p.lines), p.changed
		p.mu.Unlock()
		if have >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			tb.Fatalf("replay: the adapter processed %d of the first %d transcript steps", have, n)
		}
	}
}

// replay feeds a recorded transcript through the adapter without the CLI:
// what the app-server sent is written to the adapter's stdout, commands
// go to its command channel, and what the adapter sends must equal what
// it sent in the recording. It returns the events the adapter emitted.
func replay(t *testing.T, path string) []protocol.Event {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var steps []map[string]json.RawMessage
	for line := range bytes.Lines(data) {
		var step map[string]json.RawMessage
		if err := json.Unmarshal(line, &step); err != nil || len(step) != 1 {
			t.Fatalf("%s: bad step %q: %v", path, line, err)
		}
		steps = append(steps, step)
	}
	// A recorded resume: the adapter was asked to resume the thread it
	// sent thread/resume for.
	var resume string
	for _, step := range steps {
		var m struct {
			Method string `json:"method"`
			Params struct {
				ThreadID string `json:"threadId"`
			} `json:"params"`
		}
		if step["to"] != nil && json.Unmarshal(step["to"], &m) == nil && m.Method == "thread/resume" {
			resume = m.Params.ThreadID
			break
		}
	}

	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	cmds := make(chan protocol.Command)
	var mu sync.Mutex
	var evs []protocol.Event
	prog := &progress{changed: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- codex.Serve(ctx, codex.Options{
			Stdin: stdinW, Stdout: stdoutR, Commands: cmds, Cwd: sandboxWork, Transcript: prog, Resume: resume,
			Emit: func(_ context.Context, ev protocol.Event) error {
				mu.Lock()
				defer mu.Unlock()
				evs = append(evs, ev)
				return nil
			},
		})
	}()
	sent := bufio.NewReader(stdinR)
	for i, step := range steps {
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
			line, err := sent.ReadBytes('\n')
			if err != nil {
				t.Fatalf("step %d: the adapter sent nothing (%v); want %s", i, err, step["to"])
			}
			if got, want := compact(t, line), compact(t, step["to"]); !bytes.Equal(got, want) {
				t.Fatalf("step %d: the adapter sent\n%s\nwant\n%s", i, got, want)
			}
		default:
			t.Fatalf("step %d: unknown step %v", i, step)
		}
		prog.wait(t, i+1)
	}
	stdoutW.Close() // the app-server exits
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

// TestReplaySession replays the transcript TestCodexCLISession recorded
// from the real CLI (go test -run TestCodexCLISession -args -record) and
// expects the very events that run produced.
func TestReplaySession(t *testing.T) {
	evs := replay(t, "testdata/session.jsonl")
	if len(evs) == 0 || evs[0].Agent == nil || evs[0].Agent.Version == "" {
		t.Fatalf("replay: first event is not agent_started with the CLI's version")
	}
	got := fakeserver.Format(versionless(evs))
	want, err := os.ReadFile("testdata/session.events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("replayed events:\n got:\n%s\nwant:\n%s", got, want)
	}
	if unstreamed(got) != unstreamed(wantSession) {
		t.Errorf("testdata/session.events.jsonl differs from wantSession (streamed output left out): re-record, then update wantSession")
	}
}

// versionless blanks the agent version in agent_started: tests compare it
// with the CLI's --version on their own.
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

// TestReplayResume replays the transcript of the resumed app-server
// TestCodexCLIResume recorded (thread/resume, then a turn whose usage
// starts from the thread's earlier totals).
func TestReplayResume(t *testing.T) {
	got := fakeserver.Format(versionless(replay(t, "testdata/resume.jsonl")))
	want, err := os.ReadFile("testdata/resume.events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("replayed events:\n got:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(got, `"text":"Earlier prompts: hello | recall"`) || !strings.Contains(got, `"inputTokens":100,`) {
		t.Errorf("testdata/resume.events.jsonl lacks the resumed answer or the per-turn usage: re-record")
	}
}

// The app-server withdraws an approval request (serverRequest/resolved,
// as on an interrupt) that the user answered at the same moment: the
// answer reaches the adapter after the request was resolved cancelled,
// and cannot take effect. It used to be logged only, so the user who
// answered read no word that their answer did nothing; now the
// transcript says so, with the notice agentd posts for every answer not
// applied. The run is testdata/session.jsonl up to its first approval,
// withdrawn before its answer.
func TestAnswerToWithdrawnRequestIsTold(t *testing.T) {
	data, err := os.ReadFile("testdata/session.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if !strings.Contains(lines[45], `"method":"item/commandExecution/requestApproval","id":0,`) || !strings.HasPrefix(lines[46], `{"command":{"id":3,"type":"permission_response","requestId":"turn-2:perm-1"`) {
		t.Fatalf("testdata/session.jsonl changed: line 46 is not the first approval, or 47 not its answer")
	}
	run := append(append([]string(nil), lines[:46]...),
		`{"from":{"method":"serverRequest/resolved","params":{"threadId":"01a2344b-b3f3-7703-a989-c7db7384155c","requestId":0}}}`, lines[46])
	path := filepath.Join(t.TempDir(), "withdrawn.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(run, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range replay(t, path) {
		switch ev.Type {
		case protocol.EventPermissionResolved:
			got = append(got, string(ev.Type)+" "+string(ev.Outcome))
		case protocol.EventNotice:
			got = append(got, string(ev.Type)+" "+string(ev.Level)+" "+ev.NoticeCode+": "+ev.Message)
		}
	}
	want := []string{
		"permission_resolved cancelled",
		`notice warning ` + notapplied.Code + `: agentd: the answer to permission request "turn-2:perm-1" (command 3) was not given to the agent: ` + notapplied.Ended,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
