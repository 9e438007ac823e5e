package agentd_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

// daemon is a running agentd under test.
type daemon struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// wait returns Run's result once it has returned.
func (d *daemon) wait() error {
	d.once.Do(func() {
		t := time.NewTimer(fakeserver.WaitTimeout)
		defer t.Stop()
		select {
		case d.err = <-d.done:
		case <-t.C:
			panic("agentd.Run did not return")
		}
	})
	return d.err
}

// stop cancels the daemon (as SIGTERM does) and returns Run's result.
func (d *daemon) stop() error {
	d.cancel()
	return d.wait()
}

// testLogger sends agentd's log to t.Log.
func testLogger(tb testing.TB) *slog.Logger {
	return fakeserver.Logger(tb, slog.LevelDebug)
}

// start runs agentd against srv with fast test timings.
func start(tb testing.TB, srv *fakeserver.Server, opts agentd.Options) *daemon {
	tb.Helper()
	opts.Server = srv.URL
	opts.Session = srv.Session
	if opts.Command == nil {
		opts.Command = []string{demoAgent}
	}
	if opts.Env == nil {
		opts.Env = append(os.Environ(), "DEMO_AGENT_DELAY=20ms")
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(tb)
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = time.Hour // tested with synctest in the uploader
	}
	if opts.ShutdownGrace == 0 {
		opts.ShutdownGrace = time.Second
	}
	if opts.RestartDelay == 0 {
		opts.RestartDelay = 50 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{cancel: cancel, done: make(chan error, 1)}
	go func() { d.done <- agentd.Run(ctx, opts) }()
	tb.Cleanup(func() { d.stop() })
	return d
}

func isType(t protocol.EventType) func(protocol.Event) bool {
	return func(ev protocol.Event) bool { return ev.Type == t }
}

func turnCompleted(turnID string, stop protocol.StopReason) func(protocol.Event) bool {
	return func(ev protocol.Event) bool {
		return ev.Type == protocol.EventTurnCompleted && ev.TurnID == turnID && ev.StopReason == stop
	}
}

// waitStarted waits for the n-th agent_started.
func waitStarted(tb testing.TB, srv *fakeserver.Server, n int) {
	tb.Helper()
	srv.Wait(tb, "agent_started", func(evs []protocol.Event) bool { return fakeserver.Count(evs, protocol.EventAgentStarted) >= n })
	srv.WaitState(tb, "an open command stream", func() bool { return srv.OpenStreams() > 0 })
}

// withoutHeartbeats drops heartbeat events, whose timing is not under test.
func withoutHeartbeats(evs []protocol.Event) []protocol.Event {
	var out []protocol.Event
	for _, ev := range evs {
		if ev.Type != protocol.EventHeartbeat {
			out = append(out, ev)
		}
	}
	return out
}

func TestPromptRoundTrip(t *testing.T) {
	srv := fakeserver.New(t, "s1")
	d := start(t, srv, agentd.Options{})
	waitStarted(t, srv, 1)
	srv.Prompt("hello there")
	srv.Wait(t, "turn t1 to end", func(evs []protocol.Event) bool { return fakeserver.Has(evs, turnCompleted("t1", protocol.StopEndTurn)) })
	if err := d.stop(); err != nil {
		t.Fatalf("Run after shutdown = %v, want nil", err)
	}
	evs := srv.Events()

	// Envelope: agentSeq strictly increasing from 1, ts set, one instance.
	for i, ev := range evs {
		if ev.AgentSeq != int64(i+1) {
			t.Fatalf("event %d (%s) agentSeq = %d, want %d", i, ev.Type, ev.AgentSeq, i+1)
		}
		if ev.Ts == 0 {
			t.Errorf("event %d (%s) has no ts", i, ev.Type)
		}
	}
	inst := map[string]bool{}
	for _, r := range append(srv.PostRequests(), srv.StreamRequests()...) {
		inst[r.Header.Get(protocol.HeaderInstance)] = true
		if r.Header.Get("Authorization") != "" {
			t.Errorf("Authorization sent without a token")
		}
	}
	if len(inst) != 1 || inst[""] {
		t.Errorf("Rein-Instance values = %v, want one non-empty id", inst)
	}

	cwd, _ := os.Getwd()
	want := `{"type":"agent_started","agent":{"name":"demo-agent","version":"1.0.0","protocol":"native"},"cwd":"` + cwd + `"}
{"type":"turn_started","turnId":"t1","promptId":"p1","source":"user"}
{"type":"user_message","id":"u1","promptId":"p1","text":"hello there"}
{"type":"text_delta","id":"m1","delta":"You "}
{"type":"text_delta","id":"m1","delta":"said: "}
{"type":"text_delta","id":"m1","delta":"hello "}
{"type":"text_delta","id":"m1","delta":"there"}
{"type":"text_end","id":"m1","text":"You said: hello there"}
{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}
{"type":"agent_exited","code":0}
`
	got := fakeserver.Format(withoutHeartbeats(evs))
	// agentd may re-post agent_started once the stream (re)connects after
	// the agent started; that duplicate is part of the contract.
	got = strings.Replace(got, strings.SplitN(want, "\n", 2)[0]+"\n", "", 1)
	got = strings.ReplaceAll(got, strings.SplitN(want, "\n", 2)[0]+"\n", "")
	want = strings.SplitN(want, "\n", 2)[1]
	if got != want {
		t.Errorf("events:\n got:\n%s\nwant:\n%s", got, want)
	}
}

// A prompt the server accepts reaches the agent whatever its text: 256
// KiB of '<' is 1.5 MiB once JSON has escaped it, which agentd's command
// stream once refused as too long on every reconnection, so neither it nor
// any later command was delivered.
func TestPromptOfEscapedTextIsDelivered(t *testing.T) {
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{})
	waitStarted(t, srv, 1)
	srv.Prompt(strings.Repeat("<", protocol.MaxTextLen))
	srv.Prompt("hello there")
	srv.Wait(t, "turns t1 and t2 to end", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, turnCompleted("t1", protocol.StopEndTurn)) && fakeserver.Has(evs, turnCompleted("t2", protocol.StopEndTurn))
	})
	if evs := srv.Events(); !fakeserver.Has(evs, func(ev protocol.Event) bool {
		return ev.Type == protocol.EventUserMessage && ev.Text == "hello there"
	}) {
		t.Errorf("no user_message for the second prompt:\n%s", fakeserver.Format(withoutHeartbeats(evs)))
	}
}

