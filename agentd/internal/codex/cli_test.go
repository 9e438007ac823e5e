package codex_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd"
	"github.com/rein-ai/rein/agentd/internal/fakemodel"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

var record = flag.Bool("record", false, "record the real CLI's transcript and events into testdata (needs REIN_CODEX_BIN)")

// Placeholders for the run's temporary paths in what is recorded, so the
// testdata is the same on every machine.
const (
	sandboxWork = "/sandbox/work"
	sandboxHome = "/sandbox/codex-home"
	sandboxOut  = "/sandbox/outside"
)

// codexBin returns the Codex CLI (installed by `make test-agent-codex`,
// which exports REIN_CODEX_BIN), or skips.
func codexBin(t *testing.T) string {
	t.Helper()
	p := os.Getenv("REIN_CODEX_BIN")
	if p == "" {
		t.Skip("REIN_CODEX_BIN is not set: run `make test-agent-codex` at the repo root to install @openai/codex and run the tests against it (the replay tests cover the adapter without it)")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("REIN_CODEX_BIN=%s: %v (run `make test-agent-codex`)", p, err)
	}
	return p
}

// wantSession is the exact event sequence of TestCodexCLISession (and of
// its replay), with the temporary paths replaced by placeholders.
// wantSession leaves out the CLI version (see versionless): the test
// compares it with the CLI's own --version, so an upgrade changes no
// expected event. The tool_output_delta lines are what Codex streams when
// it reports the command running before its first line is printed; they
// are compared apart (see unstreamed). Codex 0.171.0 offers no "decline"
// for a command that asks for escalation, only "cancel", which ends the
// turn: the denied turn (turn-4) ends cancelled.
const wantSession = `{"type":"agent_started","agent":{"name":"codex","protocol":"codex"},"model":"gpt-5.5","cwd":"/sandbox/work"}
{"type":"turn_started","turnId":"turn-1","promptId":"prompt-1","source":"user"}
{"type":"user_message","id":"user-1","promptId":"prompt-1","text":"run"}
{"type":"reasoning_delta","id":"turn-1:rs_1","delta":"Thinking "}
{"type":"reasoning_delta","id":"turn-1:rs_1","delta":"about it"}
{"type":"reasoning_end","id":"turn-1:rs_1","text":"Thinking about it"}
{"type":"text_delta","id":"turn-1:msg_1","delta":"Running "}
{"type":"text_delta","id":"turn-1:msg_1","delta":"it."}
{"type":"text_end","id":"turn-1:msg_1","text":"Running it."}
{"type":"tool_call_start","id":"turn-1:call_run","name":"shell","kind":"execute","title":"echo hello; sleep 0.5; echo bye","input":{"command":"/bin/bash -c 'echo hello; sleep 0.5; echo bye'","cwd":"/sandbox/work"}}
{"type":"tool_call_update","id":"turn-1:call_run","status":"running"}
{"type":"tool_output_delta","id":"turn-1:call_run","delta":"hello\n"}
{"type":"tool_output_delta","id":"turn-1:call_run","delta":"bye\n"}
{"type":"tool_call_end","id":"turn-1:call_run","status":"completed","output":"hello\nbye\n","exitCode":0}
{"type":"usage_updated","inputTokens":100,"outputTokens":20,"cachedInputTokens":40,"contextUsed":120,"contextSize":258400}
{"type":"text_delta","id":"turn-1:msg_2","delta":"Done."}
{"type":"text_end","id":"turn-1:msg_2","text":"Done."}
{"type":"usage_updated","inputTokens":200,"outputTokens":40,"cachedInputTokens":80,"contextUsed":120,"contextSize":258400}
{"type":"turn_completed","turnId":"turn-1","stopReason":"end_turn"}
{"type":"turn_started","turnId":"turn-2","promptId":"prompt-2","source":"user"}
{"type":"user_message","id":"user-2","promptId":"prompt-2","text":"ask"}
{"type":"tool_call_start","id":"turn-2:call_ask","name":"shell","kind":"execute","title":"touch /sandbox/outside/approved.txt","input":{"command":"/bin/bash -c 'touch /sandbox/outside/approved.txt'","cwd":"/sandbox/work"}}
{"type":"tool_call_update","id":"turn-2:call_ask","status":"running"}
{"type":"permission_requested","id":"turn-2:perm-1","title":"touch /sandbox/outside/approved.txt","input":{"command":"/bin/bash -c 'touch /sandbox/outside/approved.txt'","cwd":"/sandbox/work","reason":"write outside the workspace"},"toolCallId":"turn-2:call_ask","options":[{"id":"accept","name":"Allow","kind":"allow_once"},{"id":"acceptWithExecpolicyAmendment","name":"Always allow commands like this","kind":"allow_always"},{"id":"cancel","name":"Deny and stop the turn","kind":"reject_once"}]}
{"type":"permission_resolved","id":"turn-2:perm-1","outcome":"selected","optionId":"accept"}
{"type":"tool_call_end","id":"turn-2:call_ask","status":"completed","exitCode":0}
{"type":"usage_updated","inputTokens":100,"outputTokens":20,"cachedInputTokens":40,"contextUsed":120,"contextSize":258400}
{"type":"text_delta","id":"turn-2:msg_4","delta":"Done."}
{"type":"text_end","id":"turn-2:msg_4","text":"Done."}
{"type":"usage_updated","inputTokens":200,"outputTokens":40,"cachedInputTokens":80,"contextUsed":120,"contextSize":258400}
{"type":"turn_completed","turnId":"turn-2","stopReason":"end_turn"}
{"type":"turn_started","turnId":"turn-4","promptId":"prompt-4","source":"user"}
{"type":"user_message","id":"user-4","promptId":"prompt-4","text":"deny"}
{"type":"tool_call_start","id":"turn-4:call_deny","name":"shell","kind":"execute","title":"touch /sandbox/outside/denied.txt","input":{"command":"/bin/bash -c 'touch /sandbox/outside/denied.txt'","cwd":"/sandbox/work"}}
{"type":"tool_call_update","id":"turn-4:call_deny","status":"running"}
{"type":"permission_requested","id":"turn-4:perm-2","title":"touch /sandbox/outside/denied.txt","input":{"command":"/bin/bash -c 'touch /sandbox/outside/denied.txt'","cwd":"/sandbox/work","reason":"write outside the workspace"},"toolCallId":"turn-4:call_deny","options":[{"id":"accept","name":"Allow","kind":"allow_once"},{"id":"acceptWithExecpolicyAmendment","name":"Always allow commands like this","kind":"allow_always"},{"id":"cancel","name":"Deny and stop the turn","kind":"reject_once"}]}
{"type":"permission_resolved","id":"turn-4:perm-2","outcome":"selected","optionId":"cancel"}
{"type":"tool_call_end","id":"turn-4:call_deny","status":"denied"}
{"type":"usage_updated","inputTokens":100,"outputTokens":20,"cachedInputTokens":40,"contextUsed":120,"contextSize":258400}
{"type":"turn_completed","turnId":"turn-4","stopReason":"cancelled"}
{"type":"turn_started","turnId":"turn-6","promptId":"prompt-6","source":"user"}
{"type":"user_message","id":"user-6","promptId":"prompt-6","text":"patch"}
{"type":"tool_call_start","id":"turn-6:call_patch","name":"apply_patch","kind":"edit","title":"/sandbox/work/hello.txt","input":{"changes":[{"path":"/sandbox/work/hello.txt","kind":"add"}]}}
{"type":"tool_call_update","id":"turn-6:call_patch","status":"running"}
{"type":"file_changed","toolCallId":"turn-6:call_patch","path":"/sandbox/work/hello.txt","change":"add","diff":"hi there\n"}
{"type":"tool_call_end","id":"turn-6:call_patch","status":"completed"}
{"type":"usage_updated","inputTokens":100,"outputTokens":20,"cachedInputTokens":40,"contextUsed":120,"contextSize":258400}
{"type":"text_delta","id":"turn-6:msg_7","delta":"Done."}
{"type":"text_end","id":"turn-6:msg_7","text":"Done."}
{"type":"usage_updated","inputTokens":200,"outputTokens":40,"cachedInputTokens":80,"contextUsed":120,"contextSize":258400}
{"type":"turn_completed","turnId":"turn-6","stopReason":"end_turn"}
{"type":"turn_started","turnId":"turn-7","promptId":"prompt-7","source":"user"}
{"type":"user_message","id":"user-7","promptId":"prompt-7","text":"slow"}
{"type":"text_delta","id":"turn-7:msg_8","delta":"w1 "}
{"type":"text_delta","id":"turn-7:msg_8","delta":"w2 "}
{"type":"text_delta","id":"turn-7:msg_8","delta":"w3 "}
{"type":"usage_updated","inputTokens":0,"outputTokens":0,"cachedInputTokens":0,"contextUsed":120,"contextSize":258400}
{"type":"turn_completed","turnId":"turn-7","stopReason":"cancelled"}
{"type":"turn_started","turnId":"turn-9","promptId":"prompt-9","source":"user"}
{"type":"user_message","id":"user-9","promptId":"prompt-9","text":"hello"}
{"type":"text_delta","id":"turn-9:msg_9","delta":"Hello "}
{"type":"text_delta","id":"turn-9:msg_9","delta":"again."}
{"type":"text_end","id":"turn-9:msg_9","text":"Hello again."}
{"type":"usage_updated","inputTokens":100,"outputTokens":20,"cachedInputTokens":40,"contextUsed":120,"contextSize":258400}
{"type":"turn_completed","turnId":"turn-9","stopReason":"end_turn"}
{"type":"turn_started","turnId":"turn-10","promptId":"prompt-10","source":"user"}
{"type":"user_message","id":"user-10","promptId":"prompt-10","text":"recall"}
{"type":"text_delta","id":"turn-10:msg_10","delta":"Earlier prompts: run | ask | deny | patch | slow | hello | recall"}
{"type":"text_end","id":"turn-10:msg_10","text":"Earlier prompts: run | ask | deny | patch | slow | hello | recall"}
{"type":"usage_updated","inputTokens":100,"outputTokens":20,"cachedInputTokens":40,"contextUsed":120,"contextSize":258400}
{"type":"turn_completed","turnId":"turn-10","stopReason":"end_turn"}
{"type":"turn_started","turnId":"turn-11","promptId":"prompt-11","source":"user"}
{"type":"user_message","id":"user-11","promptId":"prompt-11","text":"deny"}
{"type":"tool_call_start","id":"turn-11:call_deny","name":"shell","kind":"execute","title":"touch /sandbox/outside/denied.txt","input":{"command":"/bin/bash -c 'touch /sandbox/outside/denied.txt'","cwd":"/sandbox/work"}}
{"type":"tool_call_update","id":"turn-11:call_deny","status":"running"}
{"type":"permission_requested","id":"turn-11:perm-3","title":"touch /sandbox/outside/denied.txt","input":{"command":"/bin/bash -c 'touch /sandbox/outside/denied.txt'","cwd":"/sandbox/work","reason":"write outside the workspace"},"toolCallId":"turn-11:call_deny","options":[{"id":"accept","name":"Allow","kind":"allow_once"},{"id":"acceptWithExecpolicyAmendment","name":"Always allow commands like this","kind":"allow_always"},{"id":"cancel","name":"Deny and stop the turn","kind":"reject_once"}]}
{"type":"permission_resolved","id":"turn-11:perm-3","outcome":"cancelled"}
{"type":"tool_call_end","id":"turn-11:call_deny","status":"cancelled"}
{"type":"usage_updated","inputTokens":100,"outputTokens":20,"cachedInputTokens":40,"contextUsed":120,"contextSize":258400}
{"type":"turn_completed","turnId":"turn-11","stopReason":"cancelled"}
{"type":"turn_started","turnId":"turn-13","promptId":"prompt-13","source":"user"}
{"type":"user_message","id":"user-13","promptId":"prompt-13","text":"hello"}
{"type":"text_delta","id":"turn-13:msg_12","delta":"Hello "}
{"type":"text_delta","id":"turn-13:msg_12","delta":"again."}
{"type":"text_end","id":"turn-13:msg_12","text":"Hello again."}
{"type":"usage_updated","inputTokens":100,"outputTokens":20,"cachedInputTokens":40,"contextUsed":120,"contextSize":258400}
{"type":"turn_completed","turnId":"turn-13","stopReason":"end_turn"}
{"type":"turn_started","turnId":"turn-14","promptId":"prompt-14","source":"user"}
{"type":"user_message","id":"user-14","promptId":"prompt-14","text":"recall"}
{"type":"text_delta","id":"turn-14:msg_13","delta":"Earlier prompts: run | ask | deny | patch | slow | hello | recall | deny | hello | recall"}
{"type":"text_end","id":"turn-14:msg_13","text":"Earlier prompts: run | ask | deny | patch | slow | hello | recall | deny | hello | recall"}
{"type":"usage_updated","inputTokens":100,"outputTokens":20,"cachedInputTokens":40,"contextUsed":120,"contextSize":258400}
{"type":"turn_completed","turnId":"turn-14","stopReason":"end_turn"}
{"type":"turn_started","turnId":"turn-15","promptId":"prompt-15","source":"user"}
{"type":"user_message","id":"user-15","promptId":"prompt-15","text":"sleepy"}
{"type":"tool_call_start","id":"turn-15:call_sleepy","name":"shell","kind":"execute","title":"sleep 987.654","input":{"command":"/bin/bash -c 'sleep 987.654'","cwd":"/sandbox/work"}}
{"type":"tool_call_update","id":"turn-15:call_sleepy","status":"running"}
{"type":"usage_updated","inputTokens":100,"outputTokens":20,"cachedInputTokens":40,"contextUsed":120,"contextSize":258400}
{"type":"turn_completed","turnId":"turn-15","stopReason":"cancelled"}
`

