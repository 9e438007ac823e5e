package agentd_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd"
	"github.com/rein-ai/rein/agentd/internal/acp"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

// acpAgent returns the ACP SDK's example agent (built by `make tools`,
// which exports REIN_ACP_AGENT), or skips.
func acpAgent(t *testing.T) string {
	t.Helper()
	p := os.Getenv("REIN_ACP_AGENT")
	if p == "" {
		t.Skip("REIN_ACP_AGENT is not set: run `make tools` at the repo root (or the tests through `make test`) to build the ACP example agent")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("REIN_ACP_AGENT=%s: %v (run `make tools`)", p, err)
	}
	return p
}

func TestACPExampleAgentTurn(t *testing.T) {
	bin := acpAgent(t)
	srv := fakeserver.New(t, "acp")
	dir := t.TempDir()
	start(t, srv, agentd.Options{Protocol: agentd.ProtocolACP, Command: []string{bin}, Dir: dir})
	waitStarted(t, srv, 1)
	srv.Prompt("fix the config")
	srv.Wait(t, "permission request", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, isType(protocol.EventPermissionRequested))
	})
	srv.Send(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "turn-1:perm-1", OptionID: "allow"})
	evs := srv.Wait(t, "the turn to end", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, isType(protocol.EventTurnCompleted))
	})

	got := fakeserver.Format(withoutStarted(withoutHeartbeats(evs)))
	want := `{"type":"turn_started","turnId":"turn-1","promptId":"prompt-1","source":"user"}
{"type":"user_message","id":"user-1","promptId":"prompt-1","text":"fix the config"}
{"type":"text_delta","id":"turn-1:text-1","delta":"ACP Go Example Agent — demo only (no AI model)."}
{"type":"text_delta","id":"turn-1:text-1","delta":"I'll help you with that. Let me start by reading some files to understand the current situation."}
{"type":"text_end","id":"turn-1:text-1","text":"ACP Go Example Agent — demo only (no AI model).I'll help you with that. Let me start by reading some files to understand the current situation."}
{"type":"tool_call_start","id":"turn-1:call_1","name":"read","kind":"read","title":"Reading project files","input":{"path":"/project/README.md"}}
{"type":"tool_call_update","id":"turn-1:call_1","status":"pending","locations":[{"path":"/project/README.md"}]}
{"type":"tool_call_update","id":"turn-1:call_1","content":[{"content":{"text":"# My Project\n\nThis is a sample project...","type":"text"},"type":"content"}]}
{"type":"tool_call_end","id":"turn-1:call_1","status":"completed","output":"# My Project\n\nThis is a sample project...","result":{"content":"# My Project\n\nThis is a sample project..."}}
{"type":"text_delta","id":"turn-1:text-2","delta":" Now I understand the project structure. I need to make some changes to improve it."}
{"type":"text_end","id":"turn-1:text-2","text":" Now I understand the project structure. I need to make some changes to improve it."}
{"type":"tool_call_start","id":"turn-1:call_2","name":"edit","kind":"edit","title":"Modifying critical configuration file","input":{"content":"{\"database\": {\"host\": \"new-host\"}}","path":"/project/config.json"}}
{"type":"tool_call_update","id":"turn-1:call_2","status":"pending","locations":[{"path":"/project/config.json"}]}
{"type":"permission_requested","id":"turn-1:perm-1","title":"Modifying critical configuration file","input":{"content":"{\"database\": {\"host\": \"new-host\"}}","path":"/home/user/project/config.json"},"toolCallId":"turn-1:call_2","options":[{"id":"allow","name":"Allow this change","kind":"allow_once"},{"id":"reject","name":"Skip this change","kind":"reject_once"}]}
{"type":"permission_resolved","id":"turn-1:perm-1","outcome":"selected","optionId":"allow"}
{"type":"tool_call_update","id":"turn-1:call_2","title":"Modifying critical configuration file"}
{"type":"tool_call_end","id":"turn-1:call_2","status":"completed","result":{"message":"Configuration updated","success":true}}
{"type":"text_delta","id":"turn-1:text-3","delta":" Perfect! I've successfully updated the configuration. The changes have been applied."}
{"type":"text_end","id":"turn-1:text-3","text":" Perfect! I've successfully updated the configuration. The changes have been applied."}
{"type":"turn_completed","turnId":"turn-1","stopReason":"end_turn"}
`
	if got != want {
		t.Errorf("ACP turn events:\n got:\n%s\nwant:\n%s", got, want)
	}
	st := evs[0]
	if st.Type != protocol.EventAgentStarted || st.Agent.Name != filepath.Base(bin) || st.Agent.Protocol != "acp" || st.Cwd != dir {
		t.Errorf("first event = %s, want agent_started for %s over acp in %s", fakeserver.Format(evs[:1]), filepath.Base(bin), dir)
	}
}

