package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/app"
)

// answer is a permission_response choosing option; dismiss is one with
// the outcome "cancelled".
func answer(req, option string) string {
	return `{"type":"permission_response","requestId":"` + req + `","optionId":"` + option + `"}`
}

func dismiss(req string) string {
	return `{"type":"permission_response","requestId":"` + req + `","outcome":"cancelled"}`
}

// wantRefused posts cmd to session id's commands and wants it refused
// with status and code, its message holding every one of want.
func wantRefused(t *testing.T, c *client, id, cmd string, status int, code protocol.Code, want ...string) {
	t.Helper()
	e := c.wantError(status, code, "POST", "/sessions/"+id+"/commands", cmd)
	for _, w := range want {
		if !strings.Contains(e.Message, w) {
			t.Errorf("%s: %q does not say %q", cmd, e.Message, w)
		}
	}
}

// An answer that cannot take effect is refused, not stored: the request
// was never asked in this session, its option is not one the request
// offers (agentd would answer the agent "cancelled"), it was answered
// already (the agent takes the first answer only), or it no longer waits
// (resolved, its turn ended, its agent exited). Nothing refused is
// stored; a retry of the accepted answer with its Idempotency-Key still
// gets its 202.
func TestPermissionAnswersThatCannotTakeEffect(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusCreated, nil, "POST", "/sessions/b", nil)
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "ia")
	c.stream("/sessions/b/commands", protocol.HeaderInstance, "ib")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "ia")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/b/events", permissionEvents("t1", "tc1", "rb", 1), protocol.HeaderInstance, "ib")

	// Never asked in this session (rb is b's).
	for _, req := range []string{"nope", "rb"} {
		wantRefused(t, c, "a", answer(req, "allow"), http.StatusNotFound, protocol.CodeNotFound, "requestId", `"`+req+`"`)
		wantRefused(t, c, "a", dismiss(req), http.StatusNotFound, protocol.CodeNotFound, "requestId", `"`+req+`"`)
	}
	// An option the request does not offer.
	wantRefused(t, c, "a", answer("r1", "maybe"), http.StatusBadRequest, protocol.CodeInvalid, "optionId", `"maybe"`, "allow, deny")

	// The first answer is stored; its retry with the key is replayed.
	wantSent(t, "the first answer", c.sendKeyed("a", "k1", answer("r1", "allow")), 1, false)
	wantSent(t, "its retry", c.sendKeyed("a", "k1", answer("r1", "allow")), 1, true)
	// Any other answer comes too late: the agent takes the first.
	for _, cmd := range []string{answer("r1", "deny"), answer("r1", "allow"), dismiss("r1")} {
		wantRefused(t, c, "a", cmd, http.StatusConflict, protocol.CodeConflict, "requestId", `"r1"`, "command 1")
	}
	if got := c.sendKeyed("a", "k2", answer("r1", "deny")); got.status != http.StatusConflict {
		t.Fatalf("a second answer with a key of its own: %d %s; want 409", got.status, got.body)
	}

	// Resolved by the agent: no longer waiting.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("permission_resolved", "id", "r1", "outcome", "selected", "optionId", "allow", "agentSeq", 4)}, protocol.HeaderInstance, "ia")
	wantRefused(t, c, "a", answer("r1", "allow"), http.StatusConflict, protocol.CodeConflict, "requestId", `"r1"`, "approved")

	// Cancelled (the agent's answer to an abort).
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("permission_requested", "id", "r2", "title", "Again?", "agentSeq", 5, "options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}}),
	}, protocol.HeaderInstance, "ia")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"abort"}`)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("permission_resolved", "id", "r2", "outcome", "cancelled", "agentSeq", 6)}, protocol.HeaderInstance, "ia")
	wantRefused(t, c, "a", dismiss("r2"), http.StatusConflict, protocol.CodeConflict, "requestId", `"r2"`, "cancelled")

	// Closed with its turn, and with its agent.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("permission_requested", "id", "r3", "title", "And this?", "agentSeq", 7, "options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}}),
		ev("turn_completed", "turnId", "t1", "stopReason", "end_turn", "agentSeq", 8),
		ev("permission_requested", "id", "r4", "title", "Outside a turn?", "agentSeq", 9, "options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}}),
		ev("agent_exited", "code", 1, "agentSeq", 10),
	}, protocol.HeaderInstance, "ia")
	for _, req := range []string{"r3", "r4"} {
		wantRefused(t, c, "a", answer(req, "allow"), http.StatusConflict, protocol.CodeConflict, "requestId", `"`+req+`"`, "no longer waiting")
	}

	// A request that waits can be dismissed, once.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/b/commands", dismiss("rb"))
	wantRefused(t, c, "b", answer("rb", "allow"), http.StatusConflict, protocol.CodeConflict, "command 1")

	// Nothing refused was stored.
	if rec := c.session("a"); rec.PendingCommands != 2 {
		t.Errorf("session a holds %d commands; want 2 (the first answer and the abort)", rec.PendingCommands)
	}
	if rec := c.session("b"); rec.PendingCommands != 1 {
		t.Errorf("session b holds %d commands; want 1 (the dismissal)", rec.PendingCommands)
	}
}

// A server started again knows which waiting requests were answered
// already (from the stored commands): a second answer is refused after a
// restart too, and one to a request nobody answered is accepted.
func TestPermissionAnsweredBeforeRestart(t *testing.T) {
	t.Parallel()
	path := freshDB(t)
	s := start(t, app.Options{DBPath: path})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "ia")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "ia")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("permission_requested", "id", "r2", "title", "Also?", "agentSeq", 4, "options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}}),
	}, protocol.HeaderInstance, "ia")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"prompt","text":"meanwhile"}`)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", answer("r1", "deny"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = start(t, app.Options{DBPath: path})
	c = newClient(t, s)
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "ia")
	wantRefused(t, c, "a", answer("r1", "allow"), http.StatusConflict, protocol.CodeConflict, `"r1"`, "command 2")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", answer("r2", "allow"))
	// The decision still names the answer the agent takes.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("permission_resolved", "id", "r1", "outcome", "selected", "optionId", "deny", "agentSeq", 5)}, protocol.HeaderInstance, "ia")
	var hist []protocol.Decision
	c.must(http.StatusOK, &hist, "GET", "/approvals/history", nil)
	if len(hist) != 1 || hist[0].DecidedBy != "anonymous" || hist[0].Status != "denied" {
		t.Fatalf("history %+v; want r1 denied, decided by the client's answer", hist)
	}
}