// TestCodexCLISession drives the real `codex app-server` through agentd,
// one thread, row by row of the agent matrix (README "Supported agents"):
// reasoning and text, a shell command with its output, approve, deny, a
// patch, abort mid-stream and a turn after it in the same process, abort
// while a permission is pending, two turns with memory, two prompts back
// to back, usage, abort mid-tool (the turn ends and the command's process
// is gone), and every turn ending (the session idle) before the next.
func TestCodexCLISession(t *testing.T) {
	bin := codexBin(t)
	root := t.TempDir()
	work, home, outside := filepath.Join(root, "work"), filepath.Join(root, "home"), filepath.Join(root, "outside")
	for _, d := range []string{work, home, outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	model := fakemodel.NewOpenAI(t, outside)
	if err := os.WriteFile(filepath.Join(home, "config.toml"), []byte(fakemodel.CodexConfig(model.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	transcript := &fakeserver.Buffer{}
	defer func() {
		if t.Failed() {
			t.Logf("transcript:\n%s", transcript.String())
		}
	}()

	srv := fakeserver.New(t, "codex")
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + root, "CODEX_HOME=" + home, "REIN_TEST_CODEX_KEY=dummy",
		// Anything that tries the network goes to a closed port; the
		// fake model server on loopback is exempt.
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "ALL_PROXY=http://127.0.0.1:9",
		"NO_PROXY=127.0.0.1,localhost",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- agentd.Run(ctx, agentd.Options{
			Server: srv.URL, Session: srv.Session, Protocol: agentd.ProtocolCodex,
			Command: []string{bin, "app-server"}, Dir: work, Env: env,
			HeartbeatInterval: time.Hour, Logger: fakeserver.Logger(t, slog.LevelInfo), Transcript: transcript,
		})
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agentd.Run: %v", err)
			}
		}
	}
	t.Cleanup(stop)

	// The fake server sends a fresh connection only the commands that
	// follow it.
	srv.WaitState(t, "an open command stream", func() bool { return srv.OpenStreams() > 0 })
	// waitEnd waits for the turn of prompt id to end and returns its
	// turn_completed and its events.
	waitEnd := func(t *testing.T, id int64) (protocol.Event, []protocol.Event) {
		t.Helper()
		turn := fmt.Sprintf("turn-%d", id)
		var end protocol.Event
		srv.Wait(t, turn+" to end", func(evs []protocol.Event) bool {
			for _, ev := range evs {
				if ev.Type == protocol.EventTurnCompleted && ev.TurnID == turn {
					end = ev
					return true
				}
			}
			return false
		})
		return end, fakeserver.TurnEvents(srv.Events(), turn)
	}
	waitPermission := func(t *testing.T, id int64) protocol.Event {
		t.Helper()
		prefix := fmt.Sprintf("turn-%d:", id)
		var req protocol.Event
		srv.Wait(t, "a permission request of "+prefix, func(evs []protocol.Event) bool {
			for _, ev := range evs {
				if ev.Type == protocol.EventPermissionRequested && strings.HasPrefix(ev.ID, prefix) {
					req = ev
					return true
				}
			}
			return false
		})
		return req
	}
	// answer answers the request with its first option of kind.
	answer := func(t *testing.T, req protocol.Event, kind protocol.OptionKind) {
		t.Helper()
		for _, o := range req.Options {
			if o.Kind == kind {
				srv.Send(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: req.ID, OptionID: o.ID})
				return
			}
		}
		t.Fatalf("permission %s has no %s option: %s", req.ID, kind, fakeserver.Format([]protocol.Event{req}))
	}
	// requestFor is the model request of the turn whose prompt is
	// prompt, the nth such (1-based).
	requestFor := func(t *testing.T, prompt string, nth int) fakemodel.OpenAIRequest {
		t.Helper()
		for _, r := range model.Requests() {
			if r.Prompt == prompt && !r.ToolOutput {
				if nth--; nth == 0 {
					return r
				}
			}
		}
		t.Fatalf("no request %d for prompt %q: %+v", nth, prompt, model.Requests())
		return fakemodel.OpenAIRequest{}
	}

	t.Run("text_reasoning_shell_output_usage", func(t *testing.T) {
		end, evs := waitEnd(t, srv.Prompt("run"))
		out, deltas := toolOutput(evs, "turn-1:call_run")
		if end.StopReason != protocol.StopEndTurn || countOf(evs, protocol.EventReasoningDelta) == 0 ||
			countOf(evs, protocol.EventTextDelta) == 0 || out != "hello\nbye\n" || !strings.Contains(out, deltas) {
			t.Errorf("turn (tool output %q, streamed %q):\n%s", out, deltas, fakeserver.Format(evs))
		}
		// Two model requests in the turn: usage is their sum.
		if u := lastUsage(evs); u.InputTokens == nil || *u.InputTokens != 200 || *u.OutputTokens != 40 || *u.CachedInputTokens != 80 {
			t.Errorf("usage %s; want 200 in, 40 out, 80 cached", fakeserver.Format([]protocol.Event{u}))
		}
	})
	t.Run("approve", func(t *testing.T) {
		id := srv.Prompt("ask")
		answer(t, waitPermission(t, id), protocol.AllowOnce)
		end, evs := waitEnd(t, id)
		if _, err := os.Stat(filepath.Join(outside, fakemodel.AskFile)); err != nil || end.StopReason != protocol.StopEndTurn {
			t.Errorf("the approved command did not run (%v):\n%s", err, fakeserver.Format(evs))
		}
	})
	t.Run("deny", func(t *testing.T) {
		id := srv.Prompt("deny")
		answer(t, waitPermission(t, id), protocol.RejectOnce)
		_, evs := waitEnd(t, id)
		if _, err := os.Stat(filepath.Join(outside, fakemodel.DenyFile)); err == nil || !fakeserver.Has(evs, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventToolCallEnd && ev.Status == protocol.ToolDenied
		}) {
			t.Errorf("the denied command ran or its tool is not denied:\n%s", fakeserver.Format(evs))
		}
	})
	t.Run("patch", func(t *testing.T) {
		end, evs := waitEnd(t, srv.Prompt("patch"))
		if b, err := os.ReadFile(filepath.Join(work, "hello.txt")); err != nil || string(b) != "hi there\n" || end.StopReason != protocol.StopEndTurn {
			t.Errorf("hello.txt = %q, %v; want the patch applied:\n%s", b, err, fakeserver.Format(evs))
		}
		// Usage is this turn's two requests, though Codex may report the
		// denied turn's with them.
		if u := lastUsage(evs); u.InputTokens == nil || *u.InputTokens != 200 || *u.OutputTokens != 40 {
			t.Errorf("usage %s; want 200 in, 40 out", fakeserver.Format([]protocol.Event{u}))
		}
	})
	t.Run("abort_mid_stream_then_a_turn", func(t *testing.T) {
		id := srv.Prompt("slow")
		srv.Wait(t, "the slow stream", func(evs []protocol.Event) bool {
			return fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventTextDelta && ev.Delta == "w3 " })
		})
		srv.Send(protocol.Command{Type: protocol.CommandAbort})
		if end, evs := waitEnd(t, id); end.StopReason != protocol.StopCancelled {
			t.Errorf("aborted turn:\n%s", fakeserver.Format(evs))
		}
		// The next turn runs in the same app-server.
		if end, evs := waitEnd(t, srv.Prompt("hello")); end.StopReason != protocol.StopEndTurn || countOf(srv.Events(), protocol.EventAgentExited) != 0 {
			t.Errorf("turn after the abort (or the agent exited):\n%s", fakeserver.Format(evs))
		}
	})
	t.Run("two_turns_with_memory", func(t *testing.T) {
		end, evs := waitEnd(t, srv.Prompt("recall"))
		// The request of this turn carries the turn before it: its
		// prompt and the model's answer.
		req := requestFor(t, "recall", 1)
		n := len(req.Prompts)
		if end.StopReason != protocol.StopEndTurn || n < 2 || req.Prompts[n-2] != "hello" ||
			!slices.Contains(req.Answers, "Hello again.") {
			t.Errorf("the model did not get the earlier turns: %+v\n%s", req, fakeserver.Format(evs))
		}
	})
	t.Run("abort_while_permission_pending", func(t *testing.T) {
		id := srv.Prompt("deny")
		waitPermission(t, id)
		srv.Send(protocol.Command{Type: protocol.CommandAbort})
		end, evs := waitEnd(t, id)
		resolved := countOf(evs, protocol.EventPermissionResolved)
		if _, err := os.Stat(filepath.Join(outside, fakemodel.DenyFile)); err == nil || end.StopReason != protocol.StopCancelled || resolved != 1 ||
			!fakeserver.Has(evs, func(ev protocol.Event) bool {
				return ev.Type == protocol.EventPermissionResolved && ev.Outcome == protocol.OutcomeCancelled
			}) {
			t.Errorf("the command ran, or the turn is not cancelled with its permission:\n%s", fakeserver.Format(evs))
		}
		// Codex reports the command declined; nobody denied it.
		if !fakeserver.Has(evs, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventToolCallEnd && ev.Status == protocol.ToolCancelled
		}) {
			t.Errorf("the command whose approval the abort dismissed did not end cancelled:\n%s", fakeserver.Format(evs))
		}
	})
	t.Run("back_to_back", func(t *testing.T) {
		a, b := srv.Prompt("hello"), srv.Prompt("recall")
		endA, evsA := waitEnd(t, a)
		endB, evsB := waitEnd(t, b)
		// The second waited for the first to end.
		all := srv.Events()
		ia := slices.IndexFunc(all, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventTurnCompleted && ev.TurnID == endA.TurnID
		})
		ib := slices.IndexFunc(all, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventTurnStarted && ev.TurnID == endB.TurnID
		})
		want := "Earlier prompts: run | ask | deny | patch | slow | hello | recall | deny | hello | recall"
		if endA.StopReason != protocol.StopEndTurn || endB.StopReason != protocol.StopEndTurn || ib < ia ||
			!fakeserver.Has(evsB, func(ev protocol.Event) bool { return ev.Type == protocol.EventTextEnd && ev.Text == want }) {
			t.Errorf("back to back (want the second answer %q):\n%s\n%s", want, fakeserver.Format(evsA), fakeserver.Format(evsB))
		}
	})
	t.Run("abort_mid_tool", func(t *testing.T) {
		// The turn ends and the command's process is gone.
		id := srv.Prompt("sleepy")
		pid := waitProcess(t, "sleep\x00"+model.SleepyArg()+"\x00")
		// Abort once Rein shows the command running: Codex spawns it
		// before it reports it.
		tool := fmt.Sprintf("turn-%d:call_sleepy", id)
		srv.Wait(t, "the sleepy command to run", func(evs []protocol.Event) bool {
			return fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventToolCallUpdate && ev.ID == tool })
		})
		srv.Send(protocol.Command{Type: protocol.CommandAbort})
		if end, evs := waitEnd(t, id); end.StopReason != protocol.StopCancelled {
			t.Errorf("aborted turn:\n%s", fakeserver.Format(evs))
		}
		waitGone(t, pid)
	})
	stop()

	replacer := strings.NewReplacer(work, sandboxWork, home, sandboxHome, outside, sandboxOut, model.SleepyArg(), fakemodel.SleepyArg)
	var evs []protocol.Event
	for _, ev := range srv.Events() {
		// agentd's own agent_started (the process runs, the handshake
		// is under way) is not the adapter's: the replay has only the
		// adapter's.
		early := ev.Type == protocol.EventAgentStarted && ev.Agent != nil && ev.Agent.Version == "" && ev.Model == ""
		if ev.Type != protocol.EventHeartbeat && ev.Type != protocol.EventAgentExited && !early {
			evs = append(evs, ev)
		}
	}
	if want := cliVersion(t, bin); evs[0].Agent == nil || evs[0].Agent.Version != want {
		t.Errorf("first event %s: want agent_started with version %q (codex --version)", fakeserver.Format(evs[:1]), want)
	}
	t.Run("idle_after_each_turn", func(t *testing.T) {
		if err := fakeserver.TurnsEndInOrder(evs); err != nil {
			t.Errorf("%v:\n%s", err, fakeserver.Format(evs))
		}
	})
	got := replacer.Replace(fakeserver.Format(versionless(evs)))
	if *record {
		writeFile(t, "testdata/session.jsonl", replacer.Replace(transcript.String()))
		writeFile(t, "testdata/session.events.jsonl", got)
	}
	if g := unstreamed(got); g != unstreamed(wantSession) {
		t.Errorf("events (streamed output left out):\n got:\n%s\nwant:\n%s", g, unstreamed(wantSession))
	}
	t.Logf("model server requests: %+v", model.Requests())
}

