package uploader

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// NoticeDropped is the code of the notices that tell the session of events
// the server refused and agentd dropped (see dropped).
const NoticeDropped = "agentd_events_dropped"

// droppedEvery is how many refusals in a row agentd counts between two
// notices after the first.
const droppedEvery = 100

// maxReasonBytes bounds the server's message quoted in a notice.
const maxReasonBytes = 1 << 10

// dropped tells the session's transcript of the events the server refused
// on their own and agentd dropped (postBatch): without it the viewer sees
// the agent's output stop for no reason, while the agent goes on (a
// session at its --max-session-bytes cap refuses all of its output). The
// first refusal gets a notice naming it; later ones are counted, and told
// every droppedEvery of them, or, with what is left of the count, once an
// event of a type that was refused is stored again (the refusals ended:
// the next one gets a notice of its own). Events that are merely not
// refused do not end the count: past a cap the server still takes a
// turn's end or a permission request while it refuses all output, and
// each such event ending the count would bring a notice per turn. A
// refused notice, agentd's or the agent's, starts no notice: a notice the
// server refuses would otherwise be followed by one refused the same way,
// for ever. Only Run's goroutine uses it.
type dropped struct {
	// types are the types refused since the first refusal told; nil
	// when there is none.
	types map[protocol.EventType]bool
	// untold counts the refusals since the last notice.
	untold int
	// last is the latest refusal: its type, agentSeq and reason.
	last refusal
	// pending are the notices not yet queued (Uploader.queueDropped).
	pending []protocol.Event
}

type refusal struct {
	typ    protocol.EventType
	seq    int64
	reason string
}

// refused records that the server refused e, alone, with err.
func (d *dropped) refused(e encodedEvent, err error) {
	typ := e.eventType()
	if typ == protocol.EventNotice {
		return
	}
	d.last = refusal{typ: typ, seq: e.seq, reason: reason(err)}
	if d.types == nil {
		d.types = map[protocol.EventType]bool{typ: true}
		d.tell(fmt.Sprintf("agentd: the server refused a %s event (agentSeq %d), which is not in the transcript: %s. Later refusals are counted in one notice per %d, or when events of the refused types are stored again.",
			typ, e.seq, d.last.reason, droppedEvery))
		return
	}
	d.types[typ] = true
	d.untold++
	if d.untold == droppedEvery {
		d.tell(fmt.Sprintf("agentd: the server refused %d more events (%s), which are not in the transcript; the last, a %s (agentSeq %d): %s",
			d.untold, d.typeList(), typ, e.seq, d.last.reason))
		d.untold = 0
	}
}

// stored records that the server stored batch: an event of a refused type
// among it ends the refusals.
func (d *dropped) stored(batch []encodedEvent) {
	if d.types == nil {
		return
	}
	for _, e := range batch {
		if d.types[e.eventType()] {
			if d.untold > 0 {
				d.tell(fmt.Sprintf("agentd: the server refused %d more events (%s), which are not in the transcript; the last, a %s (agentSeq %d): %s. Events of those types are stored again from agentSeq %d.",
					d.untold, d.typeList(), d.last.typ, d.last.seq, d.last.reason, e.seq))
			}
			d.types, d.untold = nil, 0
			return
		}
	}
}

// tell adds a notice to be queued.
func (d *dropped) tell(msg string) {
	d.pending = append(d.pending, protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelWarning, NoticeCode: NoticeDropped, Message: msg, Ts: time.Now().UnixMilli()})
}

// typeList names the refused types, sorted.
func (d *dropped) typeList() string {
	types := make([]string, 0, len(d.types))
	for t := range d.types {
		types = append(types, string(t))
	}
	slices.Sort(types)
	return strings.Join(types, ", ")
}

// reason is the server's message in a refusal, cut to maxReasonBytes.
func reason(err error) string {
	msg := err.Error()
	var e *protocol.Error
	if errors.As(err, &e) {
		msg = e.Message
	}
	if len(msg) > maxReasonBytes {
		msg = strings.ToValidUTF8(msg[:maxReasonBytes], "") + "…"
	}
	return msg
}