// Answers within one group commit: of two different answers to one
// request exactly one is stored; an answer behind the events that resolve
// its request in the same group is refused, and one behind the events
// that ask it is accepted.
func TestPermissionAnswersInOneGroup(t *testing.T) {
	t.Parallel()
	g := newGatedStore(t)
	s := start(t, app.Options{Store: g})
	c := newClient(t, s)
	for _, id := range []string{"a", "h"} {
		c.must(http.StatusCreated, nil, "POST", "/sessions/"+id, nil)
		c.stream("/sessions/"+id+"/commands", protocol.HeaderInstance, "i-"+id)
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "i-a")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("permission_requested", "id", "r2", "title", "Also?", "agentSeq", 4, "options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}}),
	}, protocol.HeaderInstance, "i-a")

	post := func(path string, body any, hdr ...string) func() int {
		return func() int { st, _ := c.do("POST", path, body, hdr...); return st }
	}
	got := oneGroup(t, s, g, post("/sessions/h/commands", `{"type":"prompt","text":"hold"}`),
		post("/sessions/a/commands", answer("r1", "allow")),
		post("/sessions/a/commands", answer("r1", "deny")),
		post("/sessions/a/events", []any{ev("permission_resolved", "id", "r2", "outcome", "cancelled", "agentSeq", 5)}, protocol.HeaderInstance, "i-a"),
		post("/sessions/a/commands", answer("r2", "allow")),
		post("/sessions/a/events", []any{
			ev("permission_requested", "id", "r3", "title", "New?", "agentSeq", 6, "options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}}),
		}, protocol.HeaderInstance, "i-a"),
		post("/sessions/a/commands", answer("r3", "allow")),
	)
	want := []int{http.StatusAccepted, http.StatusConflict, http.StatusAccepted, http.StatusConflict, http.StatusAccepted, http.StatusAccepted}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("one group's statuses %v; want %v", got, want)
		}
	}
	if rec := c.session("a"); rec.PendingCommands != 2 {
		t.Fatalf("session a holds %d commands; want 2 (r1's first answer and r3's)", rec.PendingCommands)
	}
}

