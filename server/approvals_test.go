package server_test

import (
	"encoding/json"
	"github.com/rein-ai/rein/server/app"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// permissionEvents are a turn whose tool call waits for permission req.
func permissionEvents(turn, tool, req string, seq int) []any {
	return []any{
		ev("turn_started", "turnId", turn, "source", "user", "agentSeq", seq),
		ev("tool_call_start", "id", tool, "name", "bash", "kind", "execute", "title", "rm -rf build", "agentSeq", seq+1),
		ev("permission_requested", "id", req, "toolCallId", tool, "title", "Run rm -rf build?", "agentSeq", seq+2,
			"options", []any{
				map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"},
				map[string]any{"id": "deny", "name": "Deny", "kind": "reject_once"},
			}),
	}
}

func approvalData(t *testing.T, e sseEvent) protocol.Approval {
	t.Helper()
	var p struct {
		Approval protocol.Approval `json:"approval"`
	}
	if err := json.Unmarshal([]byte(e.Data), &p); err != nil {
		t.Fatalf("%s data %s: %v", e.Event, e.Data, err)
	}
	return p.Approval
}

func TestApprovalsInbox(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", map[string]string{"project": "p1"})
	c.must(http.StatusCreated, nil, "POST", "/sessions/b", map[string]string{"project": "p2"})
	c.must(http.StatusCreated, nil, "POST", "/sessions/c", map[string]string{"project": "p1"})
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "ia")

	// Empty inbox: a full, empty snapshot.
	st := c.stream("/approvals/stream")
	done := st.next()
	var complete protocol.ApprovalsComplete
	if err := json.Unmarshal([]byte(done.Data), &complete); err != nil || done.Event != protocol.SSESnapshotComplete || !complete.Full || done.ID != itoa(complete.Rev) {
		t.Fatalf("first event %+v (%v); want a full snapshot_complete with id = rev", done, err)
	}
	sessions := c.stream("/sessions/stream")
	for sessions.next().Event != protocol.SSESnapshotComplete {
	}

	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", permissionEvents("t1", "tc1", "r1", 1))
	c.must(http.StatusAccepted, nil, "POST", "/sessions/b/events", permissionEvents("t1", "tc1", "r2", 1))

	for i, want := range []string{"a", "b"} {
		e := st.next()
		if e.Event != protocol.SSEApprovalAdded || e.ID != itoa(complete.Rev+int64(i)+1) {
			t.Fatalf("stream event %+v; want approval_added id %d", e, complete.Rev+int64(i)+1)
		}
		if p := approvalData(t, e); p.SessionID != want || p.Tool == nil || p.Tool.Name != "bash" || len(p.Options) != 2 {
			t.Fatalf("added %+v; want session %s with its tool and options", p, want)
		}
	}
	up := sessions.next()
	if up.Event != protocol.SSESessionUpdated || !strings.Contains(up.Data, `"pendingApprovals":1`) {
		t.Fatalf("session stream after a request: %+v; want pendingApprovals 1", up)
	}

	var list []protocol.Approval
	c.must(http.StatusOK, &list, "GET", "/approvals", nil)
	if len(list) != 2 || list[0].SessionID != "a" || list[0].RequestID != "r1" || list[0].Title != "Run rm -rf build?" ||
		list[0].TurnID != "t1" || list[0].Tool.ID != "tc1" || list[0].Tool.Title != "rm -rf build" || list[0].WaitingMs < 0 || *list[0].Project != "p1" {
		t.Fatalf("GET /approvals = %+v", list)
	}
	c.must(http.StatusOK, &list, "GET", "/approvals?project=p2", nil)
	if len(list) != 1 || list[0].SessionID != "b" {
		t.Fatalf("GET /approvals?project=p2 = %+v", list)
	}
	c.must(http.StatusOK, &list, "GET", "/approvals?project=nope", nil)
	if len(list) != 0 {
		t.Fatalf("unknown project listed %+v", list)
	}
	for _, path := range []string{"/approvals?project=a/b", "/approvals/stream?project=a%20b", "/approvals/history?project=%21"} {
		if e := c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "GET", path, nil); !strings.Contains(e.Message, "project") {
			t.Fatalf("GET %s: %q does not name project", path, e.Message)
		}
	}
	var rec protocol.Session
	c.must(http.StatusOK, &rec, "GET", "/sessions/a", nil)
	if rec.PendingApprovals != 1 {
		t.Fatalf("GET /sessions/a pendingApprovals %d; want 1", rec.PendingApprovals)
	}
	var recs []protocol.Session
	c.must(http.StatusOK, &recs, "GET", "/sessions", nil)
	if len(recs) != 3 || recs[0].PendingApprovals != 1 || recs[1].PendingApprovals != 1 || recs[2].PendingApprovals != 0 {
		t.Fatalf("GET /sessions = %+v", recs)
	}

	// Answered from the inbox: the client's answer, then the agent's
	// resolution, make a decision by the client.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"permission_response","requestId":"r1","optionId":"allow"}`)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("permission_resolved", "id", "r1", "outcome", "selected", "optionId", "allow", "agentSeq", 4)})
	// Withdrawn by the agent: a decision by "agent".
	c.must(http.StatusAccepted, nil, "POST", "/sessions/b/events", []any{ev("permission_resolved", "id", "r2", "outcome", "cancelled", "agentSeq", 4)})
	if e := st.next(); e.Event != protocol.SSEApprovalAnswered || approvalData(t, e).RequestID != "r1" {
		t.Fatalf("stream event %+v; want r1 answered", e)
	}
	for _, want := range []string{"a/r1/approved/anonymous", "b/r2/cancelled/agent"} {
		e := st.next()
		var r protocol.ApprovalResolved
		if err := json.Unmarshal([]byte(e.Data), &r); err != nil || e.Event != protocol.SSEApprovalResolved {
			t.Fatalf("stream event %+v: %v", e, err)
		}
		if got := r.SessionID + "/" + r.RequestID + "/" + r.Decision.Status + "/" + r.Decision.DecidedBy; got != want {
			t.Fatalf("resolved %s; want %s", got, want)
		}
	}
	c.must(http.StatusOK, &list, "GET", "/approvals", nil)
	if len(list) != 0 {
		t.Fatalf("inbox after answers: %+v", list)
	}
	var hist []protocol.Decision
	c.must(http.StatusOK, &hist, "GET", "/approvals/history", nil)
	if len(hist) != 2 || hist[0].RequestID != "r2" || hist[1].RequestID != "r1" {
		t.Fatalf("history %+v; want r2 then r1 (newest first)", hist)
	}
	if d := hist[1]; d.DecidedBy != "anonymous" || d.Auth != "none" || d.OptionID != "allow" || d.OptionKind != "allow_once" ||
		d.OptionName != "Allow" || d.AnsweredAt == 0 || d.ResolvedAt < d.AnsweredAt || d.Tool != "bash" {
		t.Fatalf("decision %+v", d)
	}
	c.must(http.StatusOK, &hist, "GET", "/approvals/history?project=p1&limit=5", nil)
	if len(hist) != 1 || hist[0].SessionID != "a" {
		t.Fatalf("history?project=p1 %+v", hist)
	}
	c.must(http.StatusOK, &hist, "GET", "/approvals/history?limit=1", nil)
	if len(hist) != 1 || hist[0].RequestID != "r2" {
		t.Fatalf("history?limit=1 %+v", hist)
	}
	for _, q := range []string{"limit=0", "limit=x", "limit=-1", "limit=501"} {
		if e := c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "GET", "/approvals/history?"+q, nil); !strings.Contains(e.Message, "limit") {
			t.Fatalf("%s: %q does not name limit", q, e.Message)
		}
	}

	// Resume: exactly the changes after Last-Event-ID, then a
	// snapshot_complete that is not full.
	re := c.stream("/approvals/stream", "Last-Event-ID", itoa(complete.Rev+1))
	var names []string
	for {
		e := re.next()
		if e.Event == protocol.SSESnapshotComplete {
			var d protocol.ApprovalsComplete
			if err := json.Unmarshal([]byte(e.Data), &d); err != nil || d.Full || d.Rev != complete.Rev+5 {
				t.Fatalf("resume end %+v; want rev %d, not full", d, complete.Rev+5)
			}
			break
		}
		names = append(names, e.Event+"@"+e.ID)
	}
	r := complete.Rev
	if want := []string{"approval_added@" + itoa(r+2), "approval_answered@" + itoa(r+3), "approval_resolved@" + itoa(r+4), "approval_resolved@" + itoa(r+5)}; strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("resumed with %v; want %v", names, want)
	}
	// A filtered resume gets only its project's changes.
	re2 := c.stream("/approvals/stream?project=p2", "Last-Event-ID", itoa(complete.Rev))
	names = nil
	for e := re2.next(); e.Event != protocol.SSESnapshotComplete; e = re2.next() {
		names = append(names, e.Event+"@"+e.ID)
	}
	if want := []string{"approval_added@" + itoa(r+2), "approval_resolved@" + itoa(r+5)}; strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("resumed p2 with %v; want %v", names, want)
	}
	// An id this process never issued (an earlier process's, or beyond
	// the revision) gets a full snapshot.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/c/events", permissionEvents("t9", "tc9", "r9", 1))
	for _, id := range []string{"5", strconv.FormatInt(r+100, 10)} {
		full := c.stream("/approvals/stream?project=p1", "Last-Event-ID", id)
		if e := full.next(); e.Event != protocol.SSEApprovalSnapshot || approvalData(t, e).RequestID != "r9" {
			t.Fatalf("Last-Event-ID %s: %+v; want the snapshot", id, e)
		}
		if e := full.next(); e.Event != protocol.SSESnapshotComplete || !strings.Contains(e.Data, `"full":true`) {
			t.Fatalf("Last-Event-ID %s: %+v; want a full snapshot_complete", id, e)
		}
	}

	// A session removed while its request waits: resolved as cancelled.
	if e := st.next(); e.Event != protocol.SSEApprovalAdded {
		t.Fatalf("%+v; want r9 added", e)
	}
	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/c", nil)
	if e := st.next(); e.Event != protocol.SSEApprovalResolved || !strings.Contains(e.Data, `"status":"cancelled"`) {
		t.Fatalf("after delete: %+v; want r9 resolved cancelled", e)
	}
}