// unstreamed leaves out of a formatted event list what depends on timing:
//   - tool_output_delta lines. Which part of a command's output Codex
//     streams depends on when it reports the command running: output
//     printed before (under load, "hello\n" of "echo hello; sleep 0.5;
//     echo bye") comes only in the completed item's aggregatedOutput,
//     which tool_call_end carries whole.
//   - usage_updated in turns that end cancelled: Codex reports the usage
//     of a denied or aborted turn before its end or with the next turn's
//     first request, as it happens.
func unstreamed(s string) string {
	lines := slices.Collect(strings.Lines(s))
	cancelled := map[string]bool{}
	for _, line := range lines {
		var ev protocol.Event
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Type == protocol.EventTurnCompleted && ev.StopReason == protocol.StopCancelled {
			cancelled[ev.TurnID] = true
		}
	}
	var out strings.Builder
	turn := ""
	for _, line := range lines {
		var ev protocol.Event
		_ = json.Unmarshal([]byte(line), &ev)
		if ev.Type == protocol.EventTurnStarted {
			turn = ev.TurnID
		}
		if ev.Type == protocol.EventToolOutputDelta || (ev.Type == protocol.EventUsageUpdated && cancelled[turn]) {
			continue
		}
		out.WriteString(line)
	}
	return out.String()
}