// A sandbox instance that takes the session over ends the open turn as
// interrupted, and with it the requests the turn's agent made: they leave
// the inbox, and an answer to one is refused.
func TestPermissionClosedByTakeover(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "i1")
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "i2")
	var list []protocol.Approval
	c.must(http.StatusOK, &list, "GET", "/approvals", nil)
	if len(list) != 0 {
		t.Fatalf("GET /approvals after the takeover: %+v; want none", list)
	}
	if rec := c.session("a"); rec.PendingApprovals != 0 {
		t.Fatalf("pendingApprovals %d after the takeover; want 0", rec.PendingApprovals)
	}
	wantRefused(t, c, "a", answer("r1", "allow"), http.StatusConflict, protocol.CodeConflict, `"r1"`, "cancelled")
}

// A request asked outside any turn (after its turn ended, by an agent
// that asks between turns) ends with a takeover too: the instance that
// would have taken its answer is superseded, its posts refused for good,
// and the new one never heard of it. It stayed in the inbox as waiting,
// and an answer to it was stored (202), then dropped by the new agentd
// as posted by another one.
func TestPermissionOutsideATurnClosedByTakeover(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("turn_started", "turnId", "t1", "source", "user", "agentSeq", 1),
		ev("turn_completed", "turnId", "t1", "stopReason", "end_turn", "agentSeq", 2),
		ev("permission_requested", "id", "r1", "title", "Run it?", "agentSeq", 3,
			"options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}}),
	}, protocol.HeaderInstance, "i1")
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "i2")
	var list []protocol.Approval
	c.must(http.StatusOK, &list, "GET", "/approvals", nil)
	if len(list) != 0 {
		t.Fatalf("GET /approvals after the takeover: %+v; want none", list)
	}
	if rec := c.session("a"); rec.PendingApprovals != 0 {
		t.Fatalf("pendingApprovals %d after the takeover; want 0", rec.PendingApprovals)
	}
	wantRefused(t, c, "a", answer("r1", "allow"), http.StatusConflict, protocol.CodeConflict, `"r1"`, "cancelled")
	// The transcript says why the request ended.
	var why string
	for _, a := range c.artifactsOf("a") {
		if a["type"] == "notice" && strings.Contains(fmt.Sprint(a["message"]), `"i2" took over`) {
			why = fmt.Sprint(a["message"])
		}
	}
	if why == "" {
		t.Fatalf("no notice says the takeover ended what i1 left open: %+v", c.artifactsOf("a"))
	}
}

// answerSeq is answer naming the request's permission artifact too.
func answerSeq(req string, seq int64, option string) string {
	return `{"type":"permission_response","requestId":"` + req + `","optionId":"` + option + `","requestSeq":` + strconv.FormatInt(seq, 10) + `}`
}

// waitingSeq returns the seq GET /approvals lists session id's waiting
// request req with.
func waitingSeq(t *testing.T, c *client, id, req string) int64 {
	t.Helper()
	var list []protocol.Approval
	c.must(http.StatusOK, &list, "GET", "/approvals", nil)
	for _, p := range list {
		if p.SessionID == id && p.RequestID == req {
			if p.Seq == 0 {
				t.Fatalf("GET /approvals lists %s/%s without its seq: %+v", id, req, p)
			}
			return p.Seq
		}
	}
	t.Fatalf("GET /approvals does not list %s/%s: %+v", id, req, list)
	return 0
}

