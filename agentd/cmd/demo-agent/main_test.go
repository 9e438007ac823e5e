package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd/internal/testbuild"
	"github.com/rein-ai/rein/protocol"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "demo-agent-test-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "demo-agent")
	if err := testbuild.Build(".", bin, "."); err != nil {
		fmt.Fprintln(os.Stderr, "build demo-agent:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running demo-agent.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  *json.Encoder
	events chan protocol.Event
	exited chan error
}

func startAgent(t *testing.T, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = testWriter{t}
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, stdin: json.NewEncoder(in), events: make(chan protocol.Event, 10000), exited: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			evs, err := protocol.DecodeEvents(sc.Bytes())
			if err != nil {
				t.Errorf("demo-agent wrote an invalid event: %v: %s", err, sc.Bytes())
				continue
			}
			p.events <- evs[0]
		}
		close(p.events)
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	if ev := p.next(); ev.Type != protocol.EventAgentStarted || ev.Agent.Name != "demo-agent" || ev.Cwd != cmd.Dir {
		t.Fatalf("first event %+v, want agent_started", ev)
	}
	return p
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (p *proc) send(c protocol.Command) {
	p.t.Helper()
	if err := p.stdin.Encode(c); err != nil {
		p.t.Fatal(err)
	}
}

func (p *proc) prompt(text string) {
	p.send(protocol.Command{Type: protocol.CommandPrompt, Text: text})
}

func (p *proc) next() protocol.Event {
	p.t.Helper()
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case ev, ok := <-p.events:
		if !ok {
			p.t.Fatal("demo-agent exited")
		}
		return ev
	case <-t.C:
		p.t.Fatal("no event from demo-agent")
	}
	return protocol.Event{}
}

// until collects events up to and including the first for which stop is true.
func (p *proc) until(stop func(protocol.Event) bool) []protocol.Event {
	p.t.Helper()
	var evs []protocol.Event
	for {
		ev := p.next()
		evs = append(evs, ev)
		if stop(ev) {
			return evs
		}
	}
}

func isTurnEnd(ev protocol.Event) bool { return ev.Type == protocol.EventTurnCompleted }

func lines(evs []protocol.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		j, _ := json.Marshal(ev)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

func TestAbortSlowStream(t *testing.T) {
	p := startAgent(t, "DEMO_AGENT_DELAY=10ms")
	p.prompt("slow: 100000")
	p.until(func(ev protocol.Event) bool { return ev.Type == protocol.EventTextDelta && ev.Delta == "w3 " })
	p.send(protocol.Command{Type: protocol.CommandAbort})
	evs := p.until(isTurnEnd)
	end := evs[len(evs)-1]
	if end.StopReason != protocol.StopCancelled || end.TurnID != "t1" {
		t.Fatalf("turn end %+v, want t1 cancelled", end)
	}
	for _, ev := range evs {
		if ev.Type == protocol.EventTextEnd {
			t.Errorf("text_end after abort: the reducer marks the block interrupted instead")
		}
	}
}

func TestAbortRunningCommand(t *testing.T) {
	p := startAgent(t)
	p.prompt("run: echo started; sleep 60")
	p.until(func(ev protocol.Event) bool { return ev.Type == protocol.EventToolOutputDelta })
	start := time.Now()
	p.send(protocol.Command{Type: protocol.CommandAbort})
	evs := p.until(isTurnEnd)
	got := lines(evs)
	want := `{"type":"tool_call_end","id":"tool-1","status":"cancelled","output":"started\n"}
{"type":"turn_completed","turnId":"t1","stopReason":"cancelled"}
`
	if got != want {
		t.Errorf("after abort:\n%s\nwant:\n%s", got, want)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("abort took %v: the command was not killed", d)
	}
}

func TestAbortPendingPermission(t *testing.T) {
	p := startAgent(t)
	p.prompt("ask: delete everything?")
	p.until(func(ev protocol.Event) bool { return ev.Type == protocol.EventPermissionRequested })
	p.send(protocol.Command{Type: protocol.CommandAbort})
	got := lines(p.until(isTurnEnd))
	want := `{"type":"permission_resolved","id":"perm-1","outcome":"cancelled"}
{"type":"turn_completed","turnId":"t1","stopReason":"cancelled"}
`
	if got != want {
		t.Errorf("after abort:\n%s\nwant:\n%s", got, want)
	}
}

func TestPermissionDeniedAndQueuedPrompt(t *testing.T) {
	p := startAgent(t)
	p.prompt("ask: ok?")
	p.prompt("second") // queued until the ask's turn ends
	p.until(func(ev protocol.Event) bool { return ev.Type == protocol.EventPermissionRequested })
	p.send(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "perm-other", OptionID: "allow"})
	p.send(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "perm-1", OptionID: "deny"})
	got := lines(p.until(isTurnEnd))
	want := `{"type":"permission_resolved","id":"perm-1","outcome":"selected","optionId":"deny"}
{"type":"text_delta","id":"m1","delta":"Permission denied."}
{"type":"text_end","id":"m1","text":"Permission denied."}
{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}
`
	if got != want {
		t.Errorf("ask turn:\n%s\nwant:\n%s", got, want)
	}
	evs := p.until(isTurnEnd)
	if evs[0].Type != protocol.EventTurnStarted || evs[0].TurnID != "t2" || evs[1].Text != "second" {
		t.Errorf("queued prompt:\n%s", lines(evs))
	}
}

func TestRunSuccess(t *testing.T) {
	p := startAgent(t)
	p.prompt("run: printf 'a\\nb\\n'")
	evs := p.until(isTurnEnd)
	got := lines(evs[2:])
	want := `{"type":"text_delta","id":"m1","delta":"Running ` + "`printf 'a\\\\nb\\\\n'`" + `"}
{"type":"text_end","id":"m1","text":"Running ` + "`printf 'a\\\\nb\\\\n'`" + `"}
{"type":"tool_call_start","id":"tool-1","name":"shell","kind":"execute","title":"printf 'a\\nb\\n'","input":{"command":"printf 'a\\nb\\n'"}}
{"type":"tool_call_update","id":"tool-1","status":"running"}
{"type":"tool_output_delta","id":"tool-1","delta":"a\n","stream":"stdout"}
{"type":"tool_output_delta","id":"tool-1","delta":"b\n","stream":"stdout"}
{"type":"tool_call_end","id":"tool-1","status":"completed","output":"a\nb\n","exitCode":0}
{"type":"text_delta","id":"m1-2","delta":"Exit code 0."}
{"type":"text_end","id":"m1-2","text":"Exit code 0."}
{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}
`
	if got != want {
		t.Errorf("run turn:\n%s\nwant:\n%s", got, want)
	}
}

func TestShutdownMidTurnExitsZero(t *testing.T) {
	p := startAgent(t, "DEMO_AGENT_DELAY=1s")
	p.prompt("run: sleep 60")
	p.until(func(ev protocol.Event) bool { return ev.Type == protocol.EventToolCallUpdate })
	p.send(protocol.Command{Type: protocol.CommandShutdown})
	for range p.events {
	}
	if err := <-p.exited; err != nil {
		t.Fatalf("exit after shutdown: %v, want 0", err)
	}
	p.exited <- nil // for the cleanup
}

func TestExitCommand(t *testing.T) {
	p := startAgent(t)
	p.prompt("exit: 7")
	p.until(func(ev protocol.Event) bool { return ev.Type == protocol.EventUserMessage })
	for range p.events {
	}
	err := <-p.exited
	p.exited <- nil
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("exit = %v, want code 7", err)
	}
}
