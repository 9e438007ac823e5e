package agentd

import (
	"fmt"
	"sync"

	"github.com/rein-ai/rein/agentd/internal/native"
	"github.com/rein-ai/rein/agentd/internal/notapplied"
	"github.com/rein-ai/rein/protocol"
)

// NoticeAnswerNotApplied is the code of the notice agentd posts for a
// permission answer that did not take effect: agentd did not hand it to
// the agent (the request it answers no longer waits), or it could not
// reach the agent (internal/notapplied builds the notice).
const NoticeAnswerNotApplied = notapplied.Code

// NoticeAgentInputClosed is the code of the notice posted when a native
// agent stopped reading its stdin while it goes on running (NATIVE.md).
const NoticeAgentInputClosed = native.NoticeInputClosed

// permissionLog follows the permission requests the agent has waiting, so
// that an answer reaches the agent only for the request its sender saw.
//
// The server checks an answer against the requests it has stored, and
// names in it the event that asked the one it was checked against
// (Command.RequestInstance and RequestAgentSeq). Events wait in the
// outbox before the server has them: the agent may have resolved that
// request (a timeout, its own decision, an abort, its exit) and asked
// another under the same id (agents use ids again: ACP tool call ids, a
// restarted agent counting from 1). Handed over, the answer would decide
// the new request, which its sender never saw. So an answer that names an
// event goes to the agent only while the request that event asked waits;
// one without (an older server) goes as before.
//
// Which request waits is what the reducer will make of the same events
// (reducer/rules.go), followed here in the order they are queued: a
// permission_requested under an id that waits repeats it (the first event
// names it); permission_resolved ends it; so does the end of its turn (a
// turn_completed, unless it names another turn than the open one; a
// turn_started of another turn than the open one) and of its agent
// (agent_exited). The agentSeq of an event is known only once the
// uploader stamps it, which may be after the event is queued: until then
// the request's seq is 0 and no answer can name it (the server cannot
// have the event yet).
type permissionLog struct {
	instance string // this agentd's Rein-Instance

	// changed is signalled when a request stops waiting: an answer held
	// behind a backlog is checked again before it is handed over.
	changed chan struct{}

	mu       sync.Mutex
	waiting  map[string]*askedRequest // by request id
	turn     string
	turnOpen bool
}

// askedRequest is a request that waits: seq is the agentSeq of the event
// that asked it (0 until stamped); abortedBy the abort handed to the agent
// while it waited (0 for none).
type askedRequest struct {
	seq       int64
	abortedBy int64
}

func newPermissionLog(instance string) *permissionLog {
	return &permissionLog{instance: instance, waiting: map[string]*askedRequest{}, changed: make(chan struct{}, 1)}
}

// queued follows ev, an event about to be queued. For an event that asks
// a new request it returns the function the uploader calls with the
// event's agentSeq; nil otherwise.
func (l *permissionLog) queued(ev protocol.Event) func(seq int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch ev.Type {
	case protocol.EventPermissionRequested:
		if l.waiting[ev.ID] != nil {
			return nil // asked again while it waits: the same request
		}
		r := &askedRequest{}
		l.waiting[ev.ID] = r
		return func(seq int64) {
			l.mu.Lock()
			r.seq = seq
			l.mu.Unlock()
		}
	case protocol.EventPermissionResolved:
		delete(l.waiting, ev.ID)
		l.signal()
	case protocol.EventTurnStarted:
		if l.turnOpen && ev.TurnID != l.turn {
			clear(l.waiting) // the open turn is interrupted
			l.signal()
		}
		l.turn, l.turnOpen = ev.TurnID, true
	case protocol.EventTurnCompleted:
		if l.turnOpen && ev.TurnID != "" && ev.TurnID != l.turn {
			return nil // a late completion of another turn: nothing ends
		}
		clear(l.waiting)
		l.turn, l.turnOpen = "", false
		l.signal()
	case protocol.EventAgentExited:
		clear(l.waiting)
		l.turn, l.turnOpen = "", false
		l.signal()
	}
	return nil
}

// aborted notes that the agent was handed the abort id while the turn is
// open: it ends the turn, and every request waiting now with it (each
// adapter answers them cancelled as it takes the abort; a native agent
// ends the turn, or is killed). An answer handed over after the abort
// reaches the agent after it, and is dropped as answering nothing; the
// request is still waiting here only because the agent has not said yet
// that it ended. Requests asked after the abort are not marked: the abort
// may find the turn ended and end the next one, whose requests were
// answered as usual.
func (l *permissionLog) aborted(id int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.turnOpen {
		return
	}
	for _, r := range l.waiting {
		if r.abortedBy == 0 {
			r.abortedBy = id
		}
	}
}

// signal tells the supervisor's loop that requests stopped waiting.
func (l *permissionLog) signal() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// refuse says why the answer c must not reach the agent ("" when it may):
// it names the event that asked the request it answers, and that request
// no longer waits.
func (l *permissionLog) refuse(c protocol.Command) string {
	if c.Type != protocol.CommandPermissionResponse {
		return ""
	}
	if c.RequestAgentSeq == 0 {
		// Naming no event (an older server): whichever request waits
		// under the id, unless the agent was told to end it.
		l.mu.Lock()
		defer l.mu.Unlock()
		if r := l.waiting[c.RequestID]; r != nil && r.abortedBy != 0 {
			return abortedWhy(r)
		}
		return ""
	}
	if c.RequestInstance != l.instance {
		return fmt.Sprintf("it answers a request another agentd (instance %q) posted, whose agent is gone", c.RequestInstance)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.waiting[c.RequestID]
	switch {
	case r == nil:
		return "the request it answers no longer waits for an answer (the agent resolved it, or its turn or the agent ended)"
	case r.seq != c.RequestAgentSeq:
		return fmt.Sprintf("the request it answers no longer waits for an answer, and %q now names another request the agent asked since, which waits for an answer of its own", c.RequestID)
	case r.abortedBy != 0:
		return abortedWhy(r)
	}
	return ""
}

func abortedWhy(r *askedRequest) string {
	return fmt.Sprintf("the agent was given the abort of the request's turn (command %d) before it, which ends the request", r.abortedBy)
}