// An agent names a later request with an id used before, once the
// earlier one is resolved. An answer naming the request it answers
// (requestSeq, the permission artifact's seq GET /approvals lists) is
// refused when the id now names another request, whether that one waits,
// was answered or was resolved: the user would otherwise decide a request
// they never saw. Nothing refused is stored; the retry of a stored answer
// is still replayed; an answer without requestSeq goes by the id as
// before.
func TestPermissionAnswerNamesItsRequest(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	cmds := c.stream("/sessions/a/commands", protocol.HeaderInstance, "ia")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "ia")
	first := waitingSeq(t, c, "a", "r1")
	var arts []*protocol.Artifact
	c.must(http.StatusOK, &arts, "GET", "/sessions/a/artifacts", nil)
	if a := arts[first-1]; a.Type != protocol.ArtifactPermission || a.ID != "r1" {
		t.Fatalf("seq %d is %s %q; want the permission artifact r1", first, a.Type, a.ID)
	}

	// The agent withdraws r1 and, in its next turn, asks r1 again.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("permission_resolved", "id", "r1", "outcome", "cancelled", "agentSeq", 4),
		ev("turn_completed", "turnId", "t1", "stopReason", "end_turn", "agentSeq", 5),
		ev("turn_started", "turnId", "t2", "source", "user", "agentSeq", 6),
		ev("permission_requested", "id", "r1", "title", "Delete the repository?", "agentSeq", 7, "options", []any{
			map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"},
			map[string]any{"id": "deny", "name": "Deny", "kind": "reject_once"},
		}),
	}, protocol.HeaderInstance, "ia")
	second := waitingSeq(t, c, "a", "r1")
	if second == first {
		t.Fatalf("the new request r1 is listed at seq %d, the first one's", first)
	}
	// An answer to the first (what a page open since then shows) is not
	// applied to the second.
	for _, key := range []string{"", "k0"} {
		got := c.sendKeyed("a", key, answerSeq("r1", first, "allow"))
		if got.status != http.StatusConflict || !strings.Contains(got.body, `"conflict"`) {
			t.Fatalf("an answer to the withdrawn r1 (key %q): %d %s; want 409 conflict", key, got.status, got.body)
		}
		for _, w := range []string{"requestSeq", fmt.Sprintf("seq %d", first), fmt.Sprintf("seq %d", second), "Delete the repository?", "waits for an answer"} {
			if !strings.Contains(got.body, w) {
				t.Errorf("refusal %s does not say %q", got.body, w)
			}
		}
	}
	if rec := c.session("a"); rec.PendingCommands != 0 {
		t.Fatalf("session a holds %d commands after the refusals; want none", rec.PendingCommands)
	}

	// The answer to the second is stored, with the seq it names, and its
	// retry replayed.
	wantSent(t, "an answer to the new r1", c.sendKeyed("a", "k1", answerSeq("r1", second, "deny")), 1, false)
	wantSent(t, "its retry", c.sendKeyed("a", "k1", answerSeq("r1", second, "deny")), 1, true)
	var got protocol.Command
	if e := cmds.next(); json.Unmarshal([]byte(e.Data), &got) != nil || got.RequestID != "r1" || got.RequestSeq != second {
		t.Fatalf("command stream: %s; want the answer to r1 at seq %d", e.Data, second)
	}
	wantRefused(t, c, "a", answerSeq("r1", first, "allow"), http.StatusConflict, protocol.CodeConflict, "requestSeq", fmt.Sprintf("seq %d", second), "was answered by command 1")
	wantRefused(t, c, "a", answer("r1", "allow"), http.StatusConflict, protocol.CodeConflict, `"r1"`, "command 1")

	// Resolved: an answer to either is refused, saying what became of
	// the second.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("permission_resolved", "id", "r1", "outcome", "selected", "optionId", "deny", "agentSeq", 8)}, protocol.HeaderInstance, "ia")
	wantRefused(t, c, "a", answerSeq("r1", first, "allow"), http.StatusConflict, protocol.CodeConflict, "requestSeq", fmt.Sprintf("seq %d", second), "was denied")
	wantRefused(t, c, "a", answerSeq("r1", second, "allow"), http.StatusConflict, protocol.CodeConflict, "requestId", "no longer waiting", "denied")
	wantRefused(t, c, "a", answerSeq("r9", second, "allow"), http.StatusNotFound, protocol.CodeNotFound, `"r9"`)

	// Without requestSeq an answer goes to whichever request waits.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("permission_requested", "id", "r2", "title", "Also?", "agentSeq", 9, "options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}}),
	}, protocol.HeaderInstance, "ia")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", answer("r2", "allow"))
	if rec := c.session("a"); rec.PendingCommands != 2 {
		t.Fatalf("session a holds %d commands; want 2", rec.PendingCommands)
	}
}