func TestACPAbortCancelsTurn(t *testing.T) {
	bin := acpAgent(t)
	srv := fakeserver.New(t, "acp")
	start(t, srv, agentd.Options{Protocol: agentd.ProtocolACP, Command: []string{bin}})
	waitStarted(t, srv, 1)
	srv.Prompt("go")
	srv.Wait(t, "the first tool call", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventToolCallStart)) })
	srv.Send(protocol.Command{Type: protocol.CommandAbort})
	evs := srv.Wait(t, "the cancelled turn", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventTurnCompleted)) })
	end := evs[len(evs)-1]
	if end.TurnID != "turn-1" || end.StopReason != protocol.StopCancelled {
		t.Errorf("turn end = %s, want turn-1 cancelled by the agent", fakeserver.Format([]protocol.Event{end}))
	}
	if fakeserver.Has(evs, isType(protocol.EventAgentExited)) {
		t.Errorf("the agent was killed although it honoured session/cancel")
	}
	// The session goes on: a second prompt runs to its permission request.
	srv.Prompt("again")
	srv.Wait(t, "second turn's permission request", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.ID == "turn-3:perm-1" })
	})
}

func withoutStarted(evs []protocol.Event) []protocol.Event {
	var out []protocol.Event
	for _, ev := range evs {
		if ev.Type != protocol.EventAgentStarted {
			out = append(out, ev)
		}
	}
	return out
}

// While an ACP agent is still in its handshake the session must read idle
// (prompts wait), not live: agentd reports the agent started as soon as
// its process runs.
func TestSlowHandshakeReportsAgentStarted(t *testing.T) {
	for _, proto := range []string{agentd.ProtocolACP, agentd.ProtocolCodex} {
		t.Run(proto, func(t *testing.T) {
			srv := fakeserver.New(t, "slow")
			start(t, srv, agentd.Options{Protocol: proto, Command: []string{os.Args[0]}, Env: append(os.Environ(), stubEnv+"=mute")})
			evs := srv.Wait(t, "agent_started", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventAgentStarted)) })
			if a := evs[0].Agent; evs[0].Type != protocol.EventAgentStarted || a == nil || a.Protocol != proto || a.Name != filepath.Base(os.Args[0]) {
				t.Errorf("first event = %s, want agentd's agent_started for the %s agent", fakeserver.Format(evs[:1]), proto)
			}
		})
	}
}

// acpScript is a scripted ACP agent: it answers the handshake, sends one
// text chunk for each session/prompt, and runs onPrompt and onCancel (shell
// lines, with $id the request's id and $prompt the running prompt's).
func acpScript(onPrompt, onCancel string) string {
	return `prompt=
while IFS= read -r line; do
  ` + reqID + `
  case $line in
  *'"method":"initialize"'*) echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"protocolVersion\":1,\"agentCapabilities\":{}}}" ;;
  *'"method":"session/new"'*) echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"sessionId\":\"s1\"}}" ;;
  *'"method":"session/prompt"'*) prompt=$id
    echo '{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"working"}}}}'
    ` + onPrompt + ` ;;
  *'"method":"session/cancel"'*) ` + onCancel + ` ;;
  esac
done
`
}

