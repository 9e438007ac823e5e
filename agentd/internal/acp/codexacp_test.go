package acp_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rein-ai/rein/agentd/internal/fakemodel"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

// codexACPMode is the --acp-mode codex-acp runs with: its default mode
// ("agent", Codex's automatic review) never asks the user;
// "workspace-write" asks before a command leaves the workspace.
const codexACPMode = "workspace-write"

func init() {
	// The replay selects the mode the recording did.
	modes["codex-acp"] = codexACPMode
	modes["codex-acp-resume"] = codexACPMode
}

// codexACPEnv runs codex-acp against api only: its Codex (the one its
// package ships) reads CODEX_HOME/config.toml, which points at api, with
// every network feature off; its state is in a temporary HOME.
func codexACPEnv(t *testing.T, api *fakemodel.OpenAI, home string) []string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(home, "config.toml"), []byte(fakemodel.CodexConfig(api.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "OPENAI_") || strings.HasPrefix(k, "CODEX_") || k == "HOME" || strings.HasSuffix(strings.ToUpper(k), "_PROXY") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+filepath.Dir(home), "CODEX_HOME="+home, "REIN_TEST_CODEX_KEY=dummy", "NO_BROWSER=1",
		// Anything that tries the network goes to a closed port; the
		// fake model server on loopback is exempt.
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "ALL_PROXY=http://127.0.0.1:9",
		"NO_PROXY=127.0.0.1,localhost")
}

// codexACPBin is REIN_CODEX_ACP_BIN (set by `make test-agent-codex-acp`),
// or the test skips.
func codexACPBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("REIN_CODEX_ACP_BIN")
	if bin == "" {
		t.Skip("REIN_CODEX_ACP_BIN is not set: run `make test-agent-codex-acp` (the replay covers the adapter without the CLI)")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("REIN_CODEX_ACP_BIN=%s: %v (run `make test-agent-codex-acp`)", bin, err)
	}
	return bin
}