func countOf(evs []protocol.Event, typ protocol.EventType) int {
	return fakeserver.Count(evs, typ)
}

// toolOutput is a tool's output as Rein shows it once it ended (the
// end's output, else what streamed) and what streamed.
func toolOutput(evs []protocol.Event, id string) (out, streamed string) {
	for _, ev := range evs {
		switch {
		case ev.Type == protocol.EventToolOutputDelta && ev.ID == id:
			streamed += ev.Delta
		case ev.Type == protocol.EventToolCallEnd && ev.ID == id:
			out = ev.Output
		}
	}
	if out == "" {
		out = streamed
	}
	return out, streamed
}

func lastUsage(evs []protocol.Event) protocol.Event {
	var u protocol.Event
	for _, ev := range evs {
		if ev.Type == protocol.EventUsageUpdated {
			u = ev
		}
	}
	return u
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %s", path)
}

// cliVersion is the version `codex --version` prints ("codex-cli 0.169.0").
func cliVersion(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", bin, err)
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		t.Fatalf("%s --version printed nothing", bin)
	}
	return f[len(f)-1]
}

// waitProcess waits for a process whose /proc cmdline is cmdline.
func waitProcess(t *testing.T, cmdline string) int {
	t.Helper()
	deadline := time.Now().Add(fakeserver.WaitTimeout)
	for {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err == nil && string(b) == cmdline {
				var pid int
				fmt.Sscanf(e.Name(), "%d", &pid)
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no process runs %q", cmdline)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitGone waits for pid to exit (a zombie counts as gone).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(fakeserver.WaitTimeout)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && strings.HasPrefix(string(b[i+1:]), " Z") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d, started by the aborted turn, still runs", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCodexCLIResume: the app-server of a restarted agentd (same state
// dir) resumes the thread of the one before with thread/resume: the model
// gets the earlier prompt with the new one.
func TestCodexCLIResume(t *testing.T) {
	bin := codexBin(t)
	root := t.TempDir()
	work, home, state := filepath.Join(root, "work"), filepath.Join(root, "home"), filepath.Join(root, "state")
	for _, d := range []string{work, home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	model := fakemodel.NewOpenAI(t, root)
	if err := os.WriteFile(filepath.Join(home, "config.toml"), []byte(fakemodel.CodexConfig(model.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := fakeserver.New(t, "codex")
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + root, "CODEX_HOME=" + home, "REIN_TEST_CODEX_KEY=dummy",
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "ALL_PROXY=http://127.0.0.1:9",
		"NO_PROXY=127.0.0.1,localhost",
	}
	transcript := &fakeserver.Buffer{}
	defer func() {
		if t.Failed() {
			t.Logf("transcript:\n%s", transcript.String())
		}
	}()
	turn := func(text string, transcript *fakeserver.Buffer) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- agentd.Run(ctx, agentd.Options{
				Server: srv.URL, Session: srv.Session, Protocol: agentd.ProtocolCodex,
				Command: []string{bin, "app-server"}, Dir: work, Env: env, StateDir: state,
				HeartbeatInterval: time.Hour, Logger: fakeserver.Logger(t, slog.LevelInfo), Transcript: transcript,
			})
		}()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agentd.Run: %v", err)
			}
		}()
		srv.WaitState(t, "an open command stream", func() bool { return srv.OpenStreams() > 0 })
		id := srv.Prompt(text)
		srv.Wait(t, "the turn to end", func(evs []protocol.Event) bool {
			return fakeserver.Has(evs, func(ev protocol.Event) bool {
				return ev.Type == protocol.EventTurnCompleted && ev.TurnID == fmt.Sprintf("turn-%d", id)
			})
		})
	}
	turn("hello", &fakeserver.Buffer{})
	first := len(srv.Events())
	turn("recall", transcript)
	evs := srv.Events()
	want := "Earlier prompts: hello | recall"
	if !fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventTextEnd && ev.Text == want }) {
		t.Errorf("no text_end %q: the second app-server did not resume the thread:\n%s", want, fakeserver.Format(evs))
	}
	// Usage is per turn: the resumed thread's earlier totals are the
	// baseline, not this turn's.
	var last protocol.Event
	for _, ev := range evs {
		if ev.Type == protocol.EventUsageUpdated {
			last = ev
		}
	}
	if last.InputTokens == nil || *last.InputTokens != 100 {
		t.Errorf("the resumed turn's usage %s; want inputTokens 100 (one request)", fakeserver.Format([]protocol.Event{last}))
	}
	if fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Type == protocol.EventNotice }) {
		t.Errorf("a notice (resume failed?):\n%s", fakeserver.Format(evs))
	}
	if *record {
		// The second run's transcript and the events its adapter
		// emitted (not agentd's own), for TestReplayResume.
		var own []protocol.Event
		for _, ev := range evs[first:] {
			early := ev.Type == protocol.EventAgentStarted && ev.Agent != nil && ev.Agent.Version == "" && ev.Model == ""
			if ev.Type != protocol.EventHeartbeat && ev.Type != protocol.EventAgentExited && !early {
				own = append(own, ev)
			}
		}
		replacer := strings.NewReplacer(work, sandboxWork, home, sandboxHome, root, "/sandbox")
		writeFile(t, "testdata/resume.jsonl", replacer.Replace(transcript.String()))
		writeFile(t, "testdata/resume.events.jsonl", replacer.Replace(fakeserver.Format(versionless(own))))
	}
}
