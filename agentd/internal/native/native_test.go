package native_test

import (
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd/internal/native"
	"github.com/rein-ai/rein/protocol"
)

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) Close() error                { return nil }

// serve runs the adapter over the agent output out until it ends and
// returns the events it emitted.
func serve(t *testing.T, out string) []protocol.Event {
	t.Helper()
	var evs []protocol.Event
	err := native.Serve(context.Background(), native.Options{
		Stdin: discard{}, Stdout: io.NopCloser(strings.NewReader(out)),
		Commands: make(chan protocol.Command), Name: "agent",
		Emit: func(_ context.Context, ev protocol.Event) error {
			evs = append(evs, ev)
			return nil
		},
	})
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	return evs
}

// An agent that passes a command's raw bytes into its JSON (a shell agent
// printing with printf, a C agent) writes invalid UTF-8 inside strings.
// NATIVE.md promises such a byte becomes U+FFFD, as it does for the other
// adapters' agents (encoding/json replaces it): the event must not be lost,
// least of all a tool's end or a turn's, which would leave the tool failed
// and the turn open.
func TestInvalidUTF8BecomesReplacementCharacter(t *testing.T) {
	evs := serve(t, `{"type":"agent_started","agent":{"name":"sh-agent","protocol":"native"}}`+"\n"+
		`{"type":"turn_started","turnId":"t1","source":"user"}`+"\n"+
		"{\"type\":\"tool_call_end\",\"id\":\"tool-1\",\"status\":\"completed\",\"output\":\"caf\xe9 \xff\"}\n"+
		"{\"type\":\"turn_completed\",\"turnId\":\"t1\",\"stopReason\":\"end_turn\",\"resultText\":\"ok \xc3\"}\n")
	var got []string
	for _, ev := range evs {
		got = append(got, string(ev.Type)+" "+ev.Output+ev.ResultText)
	}
	want := []string{
		"agent_started ",
		"turn_started ",
		"tool_call_end caf\uFFFD \uFFFD",
		"turn_completed ok \uFFFD",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// agentd sets agent.protocol itself, so an agent_started without it is the
// agent's all the same: its name and conversationId (which the next run
// resumes) count, and no warning says the agent wrote an invalid event.
// A later agent_started (a resumed run reporting a new conversation) too.
func TestAgentStartedWithoutProtocol(t *testing.T) {
	var convs []string
	var evs []protocol.Event
	out := `{"type":"agent_started","agent":{"name":"my-agent","version":"1.2.0"},"conversationId":"c-42"}` + "\n" +
		`{"type":"agent_started","agent":{"name":"my-agent","protocol":""},"conversationId":"c-43"}` + "\n"
	err := native.Serve(context.Background(), native.Options{
		Stdin: discard{}, Stdout: io.NopCloser(strings.NewReader(out)),
		Commands: make(chan protocol.Command), Name: "agent", Cwd: "/work",
		Emit: func(_ context.Context, ev protocol.Event) error {
			evs = append(evs, ev)
			return nil
		},
		Conversation: func(id string) { convs = append(convs, id) },
	})
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	var got []string
	for _, ev := range evs {
		b, _ := ev.MarshalJSON()
		got = append(got, string(b))
	}
	want := []string{
		`{"type":"agent_started","agent":{"name":"my-agent","version":"1.2.0","protocol":"native"},"cwd":"/work"}`,
		`{"type":"agent_started","agent":{"name":"my-agent","protocol":"native"},"cwd":"/work"}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.Join(convs, ",") != "c-42,c-43" {
		t.Errorf("conversations %q, want c-42,c-43", convs)
	}
}

// agentSeq, ts and receivedAt are agentd's and the server's to set:
// NATIVE.md tells agents that whatever they write there is replaced. An
// agent that stamps its events with its own clock (Python's
// time.time()*1000 is a float, a log library writes an ISO date) wrote
// values the event rules refuse, and the whole event was replaced by an
// invalid_agent_event notice: a turn_completed lost that way left the
// turn running for ever.
func TestEnvelopeFieldsTheAgentWroteAreReplaced(t *testing.T) {
	evs := serve(t, `{"type":"agent_started","agent":{"name":"py-agent"},"ts":1733456789012.345}`+"\n"+
		`{"type":"turn_started","turnId":"t1","source":"user","ts":1733456789013.5,"agentSeq":0}`+"\n"+
		`{"type":"text_delta","id":"m1","delta":"hi","ts":"2026-12-06T08:00:00Z"}`+"\n"+
		`{"type":"turn_completed","turnId":"t1","stopReason":"end_turn","ts":1733456789020.25,"receivedAt":"now"}`+"\n"+
		`{"type":"tool_call_start","id":"c1","ts":1.5}`+"\n")
	var got []string
	for _, ev := range evs {
		s := string(ev.Type)
		switch ev.Type {
		case protocol.EventNotice:
			s += " " + ev.Message
		case protocol.EventAgentStarted:
			s += " " + ev.Agent.Name
		}
		if ev.AgentSeq != 0 || ev.Ts != 0 {
			s += " (envelope kept)"
		}
		got = append(got, s)
	}
	want := []string{"agent_started py-agent", "turn_started", "text_delta", "turn_completed",
		"notice agent wrote an invalid event: events[0].name: required"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A line over the line cap is refused with a notice; when its start still
// shows a turn_completed, the turn ends too, as an error (with its turnId
// when that comes before the cut). One whose type comes after the cut
// cannot be told from any other event, and only the notice is left.
func TestTurnEndOverTheLineCap(t *testing.T) {
	big := strings.Repeat("x", 2<<20)
	for _, tc := range []struct {
		name, line string
		want       []string
	}{
		{"turnId first", `{"type":"turn_completed","turnId":"t1","stopReason":"end_turn","resultText":"` + big + `"}`,
			[]string{"notice  ", "turn_completed t1 error"}},
		{"turnId past the cut", `{"type":"turn_completed","resultText":"` + big + `","turnId":"t1"}`,
			[]string{"notice  ", "turn_completed  error"}},
		{"type past the cut", `{"turnId":"t1","resultText":"` + big + `","type":"turn_completed"}`,
			[]string{"notice  "}},
		{"another event", `{"type":"text_delta","id":"b1","delta":"` + big + `"}`,
			[]string{"notice  "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs := serve(t, `{"type":"agent_started","agent":{"name":"a","protocol":"native"}}`+"\n"+tc.line+"\n")
			var got []string
			for _, ev := range evs[1:] {
				got = append(got, string(ev.Type)+" "+ev.TurnID+" "+string(ev.StopReason))
				if ev.Type == protocol.EventTurnCompleted && !strings.Contains(ev.Error, "line longer than") {
					t.Errorf("turn_completed error %q, want it to say the line was too long", ev.Error)
				}
			}
			if g, w := strings.Join(got, "\n"), strings.Join(tc.want, "\n"); g != w {
				t.Errorf("events:\n%s\nwant:\n%s", g, w)
			}
		})
	}
}

// deafStdin is the stdin of an agent that reads none of it: each write
// fails as a write to a pipe whose reader is gone does, and calls failed.
type deafStdin struct{ failed func() }

func (d deafStdin) Write([]byte) (int, error) {
	d.failed()
	return 0, &os.PathError{Op: "write", Path: "|1", Err: syscall.EPIPE}
}

func (deafStdin) Close() error { return nil }

// A write to the agent's stdin fails (EPIPE) as the agent exits, a moment
// before its stdout's end is read: the transcript must not say that the
// agent stopped reading its input, which reads as if it ran on, and the
// answer the write carried is told not applied because the agent exited.
// An agent whose stdout goes on after the write failed did stop reading
// and runs on: that is told once, the answer with the write's error.
func TestWriteFailingAsTheAgentExits(t *testing.T) {
	for _, tc := range []struct {
		name string
		// exits: the agent's stdout ends 50 ms after the write failed;
		// otherwise only once the notice came.
		exits     bool
		wantInput int    // notices that the agent stopped reading its input
		wantWhy   string // in the answer's notice
	}{
		{"exits", true, 0, "(its output ended: it is exiting)"},
		{"runs on", false, 1, "write command 7 to its stdin: write |1: broken pipe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, agentOut := io.Pipe()
			cmds := make(chan protocol.Command, 1)
			cmds <- protocol.Command{ID: 7, Type: protocol.CommandPermissionResponse, RequestID: "perm-1", OptionID: "allow"}
			var once sync.Once
			stdin := deafStdin{failed: func() {
				if tc.exits {
					once.Do(func() { time.AfterFunc(50*time.Millisecond, func() { agentOut.Close() }) })
				}
			}}
			var mu sync.Mutex
			var evs []protocol.Event
			told := make(chan struct{}, 1)
			done := make(chan error, 1)
			go func() {
				done <- native.Serve(context.Background(), native.Options{
					Stdin: stdin, Stdout: stdout, Commands: cmds, Name: "agent",
					Emit: func(_ context.Context, ev protocol.Event) error {
						mu.Lock()
						defer mu.Unlock()
						evs = append(evs, ev)
						if ev.NoticeCode == native.NoticeInputClosed {
							select {
							case told <- struct{}{}:
							default:
							}
						}
						return nil
					},
				})
			}()
			timeout := time.NewTimer(10 * time.Second)
			defer timeout.Stop()
			if !tc.exits {
				select {
				case <-told:
				case <-timeout.C:
					t.Fatal("no notice that the agent stopped reading its input")
				}
				agentOut.Close()
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Serve: %v", err)
				}
			case <-timeout.C:
				agentOut.Close()
				t.Fatal("Serve did not return once the agent's stdout ended")
			}
			input, answer := 0, 0
			var got []string
			for _, ev := range evs {
				got = append(got, string(ev.Type)+" "+ev.NoticeCode+" "+ev.Message)
				switch ev.NoticeCode {
				case native.NoticeInputClosed:
					input++
				case "permission_answer_not_applied":
					answer++
					if !strings.Contains(ev.Message, "(command 7)") || !strings.Contains(ev.Message, tc.wantWhy) {
						t.Errorf("answer notice %q, want it to name command 7 and say %q", ev.Message, tc.wantWhy)
					}
				}
			}
			if input != tc.wantInput || answer != 1 {
				t.Errorf("%d notices that the agent stopped reading its input (want %d), %d that the answer was not applied (want 1); events:\n%s", input, tc.wantInput, answer, strings.Join(got, "\n"))
			}
		})
	}
}
