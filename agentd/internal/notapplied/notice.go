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