func TestTokenSentAsBearer(t *testing.T) {
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{Token: "sekrit"})
	waitStarted(t, srv, 1)
	srv.WaitState(t, "a POST", func() bool { return len(srv.PostRequests()) > 0 })
	for _, r := range append(srv.PostRequests(), srv.StreamRequests()...) {
		if got := r.Header.Get("Authorization"); got != "Bearer sekrit" {
			t.Errorf("%s %s Authorization = %q", r.Method, r.URL.Path, got)
		}
		if strings.Contains(r.URL.String(), "sekrit") {
			t.Errorf("token in URL %s", r.URL)
		}
	}
}

func TestCrashedAgentIsRestarted(t *testing.T) {
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{})
	waitStarted(t, srv, 1)
	srv.Prompt("exit: 3")
	evs := srv.Wait(t, "restart after crash", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, isType(protocol.EventAgentExited)) &&
			fakeserver.Count(evs[indexOf(evs, protocol.EventAgentExited):], protocol.EventAgentStarted) > 0
	})
	i := indexOf(evs, protocol.EventAgentExited)
	if ex := evs[i]; ex.ExitStatus == nil || *ex.ExitStatus != 3 || ex.Signal != "" {
		t.Errorf("agent_exited = %s, want code 3", fakeserver.Format(evs[i:i+1]))
	}
	// The turn is closed just before agent_exited.
	end := evs[i-1]
	if end.Type != protocol.EventTurnCompleted || end.TurnID != "t1" || end.StopReason != protocol.StopError || end.Error == "" {
		t.Errorf("before agent_exited: %s, want turn_completed t1 error", fakeserver.Format(evs[i-1:i]))
	}
	// The new agent works (its turn ids start over).
	srv.Prompt("again")
	srv.Wait(t, "second agent's turn", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs[i:], turnCompleted("t1", protocol.StopEndTurn))
	})
}

func indexOf(evs []protocol.Event, t protocol.EventType) int {
	for i, ev := range evs {
		if ev.Type == t {
			return i
		}
	}
	return len(evs)
}

