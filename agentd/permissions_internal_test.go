package agentd

import (
	"strings"
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

// An abort handed to the agent ends the requests waiting in the open
// turn: answers after it are refused, whether or not they name the event
// that asked. A request asked after the abort is answered as usual (the
// abort may have found its turn ended, and ended the next one), and so
// is one when no turn was open to abort.
func TestPermissionLogAbortEndsTheRequestsWaiting(t *testing.T) {
	answer := func(req string, seq int64) protocol.Command {
		return protocol.Command{ID: 9, Type: protocol.CommandPermissionResponse, RequestID: req, OptionID: "allow", RequestInstance: "i1", RequestAgentSeq: seq}
	}
	l := newPermissionLog("i1")
	l.queued(protocol.Event{Type: protocol.EventTurnStarted, TurnID: "t1"})
	l.queued(protocol.Event{Type: protocol.EventPermissionRequested, ID: "r1"})(2)
	l.aborted(7)
	l.queued(protocol.Event{Type: protocol.EventPermissionRequested, ID: "r2"})(3)
	for _, tt := range []struct {
		answer protocol.Command
		want   string
	}{
		{answer("r1", 2), "(command 7)"},
		{answer("r1", 0), "(command 7)"},
		{answer("r2", 3), ""},
	} {
		if why := l.refuse(tt.answer); (why == "") != (tt.want == "") || !strings.Contains(why, tt.want) {
			t.Errorf("refuse(%s, seq %d) = %q; want %q", tt.answer.RequestID, tt.answer.RequestAgentSeq, why, tt.want)
		}
	}

	l = newPermissionLog("i1")
	l.queued(protocol.Event{Type: protocol.EventPermissionRequested, ID: "r1"})(1)
	l.aborted(7)
	if why := l.refuse(answer("r1", 1)); why != "" {
		t.Errorf("refuse after an abort with no turn open = %q; want none", why)
	}
}