// TestACPAbortAnsweredWithError: ACP asks an agent to answer a cancelled
// prompt with stopReason cancelled, but some answer it with a JSON-RPC
// error. The user aborted the turn: it ends cancelled, as with the other
// adapters, and the agent's error is kept with it.
func TestACPAbortAnsweredWithError(t *testing.T) {
	agent := acpScript(":", `echo "{\"jsonrpc\":\"2.0\",\"id\":$prompt,\"error\":{\"code\":-32603,\"message\":\"Internal error\",\"data\":{\"details\":\"Operation aborted\"}}}"`)
	srv := fakeserver.New(t, "acp")
	start(t, srv, agentd.Options{Protocol: agentd.ProtocolACP, Command: []string{script(t, agent)}})
	waitStarted(t, srv, 1)
	srv.Prompt("go")
	srv.Wait(t, "the agent's text", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventTextDelta)) })
	srv.Send(protocol.Command{Type: protocol.CommandAbort})
	evs := srv.Wait(t, "the turn's end", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventTurnCompleted)) })
	end := evs[indexOf(evs, protocol.EventTurnCompleted)]
	if end.StopReason != protocol.StopCancelled || !strings.Contains(end.Error, "Operation aborted") {
		t.Errorf("turn end = %s, want cancelled, with the agent's error", fakeserver.Format([]protocol.Event{end}))
	}
}