func TestAbortHonouredByAgent(t *testing.T) {
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{AbortGrace: time.Minute})
	waitStarted(t, srv, 1)
	srv.Prompt("slow: 1000")
	srv.Wait(t, "streaming", func(evs []protocol.Event) bool { return fakeserver.Count(evs, protocol.EventTextDelta) >= 2 })
	srv.Send(protocol.Command{Type: protocol.CommandAbort})
	evs := srv.Wait(t, "cancelled turn", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, turnCompleted("t1", protocol.StopCancelled))
	})
	if fakeserver.Has(evs, isType(protocol.EventAgentExited)) {
		t.Errorf("the agent was stopped although it honoured the abort:\n%s", fakeserver.Format(evs))
	}
	if n := fakeserver.Count(evs, protocol.EventTurnCompleted); n != 1 {
		t.Errorf("%d turn_completed, want 1", n)
	}
}

func TestAbortEscalatesToKill(t *testing.T) {
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{
		Command: []string{os.Args[0]},
		Env:     append(os.Environ(), stubEnv+"=stubborn"),
		// The stub prints no agent_started: do not wait long for one.
		AgentStartWait: 50 * time.Millisecond,
		AbortGrace:     100 * time.Millisecond,
		KillStep:       100 * time.Millisecond,
	})
	waitStarted(t, srv, 1)
	srv.Prompt("work")
	srv.Wait(t, "turn start", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventTurnStarted)) })
	srv.Send(protocol.Command{Type: protocol.CommandAbort})
	evs := srv.Wait(t, "agentd to end the turn and report the exit", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, turnCompleted("s1", protocol.StopCancelled)) && fakeserver.Has(evs, isType(protocol.EventAgentExited))
	})
	var seq []string
	for _, ev := range evs {
		switch ev.Type {
		case protocol.EventNotice:
			seq = append(seq, ev.Message)
		case protocol.EventAgentExited:
			seq = append(seq, "exited "+ev.Signal)
		case protocol.EventTurnCompleted:
			seq = append(seq, "turn_completed "+string(ev.StopReason))
		}
	}
	// The turn ends before agent_exited, which would close it as failed.
	want := []string{"got interrupt", "got terminated", "turn_completed cancelled", "exited SIGKILL"}
	if strings.Join(seq, ", ") != strings.Join(want, ", ") {
		t.Errorf("escalation = %q, want %q", seq, want)
	}
	// And the agent is restarted.
	waitStarted(t, srv, 2+fakeserver.Count(evs, protocol.EventAgentStarted)-1)
}

func TestShutdownStopsStubbornAgentAndFlushes(t *testing.T) {
	srv := fakeserver.New(t, "s1")
	d := start(t, srv, agentd.Options{
		Command: []string{os.Args[0]},
		Env:     append(os.Environ(), stubEnv+"=stubborn"),
		// The stub prints no agent_started: do not wait long for one.
		AgentStartWait: 50 * time.Millisecond,
		ShutdownGrace:  100 * time.Millisecond,
		KillStep:       100 * time.Millisecond,
	})
	waitStarted(t, srv, 1)
	srv.Prompt("work")
	srv.Wait(t, "turn start", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventTurnStarted)) })
	if err := d.stop(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	// Everything was flushed before Run returned: no waiting here.
	evs := srv.Events()
	n := len(evs)
	// The turn ends first: agent_exited with the turn open would close
	// it as failed.
	if n < 3 || evs[n-1].Type != protocol.EventAgentExited || evs[n-1].Signal != "SIGKILL" ||
		evs[n-2].Type != protocol.EventTurnCompleted || evs[n-2].StopReason != protocol.StopCancelled {
		t.Errorf("last events:\n%s\nwant turn_completed cancelled then agent_exited SIGKILL", fakeserver.Format(evs))
	}
}

func TestInvalidAgentLinesBecomeNotices(t *testing.T) {
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{
		Command:        []string{os.Args[0]},
		Env:            append(os.Environ(), stubEnv+"=invalid"),
		AgentStartWait: 50 * time.Millisecond,
	})
	evs := srv.Wait(t, "the valid notice", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.Message == "still here" })
	})
	var warnings []string
	for _, ev := range evs {
		if ev.Type == protocol.EventNotice && ev.Level == protocol.LevelWarning {
			warnings = append(warnings, ev.NoticeCode+": "+ev.Message)
		}
	}
	if len(warnings) != 2 || !strings.Contains(warnings[1], "delta") {
		t.Errorf("warnings = %q, want two invalid_agent_event notices, the second naming the field", warnings)
	}
	// The stub printed no agent_started: agentd reported one itself, first.
	if evs[0].Type != protocol.EventAgentStarted || evs[0].Agent.Protocol != "native" || evs[0].Agent.Name == "" {
		t.Errorf("first event = %s, want agentd's agent_started", fakeserver.Format(evs[:1]))
	}
}