// TestApprovalsSurviveRestart: pending requests are loaded from the stored
// artifacts at start; the client token's answers are recorded as "client".
func TestApprovalsSurviveRestart(t *testing.T) {
	t.Parallel()
	const token = "0123456789abcdef0123456789abcdef"
	dir := t.TempDir()
	s := start(t, app.Options{DBPath: dir + "/rein.db", APIToken: token})
	c := newClient(t, s)
	auth := []string{"Authorization", "Bearer " + token}
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil, auth...)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", permissionEvents("t1", "tc1", "r1", 1), auth...)
	c.wantError(http.StatusUnauthorized, protocol.CodeUnauthorized, "GET", "/approvals", nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = start(t, app.Options{DBPath: dir + "/rein.db", APIToken: token})
	c = newClient(t, s)
	var list []protocol.Approval
	c.must(http.StatusOK, &list, "GET", "/approvals", nil, auth...)
	if len(list) != 1 || list[0].RequestID != "r1" || list[0].Tool == nil || list[0].Tool.Name != "bash" {
		t.Fatalf("after restart: %+v", list)
	}
	c.stream("/sessions/a/commands", append([]string{protocol.HeaderInstance, "i2"}, auth...)...)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"permission_response","requestId":"r1","optionId":"deny"}`, auth...)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("permission_resolved", "id", "r1", "outcome", "selected", "optionId", "deny", "agentSeq", 9)}, auth...)
	var hist []protocol.Decision
	c.must(http.StatusOK, &hist, "GET", "/approvals/history", nil, auth...)
	if len(hist) != 1 || hist[0].DecidedBy != "client" || hist[0].Auth != "token" || hist[0].Status != "denied" || hist[0].OptionKind != "reject_once" {
		t.Fatalf("history %+v", hist)
	}
	// A session stream ticket opens the approvals stream too.
	var tk protocol.StreamTicket
	c.must(http.StatusOK, &tk, "POST", "/sessions/stream-ticket", nil, auth...)
	st := c.stream("/approvals/stream?ticket=" + tk.Ticket)
	if e := st.next(); e.Event != protocol.SSESnapshotComplete {
		t.Fatalf("ticket stream: %+v", e)
	}
}

// A request the agent made outside a turn waits for no one once the agent
// has exited: the inbox drops it, as it does a request whose turn ended.
func TestApprovalsEndWithTheAgentOutsideATurn(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("turn_started", "turnId", "t1", "source", "user"),
		ev("turn_completed", "turnId", "t1", "stopReason", "end_turn"),
		ev("permission_requested", "id", "r1", "title", "Run it?", "options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}}),
	})
	var list []protocol.Approval
	c.must(http.StatusOK, &list, "GET", "/approvals", nil)
	if len(list) != 1 {
		t.Fatalf("GET /approvals = %+v; want the request", list)
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", ev("agent_exited", "code", 1))
	c.must(http.StatusOK, &list, "GET", "/approvals", nil)
	if len(list) != 0 {
		t.Fatalf("GET /approvals after agent_exited = %+v; want none", list)
	}
	var rec protocol.Session
	c.must(http.StatusOK, &rec, "GET", "/sessions/a", nil)
	if rec.PendingApprovals != 0 {
		t.Fatalf("pendingApprovals %d after agent_exited; want 0", rec.PendingApprovals)
	}
}

// A request answered twice (two clients, or one that did not see the
// first answer) is decided by the first answer: the agent would take the
// first and ignore the second (agentd logs "permission_response for no
// pending request"), so the second is refused (409, see answers_test.go)
// and the decision says when that first answer came.
func TestApprovalAnsweredTwiceRecordsTheAnswerTaken(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	s := start(t, app.Options{Now: clk.Now})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	cmds := c.stream("/sessions/a/commands", protocol.HeaderInstance, "ia")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "ia")

	clk.Add(time.Second)
	first := clk.Now().UnixMilli()
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"permission_response","requestId":"r1","optionId":"allow"}`)
	clk.Add(time.Second)
	c.wantError(http.StatusConflict, protocol.CodeConflict, "POST", "/sessions/a/commands", `{"type":"permission_response","requestId":"r1","optionId":"deny"}`)
	var got protocol.Command
	if err := json.Unmarshal([]byte(cmds.next().Data), &got); err != nil || got.OptionID != "allow" {
		t.Fatalf("first command on the stream %+v (%v); want the allow", got, err)
	}
	// The agent takes the first answer.
	clk.Add(time.Second)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("permission_resolved", "id", "r1", "outcome", "selected", "optionId", "allow", "agentSeq", 4)}, protocol.HeaderInstance, "ia")
	var hist []protocol.Decision
	c.must(http.StatusOK, &hist, "GET", "/approvals/history", nil)
	if len(hist) != 1 || hist[0].Status != "approved" || hist[0].OptionID != "allow" {
		t.Fatalf("history %+v; want r1 approved with allow", hist)
	}
	if hist[0].AnsweredAt != first {
		t.Fatalf("answeredAt %d; want %d, the first answer's (the one the agent took), not the second's", hist[0].AnsweredAt, first)
	}
}

