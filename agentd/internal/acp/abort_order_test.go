package acp_test

import (
	"testing"

	"github.com/rein-ai/rein/agentd/internal/acp"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

// An abort right behind its prompt is sent after the prompt's request:
// the SDK writes session/prompt from the prompt's own goroutine, and a
// session/cancel written first found no prompt to cancel, so the agent
// ran the aborted turn on (and agentd's abort escalation then signalled
// it). A few rounds: the order the race gave was not always wrong.
func TestAbortRightAfterPromptFollowsIt(t *testing.T) {
	for range 10 {
		p := startPeerWith(t, acp.Options{})
		p.cmds <- protocol.Command{ID: 1, Type: protocol.CommandPrompt, Text: "go"}
		p.cmds <- protocol.Command{ID: 2, Type: protocol.CommandAbort}
		pid, _ := p.expect("session/prompt")
		p.expect("session/cancel")
		p.reply(pid, map[string]any{"stopReason": "cancelled"})
		evs := p.wait("the turn's end", has(protocol.EventTurnCompleted))
		if end := evs[len(evs)-1]; end.StopReason != protocol.StopCancelled {
			t.Fatalf("turn end = %s, want cancelled", fakeserver.Format(evs[len(evs)-1:]))
		}
	}
}