// TestACPStopReasons: a stop reason ACP does not define is not read as a
// normal end without a word: the turn ends end_turn (Rein has nothing
// closer) with a warning notice naming what the agent said. A missing
// one reads end_turn.
func TestACPStopReasons(t *testing.T) {
	for _, tc := range []struct {
		name, result string
		notice       bool
	}{
		{"unknown", `{\"stopReason\":\"paused_for_review\"}`, true},
		{"missing", `{}`, false},
		{"known", `{\"stopReason\":\"max_tokens\"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agent := acpScript(`echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":`+tc.result+`}"`, ":")
			srv := fakeserver.New(t, "acp")
			start(t, srv, agentd.Options{Protocol: agentd.ProtocolACP, Command: []string{script(t, agent)}})
			waitStarted(t, srv, 1)
			srv.Prompt("go")
			evs := srv.Wait(t, "the turn's end", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventTurnCompleted)) })
			i := indexOf(evs, protocol.EventTurnCompleted)
			want := protocol.StopEndTurn
			if tc.name == "known" {
				want = protocol.StopMaxTokens
			}
			if evs[i].StopReason != want {
				t.Errorf("turn end = %s, want %s", fakeserver.Format(evs[i:i+1]), want)
			}
			var notice []protocol.Event
			for _, ev := range evs[:i] {
				if ev.Type == protocol.EventNotice {
					notice = append(notice, ev)
				}
			}
			switch {
			case tc.notice && (len(notice) != 1 || notice[0].Level != protocol.LevelWarning || notice[0].NoticeCode != acp.NoticeUnknownStopReason || !strings.Contains(notice[0].Message, `"paused_for_review"`)):
				t.Errorf("notices before the turn's end: %s, want one warning unknown_stop_reason naming paused_for_review", fakeserver.Format(notice))
			case !tc.notice && len(notice) > 0:
				t.Errorf("notices before the turn's end: %s, want none", fakeserver.Format(notice))
			}
		})
	}
}

// An answer handed to an agent's run while the agent is still in its
// handshake is not applied: it used to vanish when the agent died,
// counted as taken, while only the answers still queued in agentd were
// told. The ACP adapter now tells it at once (the agent has asked
// nothing yet), and a prompt it read meanwhile waits for the next agent,
// as the queued ones do.
func TestAnswerDuringTheHandshakeIsTold(t *testing.T) {
	dir := t.TempDir()
	release := newFIFO(t, dir)
	// The first run never answers initialize and dies when released; the
	// next one runs prompts.
	agent := `if [ ! -e "$MARK" ]; then touch "$MARK"; read x < "$RELEASE"; exit 3; fi
` + acpScript(`echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"stopReason\":\"end_turn\"}}"`, ":")
	srv := fakeserver.New(t, "acp")
	start(t, srv, agentd.Options{Protocol: agentd.ProtocolACP, Command: []string{script(t, agent)},
		Env:               append(os.Environ(), "MARK="+filepath.Join(dir, "mark"), "RELEASE="+release),
		HeartbeatInterval: 20 * time.Millisecond, // posts carry the cursor
	})
	waitStarted(t, srv, 1)
	answer := srv.Send(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "turn-1:perm-1", OptionID: "allow"})
	prompt := srv.Prompt("hello")
	// The answer counts as taken once agentd hands it to the run.
	srv.WaitState(t, "the answer handed over", func() bool {
		for _, r := range srv.PostRequests() {
			if r.Header.Get(protocol.HeaderCommandCursor) == strconv.FormatInt(answer, 10) {
				return true
			}
		}
		return false
	})
	releaseFIFO(t, release)
	want := fmt.Sprintf(`agentd: the answer to permission request "turn-1:perm-1" (command %d) was not given to the agent: `, answer)
	evs := srv.Wait(t, "the answer told not applied, and the prompt run by the next agent", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventNotice && ev.NoticeCode == agentd.NoticeAnswerNotApplied && strings.HasPrefix(ev.Message, want)
		}) && fakeserver.Has(evs, turnCompleted(fmt.Sprintf("turn-%d", prompt), protocol.StopEndTurn))
	})
	if fakeserver.Count(evs, protocol.EventAgentExited) != 1 {
		t.Errorf("want the first agent's exit:\n%s", fakeserver.Format(evs))
	}
}

// TestShutdownDuringACPHandshake: a shutdown while an ACP agent is still
// in its handshake (a slow CLI starting: the mute stub never answers
// initialize) closes the agent's input at once, as it does after the
// handshake. The adapter used to read no command before the handshake was
// done, so the agent was stopped only by the signals after
// --shutdown-grace, and every stop of a starting sandbox took the whole
// grace. A prompt the adapter read meanwhile is not taken: the next
// agentd on the state dir runs it.
func TestShutdownDuringACPHandshake(t *testing.T) {
	mute := append(os.Environ(), stubEnv+"=mute")
	// Longer than a stub needs to exit at its input's end on any machine:
	// an exit the grace's SIGTERM ends says so in agent_exited, which the
	// test reads; it does not time the stop.
	const grace = 20 * time.Second

	// exitedAsked checks that the agent ended on its own at its input's
	// end (the mute stub exits 0 then), not by agentd's signals.
	exitedAsked := func(t *testing.T, evs []protocol.Event) {
		t.Helper()
		i := indexOf(evs, protocol.EventAgentExited)
		if i < 0 {
			t.Fatalf("no agent_exited:\n%s", fakeserver.Format(evs))
		}
		if ev := evs[i]; ev.ExitStatus == nil || *ev.ExitStatus != 0 || ev.Signal != "" || ev.Error != "" {
			t.Errorf("agent_exited = %s, want the agent's own exit (code 0) at the end of its input", fakeserver.Format(evs[i:i+1]))
		}
	}

	t.Run("stop", func(t *testing.T) {
		srv := fakeserver.New(t, "acp")
		tr := newWatchWriter(`"initialize"`)
		d := start(t, srv, agentd.Options{Protocol: agentd.ProtocolACP, Command: []string{os.Args[0]}, Env: mute,
			Transcript: tr, ShutdownGrace: grace})
		waitStarted(t, srv, 1)
		tr.wait(t, "initialize sent to the agent")
		if err := d.stop(); err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		exitedAsked(t, srv.Events())
	})

	t.Run("prompt kept", func(t *testing.T) {
		state := t.TempDir()
		srv := fakeserver.New(t, "acp")
		tr := newWatchWriter(`"text":"while it starts"`)
		d := start(t, srv, agentd.Options{Protocol: agentd.ProtocolACP, Command: []string{os.Args[0]}, Env: mute,
			StateDir: state, Transcript: tr, ShutdownGrace: grace})
		waitStarted(t, srv, 1)
		srv.Prompt("while it starts")
		tr.wait(t, "the adapter to read the prompt")
		if err := d.stop(); err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		evs := srv.Events()
		exitedAsked(t, evs)
		prompted := func(ev protocol.Event) bool {
			return ev.Type == protocol.EventUserMessage && ev.Text == "while it starts"
		}
		if fakeserver.Has(evs, prompted) || fakeserver.Has(evs, isType(protocol.EventTurnStarted)) {
			t.Fatalf("events:\n%s\nthe prompt was started on an agent that never finished its handshake", fakeserver.Format(evs))
		}

		agent := acpScript(`echo "{\"jsonrpc\":\"2.0\",\"id\":$id,\"result\":{\"stopReason\":\"end_turn\"}}"`, ":")
		start(t, srv, agentd.Options{Protocol: agentd.ProtocolACP, Command: []string{script(t, agent)}, StateDir: state})
		srv.Wait(t, "the prompt run by the next agentd", func(evs []protocol.Event) bool { return fakeserver.Has(evs, prompted) })
	})
}