// A request answered but not yet taken by its agent (slow, or its
// sandbox gone) stays in the inbox, now carrying its answer: GET
// /approvals, the stream (approval_answered, a snapshot, an exact resume)
// and, after a restart, the answers read back from the stored commands.
// pendingApprovals counts only the requests that wait for a person.
func TestApprovalAnsweredShowsItsAnswer(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	clock := clk.Now
	path := freshDB(t)
	s := start(t, app.Options{DBPath: path, Now: clock})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", map[string]string{"project": "p1"})
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "ia")
	st := c.stream("/approvals/stream")
	var complete protocol.ApprovalsComplete
	if e := st.next(); json.Unmarshal([]byte(e.Data), &complete) != nil || e.Event != protocol.SSESnapshotComplete {
		t.Fatalf("first event %+v; want snapshot_complete", e)
	}
	sessions := c.stream("/sessions/stream")
	for sessions.next().Event != protocol.SSESnapshotComplete {
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", append(permissionEvents("t1", "tc1", "r1", 1),
		ev("permission_requested", "id", "r2", "title", "Also?", "agentSeq", 4, "options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}})), protocol.HeaderInstance, "ia")
	for range 2 {
		if e := st.next(); e.Event != protocol.SSEApprovalAdded {
			t.Fatalf("%+v; want approval_added", e)
		}
	}
	// nextPending is the session stream's next pendingApprovals.
	nextPending := func() string {
		t.Helper()
		for {
			e := sessions.next()
			if i := strings.Index(e.Data, `"pendingApprovals":`); i >= 0 && e.Event == protocol.SSESessionUpdated {
				return strings.TrimRight(e.Data[i+len(`"pendingApprovals":`):], "}")
			}
		}
	}
	if n := nextPending(); n != "2" {
		t.Fatalf("session stream: pendingApprovals %s; want 2", n)
	}

	// Answered: the stream says so at once, with the approval as it
	// now is; the list shows it; the count goes down.
	clk.Add(time.Second)
	answeredAt := clk.Now().UnixMilli()
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", answer("r1", "allow"))
	e := st.next()
	got := approvalData(t, e)
	want := &protocol.ApprovalAnswer{CommandID: 1, Outcome: protocol.OutcomeSelected, OptionID: "allow", OptionName: "Allow", OptionKind: "allow_once",
		AnsweredBy: "anonymous", Auth: "none", AnsweredAt: answeredAt}
	if e.Event != protocol.SSEApprovalAnswered || e.ID != itoa(complete.Rev+3) || got.RequestID != "r1" || got.Tool == nil || !reflect.DeepEqual(got.Answer, want) {
		t.Fatalf("after the answer the stream sent %+v; want approval_answered id %d with answer %+v", e, complete.Rev+3, want)
	}
	if n := nextPending(); n != "1" {
		t.Fatalf("session stream after the answer: pendingApprovals %s; want 1", n)
	}
	if rec := c.session("a"); rec.PendingApprovals != 1 {
		t.Fatalf("pendingApprovals %d after one of two was answered; want 1", rec.PendingApprovals)
	}
	_, raw := c.do("GET", "/approvals", nil)
	var list []protocol.Approval
	if err := json.Unmarshal(raw, &list); err != nil || len(list) != 2 || !reflect.DeepEqual(list[0].Answer, want) || list[1].Answer != nil {
		t.Fatalf("GET /approvals = %s; want r1 with its answer, r2 without", raw)
	}
	if strings.Count(string(raw), `"answer"`) != 1 {
		t.Fatalf("GET /approvals = %s; want no answer key on the unanswered r2", raw)
	}

	// A dismissal is an answer too.
	clk.Add(time.Second)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", dismiss("r2"))
	if e := st.next(); e.Event != protocol.SSEApprovalAnswered || approvalData(t, e).Answer == nil || approvalData(t, e).Answer.Outcome != protocol.OutcomeCancelled ||
		approvalData(t, e).Answer.OptionID != "" || approvalData(t, e).Answer.CommandID != 2 {
		t.Fatalf("after the dismissal %+v; want approval_answered, outcome cancelled, command 2", e)
	}
	if n := nextPending(); n != "0" {
		t.Fatalf("session stream after the dismissal: pendingApprovals %s; want 0", n)
	}

	// A new stream's snapshot and an exact resume both carry the answers.
	snap := c.stream("/approvals/stream")
	for _, req := range []string{"r1", "r2"} {
		if e := snap.next(); e.Event != protocol.SSEApprovalSnapshot || approvalData(t, e).RequestID != req || approvalData(t, e).Answer == nil {
			t.Fatalf("snapshot %+v; want %s with its answer", e, req)
		}
	}
	re := c.stream("/approvals/stream", "Last-Event-ID", itoa(complete.Rev+2))
	for _, req := range []string{"r1", "r2"} {
		if e := re.next(); e.Event != protocol.SSEApprovalAnswered || approvalData(t, e).RequestID != req {
			t.Fatalf("resume %+v; want approval_answered of %s", e, req)
		}
	}

	// The agent takes r1's answer: resolved, and the count (which no
	// longer held it) does not change. The next session_updated is r3's.
	clk.Add(time.Second)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("permission_resolved", "id", "r1", "outcome", "selected", "optionId", "allow", "agentSeq", 5)}, protocol.HeaderInstance, "ia")
	if e := st.next(); e.Event != protocol.SSEApprovalResolved {
		t.Fatalf("%+v; want approval_resolved", e)
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("permission_requested", "id", "r3", "title", "More?", "agentSeq", 6, "options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}})}, protocol.HeaderInstance, "ia")
	if n := nextPending(); n != "1" {
		t.Fatalf("session stream after r1 resolved and r3 asked: pendingApprovals %s; want 1 (r3), and no update for r1", n)
	}
	var hist []protocol.Decision
	c.must(http.StatusOK, &hist, "GET", "/approvals/history", nil)
	if len(hist) != 1 || hist[0].DecidedBy != "anonymous" || hist[0].AnsweredAt != answeredAt {
		t.Fatalf("history %+v; want r1 decided by anonymous, answered at %d", hist, answeredAt)
	}

	// After a restart the answer is read back from the stored command.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = start(t, app.Options{DBPath: path, Now: clock})
	c = newClient(t, s)
	c.must(http.StatusOK, &list, "GET", "/approvals", nil)
	if len(list) != 2 || list[0].RequestID != "r2" || list[0].Answer == nil || list[0].Answer.CommandID != 2 ||
		list[0].Answer.Outcome != protocol.OutcomeCancelled || list[0].Answer.AnsweredAt != answeredAt+1000 || list[1].Answer != nil {
		t.Fatalf("GET /approvals after a restart = %+v; want r2 with its dismissal, r3 unanswered", list)
	}
	if rec := c.session("a"); rec.PendingApprovals != 1 {
		t.Fatalf("pendingApprovals %d after a restart; want 1 (r3)", rec.PendingApprovals)
	}
}

// The server's clock stepping back (NTP) between a request and its answer
// does not make the answer look older than the request: the inbox still
// shows it, the count drops, and a second answer is refused; the same
// after a restart, from the answer read back from the store. Told apart
// by time from an answer to an earlier request with the same id, it was
// dropped there: the request showed unanswered again and a second,
// different answer was accepted (202) although the agent takes only the
// first. Answers are matched to their request by seq now.
func TestApprovalAnsweredAfterTheClockSteppedBack(t *testing.T) {
	t.Parallel()
	for _, restart := range []bool{false, true} {
		t.Run(map[bool]string{false: "live", true: "after a restart"}[restart], func(t *testing.T) {
			clk := newFakeClock()
			path := freshDB(t)
			s := start(t, app.Options{DBPath: path, Now: clk.Now})
			c := newClient(t, s)
			c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
			c.stream("/sessions/a/commands", protocol.HeaderInstance, "ia")
			c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "ia")
			clk.Add(-2 * time.Second)
			c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", answer("r1", "allow"))
			if restart {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				s = start(t, app.Options{DBPath: path, Now: clk.Now})
				c = newClient(t, s)
			}
			var list []protocol.Approval
			c.must(http.StatusOK, &list, "GET", "/approvals", nil)
			if len(list) != 1 || list[0].Answer == nil || list[0].Answer.CommandID != 1 {
				t.Fatalf("GET /approvals = %+v; want r1 answered by command 1", list)
			}
			if rec := c.session("a"); rec.PendingApprovals != 0 {
				t.Fatalf("pendingApprovals %d; want 0", rec.PendingApprovals)
			}
			if restart {
				c.stream("/sessions/a/commands", protocol.HeaderInstance, "ia", "Last-Event-ID", "1")
			}
			wantRefused(t, c, "a", answer("r1", "deny"), http.StatusConflict, protocol.CodeConflict, "command 1")
		})
	}
}

