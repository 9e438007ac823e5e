package notapplied

import (
	"fmt"

	"github.com/rein-ai/rein/protocol"
)

// Code is the notice code of a permission answer that did not take effect.
const Code = "permission_answer_not_applied"

// Notice is the warning notice saying that the answer c did not take
// effect, and why (a clause that completes "was not given to the agent:").
func Notice(c protocol.Command, why string) protocol.Event {
	return protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelWarning, NoticeCode: Code,
		Message: fmt.Sprintf("agentd: the answer to permission request %q (command %d) was not given to the agent: %s", c.RequestID, c.ID, why)}
}

// Ended is why an adapter drops an answer whose request no longer waits
// in the agent when the answer reaches the adapter. The supervisor handed
// the answer over while the request waited as far as it knew; meanwhile
// the agent withdrew it (Claude Code's control_cancel_request, Codex's
// serverRequest/resolved, ACP's $/cancel_request), or an abort or the end
// of its turn ended it, and the transcript shows it ended.
const Ended = "the request had ended when the answer reached the agent's adapter (the agent withdrew it, or an abort or the end of its turn ended it)"

// NoSession is why the ACP adapter drops an answer that reaches it while
// the agent is still in its handshake: with no session open, the agent
// has asked nothing, and whatever request the answer was for ended with
// an earlier run of the agent.
const NoSession = "the agent was still starting and had asked nothing yet (the request it answers ended with the agent that asked it)"