func TestReconnectResumesWithoutDuplicates(t *testing.T) {
	srv := fakeserver.New(t, "s1")
	srv.Redeliver = 2 // every resume replays the last two commands again
	start(t, srv, agentd.Options{})
	waitStarted(t, srv, 1)
	srv.Prompt("one")
	srv.Prompt("two")
	srv.Wait(t, "two turns", func(evs []protocol.Event) bool { return fakeserver.Has(evs, turnCompleted("t2", protocol.StopEndTurn)) })
	startedBefore := fakeserver.Count(srv.Events(), protocol.EventAgentStarted)

	srv.DropStreams()
	srv.WaitState(t, "a resumed stream", func() bool { return len(srv.StreamRequests()) >= 2 && srv.OpenStreams() > 0 })
	srv.Prompt("three")
	evs := srv.Wait(t, "third turn", func(evs []protocol.Event) bool { return fakeserver.Has(evs, turnCompleted("t3", protocol.StopEndTurn)) })

	if got := fakeserver.Count(evs, protocol.EventTurnStarted); got != 3 {
		t.Errorf("%d turns, want 3 (redelivered commands must not run again):\n%s", got, fakeserver.Format(evs))
	}
	reqs := srv.StreamRequests()
	if got := reqs[1].Header.Get("Last-Event-ID"); got != "2" {
		t.Errorf("resume Last-Event-ID = %q, want 2", got)
	}
	if got := reqs[0].Header.Get("Last-Event-ID"); got != "" {
		t.Errorf("first connection Last-Event-ID = %q, want none", got)
	}
	if reqs[0].Header.Get(protocol.HeaderInstance) != reqs[1].Header.Get(protocol.HeaderInstance) {
		t.Errorf("Rein-Instance changed across reconnects")
	}
	if got := fakeserver.Count(evs, protocol.EventAgentStarted); got <= startedBefore {
		t.Errorf("agent_started not re-posted after the reconnect")
	}
}

func TestSessionDeletedIsFinal(t *testing.T) {
	srv := fakeserver.New(t, "gone")
	d := start(t, srv, agentd.Options{})
	waitStarted(t, srv, 1)
	srv.Delete()
	err := d.wait()
	if protocol.CodeOf(err) != protocol.CodeNotFound || !strings.Contains(err.Error(), "session gone was deleted") {
		t.Fatalf("Run = %v, want not_found saying the session was deleted", err)
	}
}

func TestSupersededIsFinal(t *testing.T) {
	srv := fakeserver.New(t, "s1")
	d := start(t, srv, agentd.Options{})
	waitStarted(t, srv, 1)
	srv.Supersede()
	srv.Prompt("hello") // nothing reaches this agentd: it no longer owns the stream
	// The stale agentd's next POST (a re-posted agent_started after its
	// reconnect, or a heartbeat) is refused.
	err := d.wait()
	if !errors.Is(err, protocol.ErrSuperseded) || !strings.Contains(err.Error(), "another agentd took over session s1") {
		t.Fatalf("Run = %v, want superseded", err)
	}
}

