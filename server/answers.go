package server

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
	"github.com/rein-ai/rein/server/store"
)

// Permission answers that cannot take effect. A permission_response is
// stored and delivered only when the request it names waits for an answer
// in its session and has none yet, and the option it picks is one the
// request offers (a dismissal, outcome "cancelled", picks none). Anything
// else would be told "accepted" and then lost: the agent takes the first
// answer only, agentd drops an answer to a request it is not waiting on,
// and answers the agent "cancelled" (a deny) for an option it does not
// know. So it is refused instead:
//
//   - 404 not_found: the session never had such a request;
//   - 409 conflict: the request no longer waits (resolved, its turn ended,
//     its agent exited), or command N answered it already;
//   - 400 invalid: the request has no such option.
//
// The writer decides, from the approvals inbox (every waiting request with
// its options, and the command that answered it, see approvals.answered)
// and, within a group commit, from what the group's earlier requests did
// to it (group.inbox, group.answers): of two answers in one group only the
// first is stored. On a shared database another replica may have stored
// the request a moment ago; a replica whose inbox does not have it reads
// the session again before refusing (see writer.behind).

// The request's event. The server checks an answer against the requests
// it has stored, but agentd may hold newer ones in its outbox, not yet
// posted: the agent resolved the request answered and asked another under
// the same id. So the stored answer names the event that asked the
// request it was checked against (Command.RequestInstance and
// RequestAgentSeq, see askedBy), and agentd hands it to the agent only
// while that request waits.

// askedEvent is the event that asked a permission request: the
// Rein-Instance it was posted with and its agentSeq.
type askedEvent struct {
	instance string
	agentSeq int64
}

// noteAsked keeps the event le for the permission artifacts its changes
// cs created, and forgets those they resolved (a permission's status is
// set only when it leaves pending). An event without an agentSeq names
// nothing agentd could tell apart.
func (s *state) noteAsked(le store.Event, cs []reducer.Change) {
	for _, c := range cs {
		switch {
		case c.Kind == reducer.Created && c.Artifact.Type == protocol.ArtifactPermission && le.AgentSeq > 0:
			if s.asked == nil {
				s.asked = map[int64]askedEvent{}
			}
			s.asked[c.Seq] = askedEvent{le.Instance, le.AgentSeq}
		case c.Kind == reducer.Set && c.Field == "status" && s.asked != nil:
			delete(s.asked, c.Seq)
		}
	}
}

// askedBy returns the request cmd, an answer answerable found can take
// effect, answers: the one waiting under its id (the newest permission
// artifact with it), as its seq and the event that asked it. The event is
// zero when it carried no agentSeq; the answer then goes to whichever
// request waits.
func (w *writer) askedBy(g *group, id string, cmd protocol.Command) (int64, askedEvent, error) {
	s, err := w.state(g, id)
	if err != nil {
		return 0, askedEvent{}, unavailable("check permission request session="+id, err)
	}
	seq := s.st.Newest(protocol.ArtifactPermission, cmd.RequestID)
	if cmd.RequestSeq != 0 && seq != cmd.RequestSeq {
		// answerable checked the inbox, which names the same request
		// as the state; should they ever differ, name none.
		return cmd.RequestSeq, askedEvent{}, nil
	}
	return seq, s.asked[seq], nil
}

// answerable returns why cmd, a permission_response to session id, cannot
// take effect (nil when it can). stale reports instead that this replica's
// view of the session is behind the database: the group is to be applied
// again once it has read the session again.
func (w *writer) answerable(g *group, id string, cmd protocol.Command) (stale bool, err error) {
	k := approvalKey{id, cmd.RequestID}
	p, by, waiting := w.waiting(g, k)
	if waiting && cmd.RequestSeq != 0 && p.Seq != cmd.RequestSeq {
		// The id now names a request the client did not answer (its
		// agent used the id again once the one answered was resolved),
		// unless this replica's inbox is behind the database and the
		// request answered is the newer one.
		if g.retries < maxRetries {
			behind, err := w.behind(g, id, "check permission request")
			if err != nil || behind {
				return behind, err
			}
		}
		state := "waits for an answer"
		if by > 0 {
			state = fmt.Sprintf("was answered by command %d", by)
		}
		return false, anotherErr(k, cmd.RequestSeq, p.Seq, state, p.Title)
	}
	if n, ok := g.answers[k]; ok {
		return false, answeredErr(k, n)
	}
	if waiting {
		if by > 0 {
			return false, answeredErr(k, by)
		}
		return false, optionErr(k, p.Options, cmd)
	}
	if g.retries < maxRetries {
		behind, err := w.behind(g, id, "check permission request")
		if err != nil || behind {
			return behind, err
		}
	}
	return false, w.notWaitingErr(g, k, cmd)
}