// A stored answer the agent never took (it withdrew the request first: a
// timeout, an abort, its exit) did not decide the request: the history
// said decidedBy client, with the answer's time, for a cancellation the
// agent made. It names the agent now; an answer the agent took names the
// client as before.
func TestApprovalHistoryNamesWhoDecided(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "i1")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"permission_response","requestId":"r1","optionId":"allow"}`)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("permission_resolved", "id", "r1", "outcome", "cancelled", "agentSeq", 4),
		ev("permission_requested", "id", "r2", "title", "And this?", "agentSeq", 5, "options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}}),
	}, protocol.HeaderInstance, "i1")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"permission_response","requestId":"r2","optionId":"allow"}`)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("permission_resolved", "id", "r2", "outcome", "selected", "optionId", "allow", "agentSeq", 6),
	}, protocol.HeaderInstance, "i1")
	var hist []protocol.Decision
	c.must(http.StatusOK, &hist, "GET", "/approvals/history", nil)
	if len(hist) != 2 {
		t.Fatalf("history %+v; want two decisions", hist)
	}
	if d := hist[1]; d.RequestID != "r1" || d.Status != "cancelled" || d.DecidedBy != "agent" || d.AnsweredAt != 0 || d.Auth != "" {
		t.Errorf("r1, withdrawn by the agent before it took the answer: %+v; want cancelled, decidedBy agent, no answeredAt or auth", d)
	}
	if d := hist[0]; d.RequestID != "r2" || d.Status != "approved" || d.DecidedBy != "anonymous" || d.AnsweredAt == 0 {
		t.Errorf("r2, answered: %+v; want approved, decidedBy anonymous, with answeredAt", d)
	}
}