// TestCodexACPMatrix runs @agentclientprotocol/codex-acp through agentd
// against the fake OpenAI Responses API, row by row, in mode
// workspace-write.
func TestCodexACPMatrix(t *testing.T) {
	bin := codexACPBin(t)
	root := t.TempDir()
	home, outside := filepath.Join(root, "codex-home"), filepath.Join(root, "outside")
	for _, d := range []string{home, outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	api := fakemodel.NewOpenAI(t, outside)
	l := startLiveACP(t, bin, codexACPEnv(t, api, home), modes["codex-acp"])
	srv := l.srv
	defer func() {
		if t.Failed() {
			t.Logf("transcript:\n%s", l.transcript.String())
		}
	}()
	// turn returns the events from the turn's turn_started to its
	// turn_completed (turns run one at a time, so all are the turn's).
	turn := func(id int64) []protocol.Event {
		return fakeserver.TurnEvents(srv.Events(), "turn-"+strconv.FormatInt(id, 10))
	}
	requestFor := func(t *testing.T, prompt string) fakemodel.OpenAIRequest {
		t.Helper()
		var last fakemodel.OpenAIRequest
		found := false
		for _, r := range api.Requests() {
			if r.Prompt == prompt && !r.ToolOutput {
				last, found = r, true
			}
		}
		if !found {
			t.Fatalf("no model request for prompt %q: %+v", prompt, api.Requests())
		}
		return last
	}

	t.Run("text_reasoning_shell_output_usage", func(t *testing.T) {
		id := srv.Prompt("run")
		// The command stays in the workspace: no question expected, but
		// answer one if asked.
		end := waitEndAnswering(t, l, id, protocol.AllowOnce)
		evs := turn(id)
		// codex-acp reports only the output Codex streamed (its final
		// update has no aggregated output), and Codex does not stream
		// what the command printed before it reported it running: under
		// load "hello\n" is not shown. "bye\n" follows a pause.
		out, streamed := codexACPToolOutput(evs)
		if end.StopReason != protocol.StopEndTurn || countOf(evs, typed(protocol.EventReasoningDelta)) == 0 ||
			countOf(evs, typed(protocol.EventTextDelta)) == 0 || !strings.HasSuffix("hello\nbye\n", out) || !strings.HasSuffix(out, "bye\n") ||
			!strings.HasSuffix(out, streamed) ||
			countOf(evs, typed(protocol.EventUsageUpdated)) == 0 {
			t.Errorf("turn (tool output %q, streamed %q):\n%s", out, streamed, fakeserver.Format(evs))
		}
	})
	t.Run("approve", func(t *testing.T) {
		id := srv.Prompt("ask")
		l.answer(t, id, protocol.AllowOnce)
		end := l.waitEnd(t, id)
		if _, err := os.Stat(filepath.Join(outside, fakemodel.AskFile)); err != nil || end.StopReason != protocol.StopEndTurn {
			t.Errorf("the approved command did not run (%v):\n%s", err, fakeserver.Format(turn(id)))
		}
	})
	t.Run("deny", func(t *testing.T) {
		id := srv.Prompt("deny")
		l.answer(t, id, protocol.RejectOnce)
		l.waitEnd(t, id)
		evs := turn(id)
		if _, err := os.Stat(filepath.Join(outside, fakemodel.DenyFile)); err == nil || countOf(evs, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventToolCallEnd && ev.Status == protocol.ToolDenied
		}) != 1 {
			t.Errorf("the denied command ran or its tool is not denied:\n%s", fakeserver.Format(evs))
		}
	})
	t.Run("abort_mid_stream_then_a_turn", func(t *testing.T) {
		id := srv.Prompt("slow")
		srv.Wait(t, "the slow stream", func(evs []protocol.Event) bool {
			return fakeserver.Has(evs, func(ev protocol.Event) bool {
				return ev.Type == protocol.EventTextDelta && strings.Contains(ev.Delta, "w3")
			})
		})
		srv.Send(protocol.Command{Type: protocol.CommandAbort})
		if end := l.waitEnd(t, id); end.StopReason != protocol.StopCancelled {
			t.Errorf("aborted turn:\n%s", fakeserver.Format(turn(id)))
		}
		id = srv.Prompt("hello")
		if end := l.waitEnd(t, id); end.StopReason != protocol.StopEndTurn || countOf(srv.Events(), typed(protocol.EventAgentExited)) != 0 {
			t.Errorf("turn after the abort (or the agent exited):\n%s", fakeserver.Format(turn(id)))
		}
	})
	t.Run("two_turns_with_memory", func(t *testing.T) {
		id := srv.Prompt("recall")
		end := l.waitEnd(t, id)
		// The request of this turn carries the turn before it: its
		// prompt and the model's answer.
		req := requestFor(t, "recall")
		n := len(req.Prompts)
		if end.StopReason != protocol.StopEndTurn || n < 2 || req.Prompts[n-2] != "hello" || !slices.Contains(req.Answers, "Hello again.") {
			t.Errorf("the model did not get the earlier turn: %+v\n%s", req, fakeserver.Format(turn(id)))
		}
	})
	t.Run("abort_while_permission_pending", func(t *testing.T) {
		id := srv.Prompt("deny")
		srv.Wait(t, "a permission request", func(evs []protocol.Event) bool {
			return fakeserver.Has(evs, func(ev protocol.Event) bool {
				return ev.Type == protocol.EventPermissionRequested && strings.HasPrefix(ev.ID, "turn-"+strconv.FormatInt(id, 10)+":")
			})
		})
		srv.Send(protocol.Command{Type: protocol.CommandAbort})
		end := l.waitEnd(t, id)
		evs := turn(id)
		resolved := countOf(evs, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventPermissionResolved && ev.Outcome == protocol.OutcomeCancelled
		})
		if _, err := os.Stat(filepath.Join(outside, fakemodel.DenyFile)); err == nil || end.StopReason != protocol.StopCancelled || resolved != 1 {
			t.Errorf("the command ran, or the turn is not cancelled with its permission:\n%s", fakeserver.Format(evs))
		}
	})
	t.Run("back_to_back", func(t *testing.T) {
		a, b := srv.Prompt("hello"), srv.Prompt("recall")
		endA, endB := l.waitEnd(t, a), l.waitEnd(t, b)
		all := srv.Events()
		ia := slices.IndexFunc(all, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventTurnCompleted && ev.TurnID == endA.TurnID
		})
		ib := slices.IndexFunc(all, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventTurnStarted && ev.TurnID == endB.TurnID
		})
		want := "Earlier prompts: run | ask | deny | slow | hello | recall | deny | hello | recall"
		if endA.StopReason != protocol.StopEndTurn || endB.StopReason != protocol.StopEndTurn || ib < ia ||
			!fakeserver.Has(turn(b), func(ev protocol.Event) bool { return ev.Type == protocol.EventTextEnd && ev.Text == want }) {
			t.Errorf("back to back (want the second answer %q):\n%s\n%s", want, fakeserver.Format(turn(a)), fakeserver.Format(turn(b)))
		}
	})
	t.Run("abort_mid_tool", func(t *testing.T) {
		// The turn ends and the command's process is gone.
		id := srv.Prompt("sleepy")
		pid := waitProcess(t, "sleep\x00"+api.SleepyArg()+"\x00")
		// Abort once Rein shows the command: Codex spawns it before it
		// reports it.
		srv.Wait(t, "the sleepy command to show", func(evs []protocol.Event) bool {
			return fakeserver.Has(evs, func(ev protocol.Event) bool {
				return ev.Type == protocol.EventToolCallStart && strings.HasPrefix(ev.ID, "turn-"+strconv.FormatInt(id, 10)+":")
			})
		})
		srv.Send(protocol.Command{Type: protocol.CommandAbort})
		if end := l.waitEnd(t, id); end.StopReason != protocol.StopCancelled {
			t.Errorf("aborted turn:\n%s", fakeserver.Format(turn(id)))
		}
		waitGone(t, pid)
	})
	l.stop()

	var evs []protocol.Event
	for _, ev := range srv.Events() {
		early := ev.Type == protocol.EventAgentStarted && ev.Agent != nil && ev.Agent.Version == ""
		if ev.Type != protocol.EventHeartbeat && ev.Type != protocol.EventAgentExited && !early {
			evs = append(evs, ev)
		}
	}
	t.Run("idle_after_each_turn", func(t *testing.T) {
		if err := fakeserver.TurnsEndInOrder(evs); err != nil {
			t.Errorf("%v:\n%s", err, fakeserver.Format(evs))
		}
	})
	if want := codexACPVersion(t, bin); len(evs) == 0 || evs[0].Agent == nil || evs[0].Agent.Version != want {
		t.Errorf("first event %s: want agent_started with version %q (codex-acp --version)", fakeserver.Format(evs[:min(1, len(evs))]), want)
	}
	if *record {
		r := strings.NewReplacer(l.dir, sandboxWork, home, "/sandbox/codex-home", outside, "/sandbox/outside", root, "/sandbox",
			api.SleepyArg(), fakemodel.SleepyArg)
		writeFile(t, "testdata/codex-acp.jsonl", r.Replace(l.transcript.String()))
		writeFile(t, "testdata/codex-acp.events.jsonl", r.Replace(fakeserver.Format(versionless(evs))))
	}
}