func TestUnauthorizedStreamIsFinal(t *testing.T) {
	srv := fakeserver.New(t, "s1")
	srv.StreamFault = func(int) int { return 401 }
	d := start(t, srv, agentd.Options{Token: "wrong"})
	err := d.wait()
	if protocol.CodeOf(err) != protocol.CodeUnauthorized {
		t.Fatalf("Run = %v, want unauthorized", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error leaks the token: %v", err)
	}
}

// A sandbox whose token was rotated: the server ends its command stream,
// and the reconnect is refused with 401, which is final. Neither the error
// nor any log line carries the token.
func TestRotatedTokenIsFinalAndNeverLogged(t *testing.T) {
	const token = "sandbox-token-that-must-not-leak"
	for _, status := range []int{401, 403} {
		srv := fakeserver.New(t, "s1")
		srv.StreamFault = func(attempt int) int {
			if attempt == 1 {
				return 0
			}
			return status
		}
		var logs fakeserver.Buffer
		d := start(t, srv, agentd.Options{Token: token, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		waitStarted(t, srv, 1)
		srv.DropStreams()
		err := d.wait()
		if got := protocol.CodeOf(err); got != map[int]protocol.Code{401: protocol.CodeUnauthorized, 403: protocol.CodeForbidden}[status] {
			t.Fatalf("%d: Run = %v", status, err)
		}
		if !strings.Contains(err.Error(), "the server refused the token for session s1") {
			t.Errorf("%d: exit message %q does not say the token was refused", status, err)
		}
		if strings.Contains(err.Error(), token) || strings.Contains(logs.String(), token) {
			t.Errorf("%d: the token leaked: err %v\nlogs:\n%s", status, err, logs.String())
		}
		if !strings.Contains(logs.String(), "command stream connected") {
			t.Errorf("%d: the log capture saw nothing: %s", status, logs.String())
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts agentd.Options
		want string
	}{
		{"no server", agentd.Options{Session: "s", Command: []string{"true"}}, "missing server URL"},
		{"no session", agentd.Options{Server: "http://x", Command: []string{"true"}}, "missing session id"},
		{"no command", agentd.Options{Server: "http://x", Session: "s"}, "missing agent command"},
		{"bad session", agentd.Options{Server: "http://x", Session: "a/b", Command: []string{"true"}}, "session id"},
		{"credentials in URL", agentd.Options{Server: "http://u:p@x", Session: "s", Command: []string{"true"}}, "must not carry credentials"},
		{"bad protocol", agentd.Options{Server: "http://x", Session: "s", Command: []string{"true"}, Protocol: "x"}, "unknown protocol"},
		{"missing binary", agentd.Options{Server: "http://x", Session: "s", Command: []string{"/nonexistent/agent"}}, "agent command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := agentd.Run(context.Background(), tc.opts)
			if !errors.Is(err, agentd.ErrUsage) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run = %v, want usage error containing %q", err, tc.want)
			}
		})
	}
}

// A token no HTTP header can carry (a newline inside, as a token pasted
// from two lines has) is a usage error: Go's client refuses every request
// before sending it, which agentd took for a network failure and retried
// forever. The refusal never shows the token.
func TestOptionsValidationRefusesATokenNoHeaderCarries(t *testing.T) {
	for _, tok := range []string{"first-half\nsecond-half", "ends-in-cr\r", "tab\tinside", "del\x7f"} {
		o := agentd.Options{Server: "http://x", Session: "s", Command: []string{"true"}, Protocol: agentd.ProtocolNative, Token: tok}
		err := o.Validate()
		if !errors.Is(err, agentd.ErrUsage) || !strings.Contains(err.Error(), "control character") {
			t.Errorf("Validate with token %q = %v, want a usage error naming a control character", tok, err)
			continue
		}
		if strings.Contains(err.Error(), "half") || strings.Contains(err.Error(), "inside") {
			t.Errorf("the refusal shows the token: %v", err)
		}
	}
	// A file that is not the token (70 KiB: every request with it got
	// 431 from the server, retried forever).
	long := agentd.Options{Server: "http://x", Session: "s", Command: []string{"true"}, Protocol: agentd.ProtocolNative, Token: strings.Repeat("k", 70<<10)}
	if err := long.Validate(); !errors.Is(err, agentd.ErrUsage) || !strings.Contains(err.Error(), "the token is 71680 bytes") {
		t.Errorf("Validate with a 70 KiB token = %v, want a usage error naming its length", err)
	}
	ok := agentd.Options{Server: "http://x", Session: "s", Command: []string{"true"}, Protocol: agentd.ProtocolNative, Token: "a token with spaces and é"}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate refused a token a header can carry: %v", err)
	}
}

// The agent runs whatever its model or a prompt tells it: none of Rein's
// credentials in agentd's environment may reach it. The sandbox token is
// agentd's own; the client token (REIN_API_TOKEN, REIN_API_TOKEN_FILE, as
// the rein CLI reads it; exported in the shell that starts agentd by
// `make demo` and the README's steps) would let the agent answer its own
// permission requests, and the stream ticket key forge tickets to every
// session's transcript.
func TestAgentEnvironmentHoldsNoCredential(t *testing.T) {
	secrets := map[string]string{
		"REIN_TOKEN":                  "sandbox-token-value",
		"REIN_TOKEN_FILE":             "/run/secret/sandbox-token-file",
		"REIN_API_TOKEN":              "client-token-value",
		"REIN_API_TOKEN_FILE":         "/run/secret/client-token-file",
		"REIN_STREAM_TICKET_KEY_FILE": "/run/secret/ticket-key-file",
	}
	env := append(os.Environ(), "DEMO_AGENT_DELAY=1ms", "REIN_SESSION_ID=not-this-one")
	for k, v := range secrets {
		env = append(env, k+"="+v)
	}
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{Token: "sandbox-token-value", Env: env})
	waitStarted(t, srv, 1)
	srv.Prompt("run: env")
	srv.Wait(t, "turn t1 to end", func(evs []protocol.Event) bool { return fakeserver.Has(evs, turnCompleted("t1", protocol.StopEndTurn)) })
	out := fakeserver.Format(srv.Events())
	if !strings.Contains(out, "REIN_SESSION_ID=s1") || strings.Contains(out, "not-this-one") {
		t.Fatalf("the agent's environment does not hold REIN_SESSION_ID=s1 alone; events:\n%s", out)
	}
	for k, v := range secrets {
		if strings.Contains(out, k+"=") || strings.Contains(out, v) {
			t.Errorf("%s reached the agent's environment", k)
		}
	}
}

