package agentd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rein-ai/rein/agentd"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

// script writes an executable shell script into a temp dir.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// notices are the messages of the notices in evs, in order.
func notices(evs []protocol.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Type == protocol.EventNotice {
			out = append(out, ev.Message)
		}
	}
	return out
}

// TestNativeConversationResumes: a native agent reports its conversation
// in agent_started; the agent restarted after a crash, and the agent of
// the next agentd on the same state dir, get it in REIN_CONVERSATION_ID.
func TestNativeConversationResumes(t *testing.T) {
	bin := script(t, `conv=${REIN_CONVERSATION_ID:-new-$$}
echo "{\"type\":\"agent_started\",\"agent\":{\"name\":\"conv\",\"protocol\":\"native\"},\"conversationId\":\"$conv\"}"
echo "{\"type\":\"notice\",\"level\":\"info\",\"message\":\"resume=${REIN_CONVERSATION_ID}\"}"
read line
exit 3
`)
	state := t.TempDir()
	srv := fakeserver.New(t, "s1")
	d := start(t, srv, agentd.Options{StateDir: state, Command: []string{bin}})
	srv.Wait(t, "the first agent's notice", func(evs []protocol.Event) bool { return len(notices(evs)) >= 1 })
	waitStarted(t, srv, 1)
	srv.Prompt("crash")
	evs := srv.Wait(t, "the restarted agent's notice", func(evs []protocol.Event) bool { return len(notices(evs)) >= 2 })
	first := notices(evs)
	if first[0] != "resume=" || !strings.HasPrefix(first[1], "resume=new-") {
		t.Fatalf("notices %q; want a new conversation, then it resumed after the crash", first)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	start(t, srv, agentd.Options{StateDir: state, Command: []string{bin}})
	evs = srv.Wait(t, "the next agentd's agent's notice", func(evs []protocol.Event) bool { return len(notices(evs)) >= 3 })
	if got := notices(evs)[2]; got != first[1] {
		t.Errorf("after an agentd restart: %q; want %q", got, first[1])
	}
}

// TestClaudeResumeAndFallback: agentd learns Claude Code's session id
// from its init message and restarts it with --resume <id>. A resumed
// CLI that fails at once (no such session) makes the next start a new
// conversation rather than failing the same way forever.
func TestClaudeResumeAndFallback(t *testing.T) {
	argsFile := filepath.Join(t.TempDir(), "args")
	// The init message's model carries the CLI's arguments, so the test
	// sees each run's command line in its agent_started.
	bin := script(t, `echo "$*" >> "`+argsFile+`"
case "$*" in
*--resume*) if [ -e "`+argsFile+`.refuse" ]; then echo "No conversation found" >&2; exit 1; fi ;;
esac
echo "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"sess-1\",\"cwd\":\"/\",\"model\":\"$*\"}"
read line
exit 3
`)
	// runs are the command lines of the runs that started, in order.
	// agentd re-posts the running agent's agent_started when its command
	// stream (re)connects, and that can land after the init message: a
	// repeat of the previous line is the same run.
	runs := func(evs []protocol.Event) []string {
		var out []string
		for _, ev := range evs {
			if ev.Type != protocol.EventAgentStarted || ev.Model == "" {
				continue
			}
			if len(out) > 0 && out[len(out)-1] == ev.Model {
				continue
			}
			out = append(out, ev.Model)
		}
		return out
	}
	state := t.TempDir()
	srv := fakeserver.New(t, "s1")
	d := start(t, srv, agentd.Options{StateDir: state, Protocol: agentd.ProtocolClaude, Command: []string{bin}})
	srv.Wait(t, "the first run", func(evs []protocol.Event) bool { return len(runs(evs)) >= 1 })
	waitStarted(t, srv, 1)
	srv.Prompt("crash")
	evs := srv.Wait(t, "a restarted CLI", func(evs []protocol.Event) bool { return len(runs(evs)) >= 2 })
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	r := runs(evs)
	if strings.Contains(r[0], "--resume") || !strings.HasPrefix(r[1], "--resume sess-1 ") {
		t.Fatalf("argv of the runs %q; want a new session, then --resume sess-1", r)
	}

	// The next agentd resumes it too, but the CLI no longer has it.
	if err := os.WriteFile(argsFile+".refuse", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, srv, agentd.Options{StateDir: state, Protocol: agentd.ProtocolClaude, Command: []string{bin}})
	evs = srv.Wait(t, "a new conversation after the failed resume", func(evs []protocol.Event) bool { return len(runs(evs)) >= 3 })
	b, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	a := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(a) != 4 || !strings.HasPrefix(a[2], "--resume sess-1 ") || strings.Contains(runs(evs)[2], "--resume") {
		t.Errorf("argv of the runs %q (started: %q); want --resume sess-1 refused, then a new session", a, runs(evs))
	}
}