// codexACPToolOutput is the output of the turn's tool as Rein shows it
// once it ended (the end's output, else what streamed), and what
// streamed.
func codexACPToolOutput(evs []protocol.Event) (out, streamed string) {
	for _, ev := range evs {
		switch ev.Type {
		case protocol.EventToolOutputDelta:
			streamed += ev.Delta
		case protocol.EventToolCallEnd:
			out = ev.Output
		}
	}
	if out == "" {
		out = streamed
	}
	return out, streamed
}

// codexACPVersion is the version `codex-acp --version` prints.
func codexACPVersion(t *testing.T, bin string) string {
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

// TestCodexACPResume: the codex-acp of a restarted agentd (same state dir)
// loads the ACP session of the one before with session/load: the model
// gets the earlier prompt with the new one, and the history codex-acp
// replays while loading is not posted again.
func TestCodexACPResume(t *testing.T) {
	bin := codexACPBin(t)
	root := t.TempDir()
	home, outside, dir, state := filepath.Join(root, "codex-home"), filepath.Join(root, "outside"), filepath.Join(root, "work"), filepath.Join(root, "state")
	for _, d := range []string{home, outside, dir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	api := fakemodel.NewOpenAI(t, outside)
	env := codexACPEnv(t, api, home)
	srv := fakeserver.New(t, "acp-live")
	l := startLiveACPIn(t, srv, dir, state, bin, env, modes["codex-acp"])
	l.waitEnd(t, srv.Prompt("hello"))
	l.stop()
	texts := countOf(srv.Events(), typed(protocol.EventTextEnd))
	first := len(srv.Events())

	l = startLiveACPIn(t, srv, dir, state, bin, env, modes["codex-acp"])
	defer func() {
		if t.Failed() {
			t.Logf("transcript:\n%s", l.transcript.String())
		}
	}()
	id := srv.Prompt("recall")
	l.waitEnd(t, id)
	l.stop()
	evs := srv.Events()
	if countOf(evs, typed(protocol.EventNotice)) > 0 {
		t.Errorf("a notice (session not loaded?):\n%s", fakeserver.Format(evs))
	}
	want := "Earlier prompts: hello | recall"
	if !fakeserver.Has(l.turnEvents(id), func(ev protocol.Event) bool { return ev.Type == protocol.EventTextEnd && ev.Text == want }) {
		t.Errorf("the resumed agent did not send the earlier prompt (want %q):\n%s", want, fakeserver.Format(l.turnEvents(id)))
	}
	if n := countOf(evs, typed(protocol.EventTextEnd)); n != texts+1 {
		t.Errorf("%d text_end after the second run, want %d (the loaded history posted again?):\n%s", n, texts+1, fakeserver.Format(evs))
	}
	if *record {
		// The second run: session/load, the replayed history, a turn.
		var own []protocol.Event
		for _, ev := range evs[first:] {
			early := ev.Type == protocol.EventAgentStarted && ev.Agent != nil && ev.Agent.Version == ""
			if ev.Type != protocol.EventHeartbeat && ev.Type != protocol.EventAgentExited && !early {
				own = append(own, ev)
			}
		}
		r := strings.NewReplacer(dir, sandboxWork, home, "/sandbox/codex-home", outside, "/sandbox/outside", root, "/sandbox")
		writeFile(t, "testdata/codex-acp-resume.jsonl", r.Replace(l.transcript.String()))
		writeFile(t, "testdata/codex-acp-resume.events.jsonl", r.Replace(fakeserver.Format(versionless(own))))
	}
}