// An answer stored for a request, read back at a restart, marks only
// that request answered: not a later one with its id asked in the same
// millisecond (a clock that does not move here), which its own answer
// must still reach.
func TestPermissionAnswerReadBackNamesItsRequest(t *testing.T) {
	t.Parallel()
	path := freshDB(t)
	now := func() time.Time { return time.UnixMilli(1732190001000) }
	s := start(t, app.Options{DBPath: path, Now: now})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "ia")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "ia")
	first := waitingSeq(t, c, "a", "r1")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", answerSeq("r1", first, "deny"))
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("permission_resolved", "id", "r1", "outcome", "selected", "optionId", "deny", "agentSeq", 4),
		ev("turn_completed", "turnId", "t1", "stopReason", "end_turn", "agentSeq", 5),
		ev("turn_started", "turnId", "t2", "source", "user", "agentSeq", 6),
		ev("permission_requested", "id", "r1", "title", "Again?", "agentSeq", 7, "options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}}),
	}, protocol.HeaderInstance, "ia")
	second := waitingSeq(t, c, "a", "r1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = start(t, app.Options{DBPath: path, Now: now})
	c = newClient(t, s)
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "ia")
	var list []protocol.Approval
	c.must(http.StatusOK, &list, "GET", "/approvals", nil)
	if len(list) != 1 || list[0].Seq != second || list[0].Answer != nil {
		t.Fatalf("GET /approvals after the restart: %+v; want r1 at seq %d, not answered", list, second)
	}
	if rec := c.session("a"); rec.PendingApprovals != 1 {
		t.Fatalf("pendingApprovals %d after the restart; want 1", rec.PendingApprovals)
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", answerSeq("r1", second, "allow"))
}

// A stored answer names the event that asked the request it was checked
// against (its Rein-Instance and agentSeq): agentd may hold a newer
// request under the same id, not yet posted, and must not hand it the
// answer. The first event of a request asked twice names it; a request
// asked again after it was resolved is named by its own event; a restart
// folds the same from the log; an event without agentSeq names nothing;
// a client cannot name one.
func TestPermissionAnswerNamesTheEventThatAskedIt(t *testing.T) {
	t.Parallel()
	path := freshDB(t)
	s := start(t, app.Options{DBPath: path})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	cmds := c.stream("/sessions/a/commands", protocol.HeaderInstance, "ia")
	next := func(what string, instance string, agentSeq int64) {
		t.Helper()
		var got protocol.Command
		e := cmds.next()
		if err := json.Unmarshal([]byte(e.Data), &got); err != nil {
			t.Fatal(err)
		}
		if got.RequestInstance != instance || got.RequestAgentSeq != agentSeq {
			t.Fatalf("%s: streamed %s; want requestInstance %q, requestAgentSeq %d", what, e.Data, instance, agentSeq)
		}
	}
	ask := func(req string, agentSeq int) any {
		return ev("permission_requested", "id", req, "title", "May I?", "agentSeq", agentSeq, "options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}})
	}
	// r1 asked by agentSeq 3, and asked again while it waits.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "ia")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ask("r1", 4)}, protocol.HeaderInstance, "ia")
	bogus := `{"type":"permission_response","requestId":"r1","optionId":"allow","requestInstance":"ix","requestAgentSeq":4}`
	wantSent(t, "the answer to r1", c.sendKeyed("a", "k1", bogus), 1, false)
	next("the answer to r1", "ia", 3)
	wantSent(t, "its retry", c.sendKeyed("a", "k1", bogus), 1, true)

	// Resolved, and asked again under its id: the new event names it.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("permission_resolved", "id", "r1", "outcome", "selected", "optionId", "allow", "agentSeq", 5),
		ask("r1", 6),
		ask("r2", 7),
	}, protocol.HeaderInstance, "ia")
	second := waitingSeq(t, c, "a", "r1")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", answerSeq("r1", second, "allow"))
	next("the answer to the second r1", "ia", 6)

	// After a restart, from the log; without agentSeq, nothing.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = start(t, app.Options{DBPath: path})
	c = newClient(t, s)
	cmds = c.stream("/sessions/a/commands", protocol.HeaderInstance, "ia", "Last-Event-ID", "2")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{
		ev("permission_requested", "id", "r3", "title", "And?", "options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}}),
	}, protocol.HeaderInstance, "ia")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", answer("r2", "allow"))
	next("the answer to r2 after a restart", "ia", 7)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", answer("r3", "allow"))
	next("the answer to r3, asked without agentSeq", "", 0)
}