// An answer that reaches agentd while no agent runs (it exited, and the
// next one waits out the restart delay) cannot be given to anyone: the
// request it answers ended with the agent. The transcript says so, as
// for any answer agentd does not hand over (docs/PROTOCOL.md), rather
// than the answer vanishing into agentd's log.
func TestAnswerWhileNoAgentRunsIsTold(t *testing.T) {
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{RestartDelay: time.Minute, RestartDelayMax: time.Minute})
	waitStarted(t, srv, 1)
	srv.Prompt("exit: 3")
	srv.Wait(t, "the agent's exit", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventAgentExited)) })
	id := srv.Send(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "perm-1", OptionID: "allow"})
	evs := srv.Wait(t, "the answer's notice", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventNotice && ev.NoticeCode == agentd.NoticeAnswerNotApplied
		})
	})
	ev := evs[len(evs)-1]
	if want := fmt.Sprintf(`agentd: the answer to permission request "perm-1" (command %d) was not given to the agent: the agent is not running`, id); !strings.HasPrefix(ev.Message, want) {
		t.Errorf("notice %q; want it to start %q", ev.Message, want)
	}
}

// An answer that comes after an abort of its request's turn cannot take
// effect: the agent cancels every request of the turn as it takes the
// abort, before the answer, which it then drops as answering nothing.
// agentd checked the answer as it handed it over, while the agent had
// not yet said so, so the answer vanished: taken, acknowledged, and
// not a word of it in the transcript. The transcript says so, as for
// any answer agentd does not hand over (docs/PROTOCOL.md).
func TestAnswerAfterAbortIsTold(t *testing.T) {
	srv := fakeserver.New(t, "s1")
	start(t, srv, agentd.Options{AbortGrace: time.Minute})
	waitStarted(t, srv, 1)
	srv.Prompt("ask: rm -rf build")
	evs := srv.Wait(t, "the request", func(evs []protocol.Event) bool { return fakeserver.Has(evs, isType(protocol.EventPermissionRequested)) })
	var asked protocol.Event
	for _, ev := range evs {
		if ev.Type == protocol.EventPermissionRequested {
			asked = ev
		}
	}
	instance := srv.StreamRequests()[0].Header.Get(protocol.HeaderInstance)
	srv.Send(protocol.Command{Type: protocol.CommandAbort})
	id := srv.Send(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: asked.ID, OptionID: "allow",
		RequestInstance: instance, RequestAgentSeq: asked.AgentSeq})
	evs = srv.Wait(t, "cancelled turn", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, turnCompleted("t1", protocol.StopCancelled))
	})
	want := fmt.Sprintf(`agentd: the answer to permission request %q (command %d) was not given to the agent: `, asked.ID, id)
	if !fakeserver.Has(evs, func(ev protocol.Event) bool {
		return ev.Type == protocol.EventNotice && ev.NoticeCode == agentd.NoticeAnswerNotApplied && strings.HasPrefix(ev.Message, want)
	}) {
		t.Fatalf("no notice says the answer after the abort was not given to the agent:\n%s", fakeserver.Format(evs))
	}
	for _, ev := range evs {
		if ev.Type == protocol.EventPermissionResolved && ev.Outcome != protocol.OutcomeCancelled {
			t.Errorf("the request was resolved %s %s after the abort; want cancelled", ev.Outcome, ev.OptionID)
		}
	}
}
