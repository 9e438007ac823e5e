package acp_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd/internal/acp"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/agentd/internal/notapplied"
	"github.com/rein-ai/rein/protocol"
)

// command hands c to the adapter, failing if it does not read it.
func (p *peer) command(c protocol.Command) {
	p.t.Helper()
	select {
	case p.cmds <- c:
	case <-time.After(fakeserver.WaitTimeout):
		p.t.Fatalf("the adapter did not read the %s command", c.Type)
	}
}

// inputClosed waits until the adapter closed the agent's stdin, failing
// on anything it sends first.
func (p *peer) inputClosed() {
	p.t.Helper()
	select {
	case m, ok := <-p.from:
		if ok {
			p.t.Fatalf("adapter sent %s, want the agent's input closed", m)
		}
	case <-time.After(fakeserver.WaitTimeout):
		p.t.Fatal("the adapter did not close the agent's input")
	}
}

// served waits for Serve's result once the agent's output ended.
func (p *peer) served() error {
	p.t.Helper()
	p.out.Close()
	select {
	case err := <-p.done:
		return err
	case <-time.After(fakeserver.WaitTimeout):
		p.t.Fatal("Serve did not return after the agent's output ended")
	}
	return nil
}

func (p *peer) events() []protocol.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]protocol.Event(nil), p.evs...)
}

// A shutdown during the handshake closes the agent's input at once: the
// adapter used to read no command before the handshake was done, and a
// slow agent kept agentd waiting for the whole shutdown grace. A prompt
// read meanwhile is not started (its turn_started would count it as
// taken), whether the handshake then fails or the agent completes it.
func TestShutdownDuringHandshake(t *testing.T) {
	for _, tc := range []struct {
		name string
		// completes: the agent answers session/new, written before the
		// shutdown, after its input closed.
		completes bool
	}{
		{"agent exits unanswered", false},
		{"agent completes the handshake", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := launchPeer(t, acp.Options{})
			id, _ := p.expect("initialize")
			if tc.completes {
				p.reply(id, map[string]any{"protocolVersion": 1})
				id, _ = p.expect("session/new")
			}
			p.command(protocol.Command{ID: 1, Type: protocol.CommandPrompt, Text: "early"})
			p.command(protocol.Command{ID: 2, Type: protocol.CommandShutdown})
			p.inputClosed()
			if tc.completes {
				// Its answer was on its way as its input closed.
				p.reply(id, map[string]any{"sessionId": "s1"})
				p.wait("the adapter's agent_started", has(protocol.EventAgentStarted))
			}
			if err := p.served(); err != nil {
				t.Errorf("Serve = %v, want nil: the agent ended as asked", err)
			}
			if evs := p.events(); fakeserver.Has(evs, func(ev protocol.Event) bool {
				return ev.Type == protocol.EventTurnStarted || ev.Type == protocol.EventUserMessage
			}) {
				t.Errorf("the prompt read during the handshake was started after the shutdown:\n%s", fakeserver.Format(evs))
			}
		})
	}
}

// Commands read during the handshake: prompts and aborts are handled
// once the session is open, in order (an abort after a prompt aborts that
// prompt's turn, as when both come later); an answer is told not applied
// at once, since the agent has asked nothing yet.
func TestCommandsDuringHandshake(t *testing.T) {
	p := launchPeer(t, acp.Options{})
	id, _ := p.expect("initialize")
	p.command(protocol.Command{ID: 1, Type: protocol.CommandPermissionResponse, RequestID: "turn-0:perm-1", OptionID: "yes"})
	evs := p.wait("the answer told not applied", has(protocol.EventNotice))
	if n := evs[0]; n.NoticeCode != notapplied.Code || !strings.HasSuffix(n.Message, notapplied.NoSession) {
		t.Errorf("notice = %s, want %s ending %q", fakeserver.Format(evs[:1]), notapplied.Code, notapplied.NoSession)
	}
	p.command(protocol.Command{ID: 2, Type: protocol.CommandPrompt, Text: "early"})
	p.command(protocol.Command{ID: 3, Type: protocol.CommandAbort})
	p.reply(id, map[string]any{"protocolVersion": 1})
	id, _ = p.expect("session/new")
	p.reply(id, map[string]any{"sessionId": "s1"})
	pid, _ := p.expect("session/prompt")
	p.expect("session/cancel")
	p.reply(pid, map[string]any{"stopReason": "cancelled"})
	evs = p.wait("the turn's end", has(protocol.EventTurnCompleted))
	if end := evs[len(evs)-1]; end.TurnID != "turn-2" || end.StopReason != protocol.StopCancelled {
		t.Errorf("turn end = %s, want turn-2 cancelled", fakeserver.Format(evs[len(evs)-1:]))
	}
}

// A session/load that fails because agentd is stopping (the shutdown
// closed the agent's input, and the agent exited without answering) is
// not the agent's refusal to resume: no notice says the conversation
// could not be resumed and a new one starts, since none does, and the
// next run resumes it.
func TestShutdownDuringSessionLoadIsNoResumeFailure(t *testing.T) {
	var mu sync.Mutex
	var reported []string
	p := launchPeer(t, acp.Options{Resume: "old", Conversation: func(id string) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, id)
	}})
	id, _ := p.expect("initialize")
	p.reply(id, map[string]any{"protocolVersion": 1, "agentCapabilities": map[string]any{"loadSession": true}})
	p.expect("session/load")
	p.command(protocol.Command{ID: 1, Type: protocol.CommandShutdown})
	p.inputClosed()
	if err := p.served(); err != nil {
		t.Errorf("Serve = %v, want nil: the agent ended as asked", err)
	}
	if evs := p.events(); fakeserver.Has(evs, func(ev protocol.Event) bool { return ev.NoticeCode == acp.NoticeResumeFailed }) {
		t.Errorf("events:\n%s\nwant no %s notice: agentd stopped the agent during session/load", fakeserver.Format(evs), acp.NoticeResumeFailed)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) > 0 {
		t.Errorf("reported conversations %q, want none", reported)
	}
}