// A restarted agent counts its ids from 1 again: a permission request
// may name a tool call id that, in the session, belongs to a tool call of
// an earlier turn. The reducer does not link the two (the transcript shows
// that tool call completed, not awaiting approval), and the inbox must not
// show the earlier turn's tool as the one the request is about: not
// while it waits, nor after a restart.
func TestApprovalNamesNoToolOfAnEarlierTurn(t *testing.T) {
	t.Parallel()
	db := t.TempDir() + "/rein.db"
	s := start(t, app.Options{DBPath: db})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", askedAgainAfterARestart())
	check := func(when string) {
		t.Helper()
		var list []protocol.Approval
		c.must(http.StatusOK, &list, "GET", "/approvals", nil)
		wantToolByIDOnly(t, when, list)
	}
	check("live")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = start(t, app.Options{DBPath: db})
	c = newClient(t, s)
	check("after a restart")
}

// askedAgainAfterARestart is a turn with tool call tool-1, then, from the
// agent restarted, a turn under the same id whose permission request
// perm-1 names tool-1 but has no tool call of its own.
func askedAgainAfterARestart() []any {
	return []any{
		ev("turn_started", "turnId", "t1", "source", "user", "agentSeq", 1),
		ev("tool_call_start", "id", "tool-1", "name", "read", "kind", "read", "title", "cat notes.md", "agentSeq", 2),
		ev("tool_call_end", "id", "tool-1", "status", "completed", "agentSeq", 3),
		ev("turn_completed", "turnId", "t1", "stopReason", "end_turn", "agentSeq", 4),
		ev("turn_started", "turnId", "t1", "source", "user", "agentSeq", 5),
		ev("permission_requested", "id", "perm-1", "toolCallId", "tool-1", "title", "May I delete build?", "agentSeq", 6,
			"options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}}),
	}
}

// wantToolByIDOnly checks that list is perm-1 of askedAgainAfterARestart,
// naming its tool call by id only.
func wantToolByIDOnly(t *testing.T, when string, list []protocol.Approval) {
	t.Helper()
	if len(list) != 1 || list[0].RequestID != "perm-1" || list[0].Tool == nil || *list[0].Tool != (protocol.ApprovalTool{ID: "tool-1"}) {
		b, _ := json.Marshal(list)
		t.Fatalf("%s: inbox %s; want perm-1 naming tool-1 by id only: the only tool call of that id is the earlier turn's", when, b)
	}
}