// waiting returns the request k as it stands in the group: waiting (ok),
// its options, and the command that answered it (0 for none).
func (w *writer) waiting(g *group, k approvalKey) (p *protocol.Approval, answeredBy int64, ok bool) {
	if p, seen := g.inbox[k]; seen {
		// Asked (or asked again) in this group: answered only by the
		// group's commands, which g.answers holds.
		return p, 0, p != nil
	}
	if g.removed[k.session] {
		// Deleted in this group, so created again in it: the inbox's
		// requests of the session are the deleted namesake's.
		return nil, 0, false
	}
	return w.approvals.lookup(k)
}

// notWaitingErr says why the request k, which the inbox does not hold as
// waiting, cannot be answered: never asked (404), or no longer waiting
// (409). The session's reducer state is the word: should it hold the
// request as pending after all (an inbox that missed it), the answer is
// not refused and nil is returned, or the option's error.
func (w *writer) notWaitingErr(g *group, k approvalKey, cmd protocol.Command) error {
	s, err := w.state(g, k.session)
	if err != nil {
		return unavailable("check permission request session="+k.session, err)
	}
	seq := s.st.Newest(protocol.ArtifactPermission, k.request)
	if seq == 0 {
		return protocol.Errorf(protocol.CodeNotFound, "requestId: session %q has no permission request %q; answer one its agent asked (GET /approvals lists those waiting)", k.session, k.request)
	}
	status, title := "", ""
	a := w.artifactAt(k.session, s.st, seq)
	if a != nil {
		status, title = a.String("status"), a.String("title")
	}
	if cmd.RequestSeq != 0 && cmd.RequestSeq != seq {
		state := "no longer waits for an answer"
		switch {
		case status == string(protocol.PermissionPending):
			state = "waits for an answer"
		case status != "":
			state = "was " + status
		}
		return anotherErr(k, cmd.RequestSeq, seq, state, title)
	}
	if a != nil {
		if status == string(protocol.PermissionPending) {
			w.log.Warn("permission request waits but was not in the approvals inbox", slog.String("session", k.session), slog.String("request", k.request))
			var opts []protocol.PermissionOption
			if raw, err := json.Marshal(a.Fields["options"]); err == nil {
				_ = json.Unmarshal(raw, &opts)
			}
			return optionErr(k, opts, cmd)
		}
	}
	if status == "" {
		return protocol.Errorf(protocol.CodeConflict, "requestId: permission request %q of session %q is no longer waiting for an answer", k.request, k.session)
	}
	return protocol.Errorf(protocol.CodeConflict, "requestId: permission request %q of session %q is no longer waiting for an answer: it was %s", k.request, k.session, status)
}

// anotherErr refuses an answer to the request at seq answered: the
// request id now names the one at seq now, which is in state ("waits for
// an answer", "was approved", ...) and titled title. Applied to it, the
// answer would decide a request its sender never saw.
func anotherErr(k approvalKey, answered, now int64, state, title string) error {
	return protocol.Errorf(protocol.CodeConflict, "requestSeq: the permission request answered (%q of session %q, seq %d) no longer waits for an answer; %q now names another request, seq %d %q, which %s; nothing stored",
		k.request, k.session, answered, k.request, now, title, state)
}

func answeredErr(k approvalKey, by int64) error {
	return protocol.Errorf(protocol.CodeConflict, "requestId: permission request %q of session %q was already answered by command %d; the agent takes that first answer only", k.request, k.session, by)
}

// optionErr refuses an answer whose option the request does not offer: the
// agent would get "cancelled" for it. A dismissal names no option.
func optionErr(k approvalKey, opts []protocol.PermissionOption, cmd protocol.Command) error {
	if cmd.Outcome == protocol.OutcomeCancelled {
		return nil
	}
	ids := make([]string, 0, len(opts))
	for _, o := range opts {
		if o.ID == cmd.OptionID {
			return nil
		}
		ids = append(ids, o.ID)
	}
	if len(ids) == 0 {
		return protocol.Errorf(protocol.CodeInvalid, "optionId: permission request %q of session %q offers no options; dismiss it with \"outcome\": \"cancelled\"", k.request, k.session)
	}
	return protocol.Errorf(protocol.CodeInvalid, "optionId: permission request %q of session %q has no option %q; its options are %s", k.request, k.session, cmd.OptionID, strings.Join(ids, ", "))
}

// artifactAt returns the artifact at seq of a session: from the reducer
// state, or from the store when the state released its body. nil when it
// cannot be read (logged).
func (w *writer) artifactAt(session string, st *reducer.State, seq int64) *protocol.Artifact {
	if a := st.Artifact(seq); a != nil {
		return a
	}
	ctx, cancel := w.storeCtx()
	defer cancel()
	list, _, err := w.store.ArtifactsBySeq(ctx, session, seq-1, 1, 0)
	var a protocol.Artifact
	if err == nil && len(list) == 1 {
		err = json.Unmarshal(list[0].Body, &a)
	}
	if err != nil || len(list) != 1 {
		w.log.Warn("read artifact", slog.String("session", session), slog.Int64("seq", seq), slog.Any("err", err))
		return nil
	}
	return &a
}
