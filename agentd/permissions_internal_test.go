package agentd

import (
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// permissionLog lets an answer that names the event asking its request
// through only while that request waits, as the reducer will see it: not
// to a request asked since under the same id, not after the request's
// turn or agent ended. Events are stamped agentSeq 1, 2, ... in order,
// except the last when unstamped (still on its way to the queue).
func TestPermissionLogAnswersOnlyTheRequestAsked(t *testing.T) {
	ask := func(id string) protocol.Event {
		return protocol.Event{Type: protocol.EventPermissionRequested, ID: id}
	}
	resolved := func(id string) protocol.Event {
		return protocol.Event{Type: protocol.EventPermissionResolved, ID: id, Outcome: protocol.OutcomeCancelled}
	}
	started := func(turn string) protocol.Event {
		return protocol.Event{Type: protocol.EventTurnStarted, TurnID: turn}
	}
	completed := func(turn string) protocol.Event {
		return protocol.Event{Type: protocol.EventTurnCompleted, TurnID: turn}
	}
	answer := func(instance string, seq int64) protocol.Command {
		return protocol.Command{ID: 9, Type: protocol.CommandPermissionResponse, RequestID: "r1", OptionID: "allow", RequestInstance: instance, RequestAgentSeq: seq}
	}
	tests := []struct {
		name       string
		events     []protocol.Event
		unstamped  bool // the last event's agentSeq is not known yet
		answer     protocol.Command
		wantRefuse bool
	}{
		{name: "the request waiting", events: []protocol.Event{started("t1"), ask("r1")}, answer: answer("i1", 2)},
		{name: "no request event named: as before", events: []protocol.Event{ask("r1"), resolved("r1"), ask("r1")}, answer: answer("", 0)},
		{name: "asked again while it waits: the same request", events: []protocol.Event{ask("r1"), ask("r1")}, answer: answer("i1", 1)},
		{name: "asked again after it was resolved", events: []protocol.Event{ask("r1"), resolved("r1"), ask("r1")}, answer: answer("i1", 1), wantRefuse: true},
		{name: "the request asked again", events: []protocol.Event{ask("r1"), resolved("r1"), ask("r1")}, answer: answer("i1", 3)},
		{name: "asked again, not stamped yet", events: []protocol.Event{ask("r1"), resolved("r1"), ask("r1")}, unstamped: true, answer: answer("i1", 1), wantRefuse: true},
		{name: "resolved", events: []protocol.Event{ask("r1"), resolved("r1")}, answer: answer("i1", 1), wantRefuse: true},
		{name: "never asked here", events: nil, answer: answer("i1", 1), wantRefuse: true},
		{name: "another agentd's request", events: []protocol.Event{ask("r1")}, answer: answer("i0", 1), wantRefuse: true},
		{name: "its turn completed", events: []protocol.Event{started("t1"), ask("r1"), completed("t1")}, answer: answer("i1", 2), wantRefuse: true},
		{name: "a completion without a turn id", events: []protocol.Event{started("t1"), ask("r1"), completed("")}, answer: answer("i1", 2), wantRefuse: true},
		{name: "a late completion of another turn", events: []protocol.Event{started("t1"), ask("r1"), completed("t0")}, answer: answer("i1", 2)},
		{name: "its turn started again", events: []protocol.Event{started("t1"), ask("r1"), started("t1")}, answer: answer("i1", 2)},
		{name: "its turn interrupted by the next", events: []protocol.Event{started("t1"), ask("r1"), started("t2")}, answer: answer("i1", 2), wantRefuse: true},
		{name: "asked outside a turn, then a turn starts", events: []protocol.Event{ask("r1"), started("t1")}, answer: answer("i1", 1)},
		{name: "its agent exited", events: []protocol.Event{ask("r1"), {Type: protocol.EventAgentExited}}, answer: answer("i1", 1), wantRefuse: true},
		{name: "a new turn's request after the old one ended", events: []protocol.Event{started("t1"), ask("r1"), completed("t1"), started("t2"), ask("r1")}, answer: answer("i1", 2), wantRefuse: true},
		{name: "not an answer", events: nil, answer: protocol.Command{ID: 9, Type: protocol.CommandAbort}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newPermissionLog("i1")
			for i, ev := range tt.events {
				stamp := l.queued(ev)
				if stamp != nil && !(tt.unstamped && i == len(tt.events)-1) {
					stamp(int64(i + 1))
				}
			}
			if why := l.refuse(tt.answer); (why != "") != tt.wantRefuse {
				t.Errorf("refuse = %q; want refused: %v", why, tt.wantRefuse)
			}
		})
	}
}
