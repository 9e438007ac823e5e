package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/internal/postgres"
	"github.com/rein-ai/rein/server/pgtest"
	"github.com/rein-ai/rein/server/store"
)

// Two replicas on one PostgreSQL database, each answering any request:
// a session created on one is found on the other; a command sent to one
// reaches the sandbox whose command stream the other holds; events posted
// to both, interleaved, are stored once each and in order; a follower on
// either replica sees every change, and its model equals GET /artifacts.
func TestReplicasShareSessions(t *testing.T) {
	t.Parallel()
	a, _, ca, cb := twoReplicas(t, app.Options{})

	ca.must(http.StatusCreated, nil, "POST", "/sessions/s", nil)
	var rec protocol.Session
	cb.must(http.StatusOK, &rec, "GET", "/sessions/s", nil)
	if rec.ID != "s" || rec.Status != protocol.StatusBootstrapping {
		t.Fatalf("the other replica's record: %+v", rec)
	}

	// Followers on both replicas, the sandbox's stream on a.
	fa, fb := newModel(t), newModel(t)
	sa, sb := ca.stream("/sessions/s/stream"), cb.stream("/sessions/s/stream")
	fa.readSnapshot(sa)
	fb.readSnapshot(sb)
	cmds := ca.stream("/sessions/s/commands", protocol.HeaderInstance, "i1")

	// A command through b reaches the stream held on a: b learns from the
	// row that a sandbox is connected.
	var accepted struct {
		ID int64 `json:"id"`
	}
	cb.must(http.StatusAccepted, &accepted, "POST", "/sessions/s/commands", `{"type":"prompt","text":"hello"}`)
	for {
		e := cmds.next()
		if e.Event != protocol.SSECommand {
			continue
		}
		var c protocol.Command
		if err := json.Unmarshal([]byte(e.Data), &c); err != nil {
			t.Fatal(err)
		}
		if c.ID != accepted.ID || c.Text != "hello" {
			t.Fatalf("command stream got %+v; want the prompt with id %d", c, accepted.ID)
		}
		break
	}

	// Events from one sandbox instance, in order (agentSeq only grows),
	// each posted to both replicas at once, as a retry that lands on the
	// other replica would be: every commit of one replica makes the
	// other's cache stale, so this exercises the expect-and-redo path.
	// Each agentSeq is stored once.
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	post := func(c *client, seq int) {
		defer wg.Done()
		body := fmt.Sprintf(`[{"type":"text_delta","delta":"w%d ","agentSeq":%d}]`, seq, seq)
		if code, resp := c.do("POST", "/sessions/s/events", body, protocol.HeaderInstance, "i1"); code != http.StatusAccepted {
			errs <- fmt.Errorf("seq %d: %d %s", seq, code, resp)
		}
	}
	cb.must(http.StatusAccepted, nil, "POST", "/sessions/s/events", `[{"type":"turn_started","turnId":"t1","source":"user","agentSeq":1}]`, protocol.HeaderInstance, "i1")
	for i := 2; i < n; i++ {
		wg.Add(2)
		go post(ca, i)
		go post(cb, i)
		wg.Wait()
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/s/events", fmt.Sprintf(`[{"type":"text_end","agentSeq":%d},{"type":"turn_completed","turnId":"t1","stopReason":"end_turn","agentSeq":%d}]`, n, n+1), protocol.HeaderInstance, "i1")

	events, err := a.Store().Events(t.Context(), "s")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for i, e := range events {
		if e.Pos != int64(i+1) {
			t.Fatalf("event %d at pos %d: the log has a gap", i, e.Pos)
		}
		if seen[e.AgentSeq] {
			t.Fatalf("agentSeq %d stored twice", e.AgentSeq)
		}
		seen[e.AgentSeq] = true
	}
	if len(events) != n+1 {
		t.Fatalf("%d events stored; want %d", len(events), n+1)
	}
	rev := storedRev(t, a, "s")
	fa.readUntilRev(sa, rev)
	fb.readUntilRev(sb, rev)
	fa.equal(ca, "s")
	fb.equal(cb, "s")
	fa.equal(cb, "s")

	// The sandbox reconnects through b (the same instance, as after a
	// replica died or the balancer moved it): a's stream ends, b's gets
	// the next command, whichever replica it is sent to.
	cmds2 := cb.stream("/sessions/s/commands", protocol.HeaderInstance, "i1", "Last-Event-ID", fmt.Sprint(accepted.ID))
	cmds.expectEnd()
	ca.must(http.StatusAccepted, &accepted, "POST", "/sessions/s/commands", `{"type":"abort"}`)
	for {
		e := cmds2.next()
		if e.Event == protocol.SSECommand && e.ID == fmt.Sprint(accepted.ID) {
			break
		}
	}
	cb.must(http.StatusOK, &rec, "GET", "/sessions/s", nil)
	if rec.Status != protocol.StatusIdle && rec.Status != protocol.StatusLive {
		t.Errorf("after the takeover the session is %s; want connected", rec.Status)
	}

	// Deleted on one, gone on the other, its streams ended.
	ca.must(http.StatusNoContent, nil, "DELETE", "/sessions/s", nil)
	cb.wantError(http.StatusNotFound, protocol.CodeNotFound, "GET", "/sessions/s/artifacts", nil)
	sb.expectEnd()
}

// A sandbox whose session was just created on one replica is let in by
// another at once, with its token, even before that replica heard of the
// session (agentd takes a 401 as final). Rotated on one replica, the old
// token's command stream on the other ends and its writes are refused
// there (each commit checks the row).
func TestReplicasSandboxTokenOfANewSession(t *testing.T) {
	t.Parallel()
	const tok = "replica-client-token"
	_, _, ca, cb := twoReplicas(t, app.Options{APIToken: tok})
	client := []string{"Authorization", "Bearer " + tok}
	for i := range 5 {
		id := fmt.Sprintf("n%d", i)
		sbx := ca.create(id, client...)
		cb.must(http.StatusAccepted, nil, "POST", "/sessions/"+id+"/events", `{"type":"heartbeat"}`, "Authorization", "Bearer "+sbx)
		cmds := cb.stream("/sessions/"+id+"/commands", "Authorization", "Bearer "+sbx)
		fresh := ca.rotate(id, client...)
		// The stream the old token opened on the other replica ends.
		cmds.expectEnd()
		cb.wantError(http.StatusUnauthorized, protocol.CodeUnauthorized, "POST", "/sessions/"+id+"/events", `{"type":"heartbeat"}`, "Authorization", "Bearer "+sbx)
		cb.must(http.StatusAccepted, nil, "POST", "/sessions/"+id+"/events", `{"type":"heartbeat"}`, "Authorization", "Bearer "+fresh)
	}
}

// A permission requested through one replica is in the other's approvals
// inbox and stream, and leaves both when the agent resolves it.
func TestReplicasShareApprovals(t *testing.T) {
	t.Parallel()
	ca, cb, inbox := inboxOnTheOther(t)
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/events", permissionEvents("t1", "tc1", "r1", 1))
	e := inbox.next()
	if p := approvalData(t, e); e.Event != protocol.SSEApprovalAdded || p.SessionID != "p" || p.RequestID != "r1" || p.Tool == nil || p.Tool.Name != "bash" {
		t.Fatalf("the other replica's inbox got %+v; want r1 added with its tool", e)
	}
	var list []protocol.Approval
	cb.must(http.StatusOK, &list, "GET", "/approvals", nil)
	if len(list) != 1 || list[0].RequestID != "r1" {
		t.Fatalf("GET /approvals on the other replica: %+v", list)
	}
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/events", []any{ev("permission_resolved", "id", "r1", "outcome", "selected", "optionId", "allow", "agentSeq", 4)})
	if e := inbox.next(); e.Event != protocol.SSEApprovalResolved || !strings.Contains(e.Data, `"r1"`) {
		t.Fatalf("the other replica's inbox got %+v; want r1 resolved", e)
	}
	cb.must(http.StatusOK, &list, "GET", "/approvals", nil)
	if len(list) != 0 {
		t.Fatalf("GET /approvals on the other replica after the answer: %+v", list)
	}
}

// The other replica, which reads the permissions from the stored
// artifacts, does not name an earlier turn's tool call either as the one
// a request is about (TestApprovalNamesNoToolOfAnEarlierTurn).
func TestReplicasApprovalNamesNoToolOfAnEarlierTurn(t *testing.T) {
	t.Parallel()
	ca, cb, inbox := inboxOnTheOther(t)
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/events", askedAgainAfterARestart())
	if e := inbox.next(); e.Event != protocol.SSEApprovalAdded {
		t.Fatalf("the other replica's inbox got %+v; want perm-1 added", e)
	}
	var list []protocol.Approval
	cb.must(http.StatusOK, &list, "GET", "/approvals", nil)
	wantToolByIDOnly(t, "the other replica", list)
}

// inboxOnTheOther starts two replicas, session p (project x) with a
// sandbox's stream on a, and b's approvals stream past its snapshot.
func inboxOnTheOther(t *testing.T) (ca, cb *client, inbox *sseStream) {
	t.Helper()
	_, _, ca, cb = twoReplicas(t, app.Options{})
	ca.must(http.StatusCreated, nil, "POST", "/sessions/p", map[string]string{"project": "x"})
	ca.stream("/sessions/p/commands", protocol.HeaderInstance, "i1")
	inbox = cb.stream("/approvals/stream")
	for inbox.next().Event != protocol.SSESnapshotComplete {
	}
	return ca, cb, inbox
}

// An answer stored through one replica reaches the other's inbox: its
// approvals stream sends approval_answered, its GET /approvals shows the
// answer, and its session records stop counting the request.
func TestReplicasShareAnswers(t *testing.T) {
	t.Parallel()
	ca, cb, inbox := inboxOnTheOther(t)
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/events", permissionEvents("t1", "tc1", "r1", 1))
	if e := inbox.next(); e.Event != protocol.SSEApprovalAdded {
		t.Fatalf("the other replica's inbox got %+v; want r1 added", e)
	}
	sessions := cb.stream("/sessions/stream?project=x")
	if e := sessions.next(); !strings.Contains(e.Data, `"pendingApprovals":1`) {
		t.Fatalf("the other replica's session snapshot %+v; want pendingApprovals 1", e)
	}
	for sessions.next().Event != protocol.SSESnapshotComplete {
	}
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/commands", answer("r1", "deny"))
	e := inbox.next()
	if p := approvalData(t, e); e.Event != protocol.SSEApprovalAnswered || p.RequestID != "r1" || p.Answer == nil ||
		p.Answer.CommandID != 1 || p.Answer.OptionID != "deny" || p.Answer.OptionKind != "reject_once" || p.Answer.AnsweredAt == 0 {
		t.Fatalf("the other replica's inbox got %+v; want r1 answered by command 1 with deny", e)
	}
	var list []protocol.Approval
	cb.must(http.StatusOK, &list, "GET", "/approvals", nil)
	if len(list) != 1 || list[0].Answer == nil || list[0].Answer.CommandID != 1 {
		t.Fatalf("GET /approvals on the other replica: %+v; want r1 with its answer", list)
	}
	for {
		e := sessions.next()
		if e.Event != protocol.SSESessionUpdated || !strings.Contains(e.Data, `"pendingApprovals"`) {
			continue // the command counts
		}
		if !strings.Contains(e.Data, `"pendingApprovals":0`) {
			t.Fatalf("the other replica's session stream %+v; want pendingApprovals 0", e)
		}
		break
	}
	if rec := cb.session("p"); rec.PendingApprovals != 0 {
		t.Fatalf("pendingApprovals %d on the other replica; want 0", rec.PendingApprovals)
	}
}

// Two replicas creating the same session at once: one 201, one 409, and
// nothing else of the loser's group fails with it.
func TestReplicasCreateRace(t *testing.T) {
	t.Parallel()
	_, _, ca, cb := twoReplicas(t, app.Options{})
	for i := range 10 {
		id := fmt.Sprintf("race%d", i)
		codes := make(chan int, 2)
		for _, c := range []*client{ca, cb} {
			go func() {
				code, _ := c.do("POST", "/sessions/"+id, nil)
				codes <- code
			}()
		}
		got := []int{<-codes, <-codes}
		if !(got[0] == http.StatusCreated && got[1] == http.StatusConflict) && !(got[1] == http.StatusCreated && got[0] == http.StatusConflict) {
			t.Fatalf("creating %s on both replicas at once: %v; want one 201 and one 409", id, got)
		}
	}
}

// A follower on another replica gets the records the writing replica
// published (text deltas as artifact_updated), from the change log, not
// the whole artifact again for every delta.
func TestReplicasRelayDeltas(t *testing.T) {
	t.Parallel()
	a, _, ca, cb := twoReplicas(t, app.Options{})
	ca.must(http.StatusCreated, nil, "POST", "/sessions/d", nil)
	m := newModel(t)
	st := cb.stream("/sessions/d/stream")
	m.readSnapshot(st)
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/d/events", []any{ev("turn_started", "turnId", "t1", "source", "user"), ev("text_delta", "delta", "one")})
	for i := range 10 {
		ca.must(http.StatusAccepted, nil, "POST", "/sessions/d/events", []any{ev("text_delta", "delta", fmt.Sprintf(" w%d", i))})
	}
	rev := storedRev(t, a, "d")
	updates := 0
	for m.lastID == "" || atoi(t, m.lastID) < rev {
		e := st.next()
		if e.Event == protocol.SSEArtifactUpdated {
			updates++
		}
		m.apply(e)
	}
	m.equal(cb, "d")
	if updates == 0 {
		t.Fatal("the other replica's follower got no artifact_updated: it was sent whole artifacts, not the change log")
	}
	// A new instance takes the stream over mid-turn on b: the server ends
	// the open turn as interrupted (records it logs too), and the next
	// events, through a, continue the chain.
	cb.stream("/sessions/d/commands", protocol.HeaderInstance, "i2")
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/d/events", []any{ev("turn_started", "turnId", "t2", "source", "user"), ev("text_delta", "delta", "two")}, protocol.HeaderInstance, "i2")
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/d/events", []any{ev("text_delta", "delta", " more")}, protocol.HeaderInstance, "i2")
	m.readUntilRev(st, storedRev(t, a, "d"))
	m.equal(ca, "d")
}

// twoReplicas starts two servers with opts on one fresh PostgreSQL
// database, and a client of each.
func twoReplicas(t *testing.T, opts app.Options) (a, b *app.App, ca, cb *client) {
	t.Helper()
	opts.DBPath = pgtest.NewDatabase(t)
	a, b = start(t, opts), start(t, opts)
	return a, b, newClient(t, a), newClient(t, b)
}

// A command retried on another replica with its Idempotency-Key is
// answered with the first's id, and sends of one key racing on both
// replicas store it once: the loser's commit expects a session version
// the winner's changed, is redone, and then finds the key.
func TestReplicasIdempotentCommands(t *testing.T) {
	t.Parallel()
	_, _, ca, cb := twoReplicas(t, app.Options{})
	ca.must(http.StatusCreated, nil, "POST", "/sessions/k", nil)
	cmds := cb.stream("/sessions/k/commands", protocol.HeaderInstance, "i1")
	wantSent(t, "sent to a", ca.sendKeyed("k", "first", `{"type":"prompt","text":"one"}`), 1, false)
	wantSent(t, "retried on b", cb.sendKeyed("k", "first", `{"type":"prompt","text":"one"}`), 1, true)
	wantCommand(t, cmds, 1, "one")
	for i := range 10 {
		key, text := fmt.Sprintf("race%d", i), fmt.Sprintf(`{"type":"prompt","text":"race %d"}`, i)
		answers := make(chan sent, 4)
		for _, c := range []*client{ca, cb, ca, cb} {
			go func() { answers <- c.sendKeyed("k", key, text) }()
		}
		stored, id := 0, int64(0)
		for range 4 {
			r := <-answers
			if r.status != http.StatusAccepted || (id != 0 && r.id != id) {
				t.Fatalf("%s on both replicas at once: %d %s id %d (others got %d); want 202 and one id", key, r.status, r.body, r.id, id)
			}
			id = r.id
			if !r.replayed {
				stored++
			}
		}
		if stored != 1 || id != int64(i+2) {
			t.Fatalf("%s on both replicas at once: stored %d times as command %d; want once, as %d", key, stored, id, i+2)
		}
		wantCommand(t, cmds, id, fmt.Sprintf("race %d", i))
	}
	if rec := ca.session("k"); rec.PendingCommands != 11 {
		t.Fatalf("pendingCommands %d; want 11", rec.PendingCommands)
	}
}

// deafStore is a replica's PostgreSQL store that passes on none of the
// other replicas' announcements while deaf is set, as when they are lost
// (a replica killed between its commit and its NOTIFY) or merged into one
// while this replica was busy.
type deafStore struct {
	*postgres.Store
	deaf atomic.Bool
}

func (d *deafStore) Watch(ctx context.Context, changed func(ids []string)) error {
	return d.Store.Watch(ctx, func(ids []string) {
		if ids == nil || !d.deaf.Load() {
			changed(ids)
		}
	})
}

// openPostgres opens the PostgreSQL store of dsn for a replica a test
// starts on it wrapped (a store that fails or misses what the test
// says), closed when the test ends.
func openPostgres(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	pg, err := postgres.Open(t.Context(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	return pg
}

// startDeaf starts a replica on dsn whose store can be made deaf.
func startDeaf(t *testing.T, dsn string) (*app.App, *deafStore) {
	t.Helper()
	pg := openPostgres(t, dsn)
	d := &deafStore{Store: pg}
	return start(t, app.Options{Store: d}), d
}

// A client can follow on a replica a session that replica never cached:
// a stream reads the database. Created and deleted on another replica
// while this one heard of neither, or of both at once, its followers here
// must end all the same, whichever way this replica reads the session
// again: on the one announcement that names it; once its watch is back
// and it reads every session (the announcements lost meanwhile); or at
// the poll, when no announcement ever comes (a replica killed between its
// commit and its NOTIFY), which reads the sessions followed here, cached
// or not. Otherwise the follower stays for as long as the client does,
// and a session created again under the id reaches it as the old one's.
func TestReplicasDeleteEndsStreamsOfUncachedSession(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		readBack func(*server.Server)
	}{
		{"announcement", func(s *server.Server) { server.ReadAgain(s, "x") }},
		{"resync", server.ReadAllAgain},
		{"poll", server.Poll},
	} {
		t.Run(c.name, func(t *testing.T) {
			dsn := pgtest.NewDatabase(t)
			a := start(t, app.Options{DBPath: dsn})
			b, deaf := startDeaf(t, dsn)
			ca, cb := newClient(t, a), newClient(t, b)
			deaf.deaf.Store(true)
			ca.must(http.StatusCreated, nil, "POST", "/sessions/x", nil)
			ca.must(http.StatusAccepted, nil, "POST", "/sessions/x/events", []any{ev("text_delta", "delta", "hi", "agentSeq", 1)}, protocol.HeaderInstance, "i1")
			follower := cb.stream("/sessions/x/stream")
			newModel(t).readSnapshot(follower)
			ca.must(http.StatusNoContent, nil, "DELETE", "/sessions/x", nil)
			if c.name != "poll" {
				deaf.deaf.Store(false)
			}
			c.readBack(b.Server)
			if n := server.Subscribers(b.Server, "x"); n != 0 {
				t.Fatalf("b still has %d subscribers of the deleted session", n)
			}
			follower.expectEnd()
			follower.close()
		})
	}
}

// A session deleted and created again under its id on one replica, while
// another replica heard of neither (or of both at once), is a new session
// on that one too: its cached record of the old one, whose row version
// the new row's is below, is dropped with its streams, and writes through
// it reach the new session instead of failing on a row it never takes.
func TestReplicasSessionCreatedAgain(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	a := start(t, app.Options{DBPath: dsn})
	b, deaf := startDeaf(t, dsn)
	ca, cb := newClient(t, a), newClient(t, b)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/r", nil)
	for i := range 5 {
		ca.must(http.StatusAccepted, nil, "POST", "/sessions/r/events", []any{ev("text_delta", "delta", "old", "agentSeq", i+1)}, protocol.HeaderInstance, "i1")
	}
	// b writes the old session last, so it caches its newest row.
	cb.must(http.StatusAccepted, nil, "POST", "/sessions/r/events", []any{ev("text_delta", "delta", "old", "agentSeq", 6)}, protocol.HeaderInstance, "i1")
	old := cb.stream("/sessions/r/stream")
	newModel(t).readSnapshot(old)

	deaf.deaf.Store(true)
	ca.must(http.StatusNoContent, nil, "DELETE", "/sessions/r", nil)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/r", nil)

	var got protocol.EventsAccepted
	cb.must(http.StatusAccepted, &got, "POST", "/sessions/r/events", []any{ev("text_delta", "delta", "new", "agentSeq", 1)}, protocol.HeaderInstance, "i1")
	if got.Accepted != 1 || got.Duplicates != 0 {
		t.Fatalf("the new session's first event through b: %+v; want it stored", got)
	}
	// The old session's follower on b is told it is gone.
	old.expectEnd()
	var arts []map[string]any
	cb.must(http.StatusOK, &arts, "GET", "/sessions/r/artifacts", nil)
	if len(arts) != 1 || !strings.Contains(fmt.Sprint(arts[0]), "new") || strings.Contains(fmt.Sprint(arts[0]), "old") {
		t.Fatalf("the new session's artifacts through b: %v; want its one message, \"new\"", arts)
	}
}

// A sandbox of a session deleted and created again on one replica names
// the old createdAt (protocol.HeaderSessionCreated) on another that heard
// of neither: that replica's cache still holds the old session, which the
// request matches, yet it is refused once the commit finds the row
// changed, before its cursor or events are taken. And the new session's
// own sandbox, naming the new createdAt, is not refused on the word of
// that replica's stale cache (agentd takes the refusal as final): the
// replica reads the row and serves it.
func TestReplicasSandboxOfADeletedNamesake(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	// The real time, held still: b's clock runs on, and a session it
	// took for years old would time out there at once.
	clock := &fakeClock{t: time.Now()}
	a := start(t, app.Options{DBPath: dsn, Now: clock.Now})
	b, deaf := startDeaf(t, dsn)
	ca, cb := newClient(t, a), newClient(t, b)
	// again deletes and creates id again through a while b hears
	// nothing, b having cached the old session's newest row; it returns
	// the old and the new createdAt.
	again := func(id string) (oldAt, newAt string) {
		t.Helper()
		deaf.deaf.Store(false)
		ca.must(http.StatusCreated, nil, "POST", "/sessions/"+id, `{"prompt":"old first"}`)
		oldAt = itoa(ca.session(id).CreatedAt)
		old := cb.stream("/sessions/"+id+"/commands", protocol.HeaderInstance, "old", protocol.HeaderSessionCreated, oldAt)
		wantCommand(t, old, 1, "old first")
		old.close()
		for i := range 3 {
			cb.must(http.StatusAccepted, nil, "POST", "/sessions/"+id+"/events", []any{ev("text_delta", "delta", "old text", "agentSeq", i+1)},
				protocol.HeaderInstance, "old", protocol.HeaderSessionCreated, oldAt)
		}
		deaf.deaf.Store(true)
		ca.must(http.StatusNoContent, nil, "DELETE", "/sessions/"+id, nil)
		clock.Add(time.Millisecond)
		ca.must(http.StatusCreated, nil, "POST", "/sessions/"+id, `{"prompt":"new first"}`)
		return oldAt, itoa(ca.session(id).CreatedAt)
	}

	oldAt, _ := again("r")
	cb.wantError(http.StatusConflict, protocol.CodeConflict, "POST", "/sessions/r/events", []any{ev("text_delta", "delta", "old text", "agentSeq", 4)},
		protocol.HeaderInstance, "old", protocol.HeaderCommandCursor, "1", protocol.HeaderSessionCreated, oldAt)
	if st, status := cb.tryStream("/sessions/r/commands", protocol.HeaderInstance, "old", "Last-Event-ID", "1", protocol.HeaderSessionCreated, oldAt); status != http.StatusConflict {
		if st != nil {
			st.close()
		}
		t.Fatalf("the old sandbox's command stream through b: status %d; want 409", status)
	}
	if rec := ca.session("r"); rec.AckedCommandID != 0 || rec.PendingCommands != 1 || rec.Status != protocol.StatusBootstrapping {
		t.Fatalf("after the old sandbox's requests through b: acked %d, pending %d, status %s; want 0, 1, bootstrapping", rec.AckedCommandID, rec.PendingCommands, rec.Status)
	}
	var page struct{ Events []json.RawMessage }
	ca.must(http.StatusOK, &page, "GET", "/sessions/r/events", nil)
	if len(page.Events) != 0 {
		t.Fatalf("the new session's event log holds %s; want nothing of the old session's", page.Events)
	}

	_, newAt := again("q")
	cmds := cb.stream("/sessions/q/commands", protocol.HeaderInstance, "new", protocol.HeaderSessionCreated, newAt)
	defer cmds.close()
	if got := cmds.resp.Header.Get(protocol.HeaderSessionCreated); got != newAt {
		t.Fatalf("answer's %s %q through b; want %s", protocol.HeaderSessionCreated, got, newAt)
	}
	wantCommand(t, cmds, 1, "new first")
	var got protocol.EventsAccepted
	cb.must(http.StatusAccepted, &got, "POST", "/sessions/q/events", []any{ev("text_delta", "delta", "new text", "agentSeq", 1)},
		protocol.HeaderInstance, "new", protocol.HeaderCommandCursor, "1", protocol.HeaderSessionCreated, newAt)
	if got.Accepted != 1 {
		t.Fatalf("the new session's first event through b: %+v; want it stored", got)
	}
}

// A replica whose LISTEN connection is killed (pg_terminate_backend, as a
// database restart or a network cut ends it) listens again and reads
// every session once more: what other replicas committed while it was
// not listening reaches its session stream and approvals inbox, which
// its poll of followed sessions does not cover, once each.
func TestReplicasListenerKilled(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	a, b := start(t, app.Options{DBPath: dsn}), start(t, app.Options{DBPath: dsn})
	ca, cb := newClient(t, a), newClient(t, b)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/p", nil)
	ca.stream("/sessions/p/commands", protocol.HeaderInstance, "i1")
	// Wait until b has heard of p's stream (its status live: in the
	// snapshot, when b had heard of it by then, or after it in an update,
	// or in p's creation when b heard of p only once it was live), so
	// what follows on the session stream is what happens while it is not
	// listening. Waiting for an update alone waited out the heartbeat
	// timeout (45 s, then "disconnected") whenever the snapshot already
	// had it, which was most runs; ignoring the creation waited out the
	// stream whenever b's first LISTEN came after p's commits (its
	// backlog read then finds p live), a run in ten under load.
	sessions := cb.stream("/sessions/stream")
	live, snapshot := false, true
	for !live || snapshot {
		e := sessions.next()
		switch {
		case e.Event == protocol.SSESnapshotComplete:
			snapshot = false
		case (e.Event == protocol.SSESessionSnapshot || e.Event == protocol.SSESessionCreated || e.Event == protocol.SSESessionUpdated) &&
			strings.Contains(e.Data, `"id":"p"`) && strings.Contains(e.Data, `"status":"live"`):
			live = true
		}
	}
	inbox := cb.stream("/approvals/stream")
	for inbox.next().Event != protocol.SSESnapshotComplete {
	}

	admin, db := adminConn(t, dsn)
	ctx := t.Context()
	rows, _ := admin.Query(ctx, `SELECT pg_terminate_backend(pid), pid FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'listen %'`, db)
	var pids []int32
	for rows.Next() {
		var ok bool
		var pid int32
		if err := rows.Scan(&ok, &pid); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(pids) != 2 {
		t.Fatalf("killed %d listening connections; want both replicas' 2", len(pids))
	}
	// Gone (pg_terminate_backend only signals): what a commits from here
	// on is announced to nobody until the listeners are back.
	for {
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)`, pids).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	ca.must(http.StatusCreated, nil, "POST", "/sessions/n1", nil)
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "i1")

	created := func(want string) {
		t.Helper()
		for {
			e := sessions.next()
			if e.Event == protocol.SSESessionUpdated && strings.Contains(e.Data, `"p"`) {
				continue // p's pending approvals and status
			}
			if e.Event != protocol.SSESessionCreated || !strings.Contains(e.Data, `"id":"`+want+`"`) {
				t.Fatalf("b's session stream: %+v; want %s created (once)", e, want)
			}
			return
		}
	}
	created("n1")
	if e := inbox.next(); e.Event != protocol.SSEApprovalAdded || approvalData(t, e).RequestID != "r1" {
		t.Fatalf("b's inbox: %+v; want r1 added", e)
	}
	// Listening again: the next commit is announced, and n1 does not come
	// a second time.
	ca.must(http.StatusCreated, nil, "POST", "/sessions/n2", nil)
	created("n2")
}

// failingLoads is a replica's PostgreSQL store whose reads of every
// session fail while fail is set, as while the database is unreachable
// again just after its listener got back; Watch's callback is kept so
// the test can say that announcements were missed.
type failingLoads struct {
	*postgres.Store
	fail          atomic.Bool
	failed, loads atomic.Int64
	changed       atomic.Pointer[func(ids []string)]
}

func (f *failingLoads) LoadSessions(ctx context.Context) ([]store.Session, error) {
	if f.fail.Load() {
		f.failed.Add(1)
		return nil, errors.New("database unreachable")
	}
	f.loads.Add(1)
	return f.Store.LoadSessions(ctx)
}

func (f *failingLoads) Watch(ctx context.Context, changed func(ids []string)) error {
	f.changed.Store(&changed)
	return f.Store.Watch(ctx, changed)
}

// A replica that cannot read the sessions again after missing
// announcements tries again on its next wake-up (an announcement, or
// its poll), not at once in a loop against the failing database while
// it lasts; and it does read them once the database answers.
func TestReplicasMissedAnnouncementsReadAgainLater(t *testing.T) {
	t.Parallel()
	pg := openPostgres(t, pgtest.NewDatabase(t))
	f := &failingLoads{Store: pg}
	s := start(t, app.Options{Store: f})
	c := newClient(t, s)
	for deadline := time.Now().Add(streamDeadline); f.changed.Load() == nil || f.loads.Load() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the replica never listened and read the sessions")
		}
	}
	f.fail.Store(true)
	(*f.changed.Load())(nil)
	for deadline := time.Now().Add(streamDeadline); f.failed.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the replica never read the sessions again after missing announcements")
		}
	}
	// The writer goes on with its work meanwhile; a few wake-ups of its
	// poll may try again, a loop would try thousands of times.
	for i := range 10 {
		c.must(http.StatusCreated, nil, "POST", fmt.Sprintf("/sessions/s%d", i), nil)
	}
	if n := f.failed.Load(); n > 3 {
		t.Fatalf("the sessions were read again %d times while the database failed; want a try per wake-up", n)
	}
	loads := f.loads.Load()
	f.fail.Store(false)
	for deadline := time.Now().Add(streamDeadline); f.loads.Load() == loads; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the replica never read the sessions again once the database answered")
		}
	}
}

// Events a sandbox posts through one replica keep its session alive on
// every replica, as on one server ("no heartbeat or event within the
// heartbeat timeout"): agentd sends no heartbeat while it has a backlog
// to post, and a replica that heard of the events but timed the session
// out from its last heartbeat marked a busy session disconnected (and
// then refused prompts with no_sandbox).
func TestReplicasEventsKeepTheSessionAlive(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	opts := app.Options{Now: clk.Now}
	a, b, ca, cb := twoReplicas(t, opts)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/s", nil)
	ca.stream("/sessions/s/commands", protocol.HeaderInstance, "i1")
	f := newModel(t)
	st := cb.stream("/sessions/s/stream")
	f.readSnapshot(st)
	// Every 20 s a batch of events through a, none through b, no
	// heartbeat, for well past the 45 s heartbeat timeout.
	for i := range 5 {
		clk.Add(20 * time.Second)
		ca.must(http.StatusAccepted, nil, "POST", "/sessions/s/events", []any{ev("text_delta", "delta", fmt.Sprintf("w%d ", i), "agentSeq", i+1)}, protocol.HeaderInstance, "i1")
		f.readUntilRev(st, storedRev(t, a, "s")) // b heard of it
		server.RunTimeouts(b.Server)
		if rec := cb.session("s"); rec.Status != protocol.StatusLive {
			t.Fatalf("%d s after the stream opened, with events every 20 s: b says %s; want live", 20*(i+1), rec.Status)
		}
	}
	// Silent for the timeout: disconnected, as the sandbox is gone.
	clk.Add(46 * time.Second)
	server.RunTimeouts(b.Server)
	if rec := cb.session("s"); rec.Status != protocol.StatusDisconnected {
		t.Fatalf("silent for the heartbeat timeout: %s; want disconnected", rec.Status)
	}
}

// A session marked disconnected by the heartbeat timeout while a replica
// still holds its command stream (a database outage longer than the
// timeout stored no heartbeat, and the timeout fired once writes came
// back) is connected again by a heartbeat through another replica, as on
// one server: "a heartbeat turns a disconnected session live again while
// a sandbox holds its command stream". The replica the heartbeat reached
// cannot tell from the row that a stream is held; it used to leave the
// session disconnected and refuse prompts with no_sandbox, while the
// holding replica took them, until a post happened to reach the holder.
// The holder, hearing of the activity, makes the session live again.
func TestReplicasHeartbeatElsewhereReconnectsAHeldSession(t *testing.T) {
	t.Parallel()
	for name, post := range map[string]any{
		"heartbeat": `{"type":"heartbeat"}`,
		"events":    []any{ev("text_delta", "delta", "more", "agentSeq", 1)},
	} {
		t.Run(name, func(t *testing.T) { heartbeatElsewhere(t, post) })
	}
}

func heartbeatElsewhere(t *testing.T, post any) {
	clk := newFakeClock()
	a, b, ca, cb := twoReplicas(t, app.Options{Now: clk.Now})
	ca.must(http.StatusCreated, nil, "POST", "/sessions/s", nil)
	cmds := ca.stream("/sessions/s/commands", protocol.HeaderInstance, "i1")
	// No heartbeat stored for the timeout: a marks the session
	// disconnected, its stream still open.
	clk.Add(46 * time.Second)
	server.RunTimeouts(a.Server)
	if rec := ca.session("s"); rec.Status != protocol.StatusDisconnected {
		t.Fatalf("silent for the heartbeat timeout: %s; want disconnected", rec.Status)
	}
	// The sandbox's next heartbeat (or events) reaches b.
	cb.must(http.StatusAccepted, nil, "POST", "/sessions/s/events", post, protocol.HeaderInstance, "i1")
	server.ReadAgain(a.Server, "s") // a hears of it
	server.ReadAgain(b.Server, "s") // and b of what a did then
	for name, c := range map[string]*client{"a": ca, "b": cb} {
		if rec := c.session("s"); rec.Status != protocol.StatusLive {
			t.Errorf("after a post through b, the stream held on a: %s says %s; want live", name, rec.Status)
		}
	}
	cb.must(http.StatusAccepted, nil, "POST", "/sessions/s/commands", `{"type":"prompt","text":"through b"}`)
	if e := cmds.next(); e.Event != protocol.SSECommand || !strings.Contains(e.Data, "through b") {
		t.Fatalf("a's command stream got %s %s; want the prompt sent through b", e.Event, e.Data)
	}
}

// failingLoad is a replica's store that hears nothing of the others, not
// even the "read everything again" its listener's (re)connection asks for
// (deafStore passes that on, and a session created before it came would
// then be read with its token), and whose LoadSession fails on demand.
type failingLoad struct {
	*postgres.Store
	fail atomic.Bool
}

func (f *failingLoad) Watch(ctx context.Context, changed func(ids []string)) error {
	return f.Store.Watch(ctx, func([]string) {})
}

func (f *failingLoad) LoadSession(ctx context.Context, id string) (store.Session, *[32]byte, error) {
	if f.fail.Load() {
		return store.Session{}, nil, errors.New("database unreachable")
	}
	return f.Store.LoadSession(ctx, id)
}

// A replica that does not know a sandbox token yet checks it against the
// session's row; when that read fails, the answer is 503, which agentd
// retries, not the 401 it takes as final (it would exit, ending the
// sandbox's agent over a database hiccup).
func TestReplicasTokenCheckTheDatabaseFailsIsUnavailable(t *testing.T) {
	t.Parallel()
	const tok = "replica-client-token"
	dsn := pgtest.NewDatabase(t)
	a := start(t, app.Options{DBPath: dsn, APIToken: tok})
	pg := openPostgres(t, dsn)
	f := &failingLoad{Store: pg} // b does not hear of the session: it must read its row
	b := start(t, app.Options{Store: f, APIToken: tok})
	ca, cb := newClient(t, a), newClient(t, b)
	sbx := ca.create("u", "Authorization", "Bearer "+tok)
	f.fail.Store(true)
	cb.wantError(http.StatusServiceUnavailable, protocol.CodeUnavailable, "POST", "/sessions/u/events", `{"type":"heartbeat"}`, "Authorization", "Bearer "+sbx)
	f.fail.Store(false)
	cb.must(http.StatusAccepted, nil, "POST", "/sessions/u/events", `{"type":"heartbeat"}`, "Authorization", "Bearer "+sbx)
	cb.wantError(http.StatusUnauthorized, protocol.CodeUnauthorized, "POST", "/sessions/u/events", `{"type":"heartbeat"}`, "Authorization", "Bearer not-"+sbx)
}

// A replica that has not heard of a session created on another one
// reads its row before it answers 404; when that read fails, the answer
// is 503, not a 404 the database does not say: agentd takes a 404 as the
// session's deletion and exits, and a client tells its user the session
// is gone.
func TestReplicasUnreadSessionIsUnavailable(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	a := start(t, app.Options{DBPath: dsn})
	f := &failingLoad{Store: openPostgres(t, dsn)} // b does not hear of the session
	b := start(t, app.Options{Store: f})
	ca, cb := newClient(t, a), newClient(t, b)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/u", nil)
	f.fail.Store(true)
	cb.wantError(http.StatusServiceUnavailable, protocol.CodeUnavailable, "POST", "/sessions/u/events", `{"type":"heartbeat"}`, protocol.HeaderInstance, "i1")
	cb.wantError(http.StatusServiceUnavailable, protocol.CodeUnavailable, "POST", "/sessions/u/commands", `{"type":"prompt","text":"hi","queue":true}`)
	cb.wantError(http.StatusServiceUnavailable, protocol.CodeUnavailable, "POST", "/sessions/u/token", nil)
	cb.wantError(http.StatusServiceUnavailable, protocol.CodeUnavailable, "DELETE", "/sessions/u", nil)
	f.fail.Store(false)
	cb.must(http.StatusAccepted, nil, "POST", "/sessions/u/events", `{"type":"heartbeat"}`, protocol.HeaderInstance, "i1")
	cb.wantError(http.StatusNotFound, protocol.CodeNotFound, "POST", "/sessions/never/events", `{"type":"heartbeat"}`, protocol.HeaderInstance, "i1")
}

// A command sent to a replica whose view says no sandbox is connected is
// refused with no_sandbox only once the session's row says so too; when
// that read fails, the answer is 503, which the client resends, not a
// no_sandbox the database may not say (a sandbox may hold the stream on
// another replica): the product's clients take that as final.
func TestReplicasSandboxCheckTheDatabaseFailsIsUnavailable(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	a := start(t, app.Options{DBPath: dsn})
	f := &failingLoad{Store: openPostgres(t, dsn)} // b does not hear of the stream
	b := start(t, app.Options{Store: f})
	ca, cb := newClient(t, a), newClient(t, b)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/h", nil)
	// b reads the session, bootstrapping, and commits it before it
	// answers (a refused command's answer could come before its commit,
	// which, redone after the stream below opened, would read it again).
	cb.must(http.StatusAccepted, nil, "POST", "/sessions/h/events", `{"type":"heartbeat"}`)
	prompt := `{"type":"prompt","text":"hi"}`
	cmds := ca.stream("/sessions/h/commands", protocol.HeaderInstance, "i1")
	f.fail.Store(true)
	cb.wantError(http.StatusServiceUnavailable, protocol.CodeUnavailable, "POST", "/sessions/h/commands", prompt)
	f.fail.Store(false)
	cb.must(http.StatusAccepted, nil, "POST", "/sessions/h/commands", prompt)
	for e := cmds.next(); e.Event != protocol.SSECommand; e = cmds.next() {
	}
}

// lostAnswer is a replica's PostgreSQL store whose next commit, once
// lose is set, is stored and yet reported failed: the connection lost
// after the database committed (a network cut, a commit timeout during
// a synchronous standby's wait).
// loads has a token for each read of every session (the start's, and
// the one after the listener's connection).
type lostAnswer struct {
	*postgres.Store
	lose  atomic.Bool
	loads chan struct{}
}

func (l *lostAnswer) LoadSessions(ctx context.Context) ([]store.Session, error) {
	defer func() {
		select {
		case l.loads <- struct{}{}:
		default:
		}
	}()
	return l.Store.LoadSessions(ctx)
}

func (l *lostAnswer) Commit(ctx context.Context, ops []store.Op) error {
	err := l.Store.Commit(ctx, ops)
	if err == nil && l.lose.CompareAndSwap(true, false) {
		return errors.New("connection lost after the commit was sent")
	}
	return err
}

// A commit whose outcome a replica cannot know (the answer lost after the
// database committed it) is answered 503, and the replica reads the
// sessions it touched again at its next wake-up (here its poll): a
// session created so shows on its session stream, and its bootstrap
// timeout runs, though nobody asks for it again (it stayed unknown to
// the replica, and in the database for good).
func TestReplicasLostCommitAnswer(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	l := &lostAnswer{Store: openPostgres(t, pgtest.NewDatabase(t)), loads: make(chan struct{}, 2)}
	s := start(t, app.Options{Store: l, Now: clk.Now})
	c := newClient(t, s)
	// The replica listens, and has read everything once more: it learns
	// nothing of the session below from that.
	<-l.loads
	<-l.loads
	feed := c.stream("/sessions/stream")
	for feed.next().Event != protocol.SSESnapshotComplete {
	}
	l.lose.Store(true)
	c.wantError(http.StatusServiceUnavailable, protocol.CodeUnavailable, "POST", "/sessions/n", nil)
	if e := feed.next(); e.Event != protocol.SSESessionCreated || !strings.Contains(e.Data, `"id":"n"`) {
		t.Fatalf("session stream after the lost answer: %+v; want n created", e)
	}
	clk.Add(app.DefaultBootstrapTimeout + time.Second)
	server.RunTimeouts(s.Server)
	c.wantError(http.StatusNotFound, protocol.CodeNotFound, "GET", "/sessions/n", nil)
	if e := feed.next(); e.Event != protocol.SSESessionRemoved || !strings.Contains(e.Data, `"id":"n"`) {
		t.Fatalf("session stream after the bootstrap timeout: %+v; want n removed", e)
	}
}

// A permission request stored through one replica is answered through
// another that has not heard of it yet: that one reads the session again
// before refusing, so a fresh request is never refused. A second answer,
// through either replica, is refused, whether or not the replica has
// heard of the first; so is an answer to a request never asked.
func TestReplicasPermissionAnswers(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	a := start(t, app.Options{DBPath: dsn})
	b, deaf := startDeaf(t, dsn)
	ca, cb := newClient(t, a), newClient(t, b)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/p", nil)
	cmds := ca.stream("/sessions/p/commands", protocol.HeaderInstance, "i1")
	// b knows the session, connected, and holds its reducer state (it
	// stored an event), then hears no more.
	for ss := cb.stream("/sessions/stream"); !strings.Contains(ss.next().Data, `"status":"live"`); {
	}
	cb.must(http.StatusAccepted, nil, "POST", "/sessions/p/events", []any{ev("notice", "level", "info", "message", "starting")})
	deaf.deaf.Store(true)

	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "i1")
	wantSent(t, "an answer through the replica that did not ingest the request", cb.sendKeyed("p", "", answer("r1", "allow")), 1, false)
	wantRefused(t, ca, "p", answer("r1", "deny"), http.StatusConflict, protocol.CodeConflict, `"r1"`, "command 1")
	wantRefused(t, cb, "p", dismiss("r1"), http.StatusConflict, protocol.CodeConflict, `"r1"`, "command 1")

	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/events", []any{
		ev("permission_requested", "id", "r2", "title", "Also?", "agentSeq", 4, "options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}}),
	}, protocol.HeaderInstance, "i1")
	wantSent(t, "an answer through the replica that ingested the request", ca.sendKeyed("p", "", answer("r2", "allow")), 2, false)
	wantRefused(t, cb, "p", answer("r2", "allow"), http.StatusConflict, protocol.CodeConflict, `"r2"`, "command 2")
	wantRefused(t, cb, "p", answer("r9", "allow"), http.StatusNotFound, protocol.CodeNotFound, `"r9"`)

	for _, want := range []string{"r1", "r2"} {
		e := cmds.next()
		var c protocol.Command
		if err := json.Unmarshal([]byte(e.Data), &c); err != nil || c.RequestID != want {
			t.Fatalf("command stream got %s (%v); want the answer to %s", e.Data, err, want)
		}
	}
	if rec := ca.session("p"); rec.PendingCommands != 2 {
		t.Fatalf("pendingCommands %d; want 2, one answer per request", rec.PendingCommands)
	}
}

// An answer naming its request (requestSeq) through a replica whose
// inbox still holds an earlier request with the id, resolved and asked
// again through another replica since: the answer to the new request is
// not refused for the stale inbox (the replica reads the session again),
// and one to the earlier request is refused, though the stale inbox took
// it for the waiting one (its commit found the session changed).
func TestReplicasPermissionAnswerNamesItsRequest(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	a := start(t, app.Options{DBPath: dsn})
	b, deaf := startDeaf(t, dsn)
	ca, cb := newClient(t, a), newClient(t, b)
	inbox := cb.stream("/approvals/stream")
	if e := inbox.next(); e.Event != protocol.SSESnapshotComplete {
		t.Fatalf("b's inbox: %+v; want an empty snapshot", e)
	}
	// Sessions p and q each ask r1; b's inbox has both, then hears no
	// more; each agent withdraws r1 and asks r1 again.
	first := map[string]int64{}
	cmds := map[string]*sseStream{}
	for _, id := range []string{"p", "q"} {
		ca.must(http.StatusCreated, nil, "POST", "/sessions/"+id, nil)
		cmds[id] = ca.stream("/sessions/"+id+"/commands", protocol.HeaderInstance, "i-"+id)
		ca.must(http.StatusAccepted, nil, "POST", "/sessions/"+id+"/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "i-"+id)
		for first[id] == 0 {
			if e := inbox.next(); e.Event == protocol.SSEApprovalAdded && approvalData(t, e).SessionID == id {
				first[id] = approvalData(t, e).Seq
			}
		}
	}
	deaf.deaf.Store(true)
	second := map[string]int64{}
	for _, id := range []string{"p", "q"} {
		ca.must(http.StatusAccepted, nil, "POST", "/sessions/"+id+"/events", []any{
			ev("permission_resolved", "id", "r1", "outcome", "cancelled", "agentSeq", 4),
			ev("turn_completed", "turnId", "t1", "stopReason", "end_turn", "agentSeq", 5),
			ev("turn_started", "turnId", "t2", "source", "user", "agentSeq", 6),
			ev("permission_requested", "id", "r1", "title", "Delete the repository?", "agentSeq", 7, "options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}}),
		}, protocol.HeaderInstance, "i-"+id)
		second[id] = waitingSeq(t, ca, id, "r1")
	}

	// b's inbox holds the first r1 of each session as waiting.
	wantSent(t, "the answer to p's new r1 through b", cb.sendKeyed("p", "", answerSeq("r1", second["p"], "allow")), 1, false)
	var c protocol.Command
	if e := cmds["p"].next(); json.Unmarshal([]byte(e.Data), &c) != nil || c.RequestSeq != second["p"] {
		t.Fatalf("p's command stream got %s; want the answer to r1 at seq %d", e.Data, second["p"])
	}
	wantRefused(t, cb, "q", answerSeq("r1", first["q"], "allow"), http.StatusConflict, protocol.CodeConflict, "requestSeq", fmt.Sprintf("seq %d", second["q"]), "Delete the repository?")
	if rec := ca.session("q"); rec.PendingCommands != 0 {
		t.Fatalf("q's pendingCommands %d; want 0: the answer to the withdrawn r1 is not stored", rec.PendingCommands)
	}
}

// A replica whose cache holds a session deleted and created again on
// another replica, at the very row version the new session has reached
// there: its commit's Expect must still fail. (Versions count from 0
// again for the new row, so a version alone can match a stale cache.)
// Otherwise a request naming the old createdAt passes against the stale
// cache, and its commit writes the old session's record over the new
// row.
func TestReplicasStaleCacheAtTheNewSessionsVersion(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	clock := &fakeClock{t: time.Now()}
	a := start(t, app.Options{DBPath: dsn, Now: clock.Now})
	b, deaf := startDeaf(t, dsn)
	ca, cb := newClient(t, a), newClient(t, b)
	version := func() int64 {
		t.Helper()
		rec, _, err := deaf.LoadSession(t.Context(), "r")
		if err != nil {
			t.Fatal(err)
		}
		return rec.Version
	}
	ca.must(http.StatusCreated, nil, "POST", "/sessions/r", nil)
	oldAt := itoa(ca.session("r").CreatedAt)
	cb.must(http.StatusAccepted, nil, "POST", "/sessions/r/events", []any{ev("text_delta", "delta", "old text", "agentSeq", 1)},
		protocol.HeaderInstance, "old", protocol.HeaderSessionCreated, oldAt)
	cached := version()

	deaf.deaf.Store(true)
	ca.must(http.StatusNoContent, nil, "DELETE", "/sessions/r", nil)
	clock.Add(time.Millisecond)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/r", nil)
	newAt := itoa(ca.session("r").CreatedAt)
	for i := 1; version() < cached; i++ {
		ca.must(http.StatusAccepted, nil, "POST", "/sessions/r/events", []any{ev("text_delta", "delta", "new text", "agentSeq", i)},
			protocol.HeaderInstance, "new", protocol.HeaderSessionCreated, newAt)
	}
	if v := version(); v != cached {
		t.Fatalf("the new row is at version %d; the test needs %d, b's cached one", v, cached)
	}

	cb.wantError(http.StatusConflict, protocol.CodeConflict, "POST", "/sessions/r/events", []any{ev("text_delta", "delta", "old text", "agentSeq", 2)},
		protocol.HeaderInstance, "old", protocol.HeaderSessionCreated, oldAt)
	if got := itoa(ca.session("r").CreatedAt); got != newAt {
		t.Fatalf("the session's createdAt is %s after b's write; want the new session's %s", got, newAt)
	}
}

// A client that followed one replica's approvals stream and resumes on
// another gets what it missed. Each replica counts its own approvals
// revisions, so the other one must not take the client's id for one of
// its own: here both start on one clock reading, as replicas started
// together do (within as many microseconds as their inboxes then change),
// and a's id names a revision b also reached.
func TestReplicasApprovalsResumeOnTheOther(t *testing.T) {
	t.Parallel()
	at := time.UnixMilli(1_800_000_000_000)
	opts := app.Options{DBPath: pgtest.NewDatabase(t), Now: func() time.Time { return at }}
	a := start(t, opts)
	ca := newClient(t, a)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/p", nil)
	ca.stream("/sessions/p/commands", protocol.HeaderInstance, "i1")
	inbox := ca.stream("/approvals/stream")
	for inbox.next().Event != protocol.SSESnapshotComplete {
	}
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "i1")
	if e := inbox.next(); e.Event != protocol.SSEApprovalAdded {
		t.Fatalf("a's inbox got %+v; want r1 added", e)
	}
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/events", []any{ev("permission_resolved", "id", "r1", "outcome", "selected", "optionId", "allow", "agentSeq", 4)}, protocol.HeaderInstance, "i1")
	e := inbox.next()
	if e.Event != protocol.SSEApprovalResolved {
		t.Fatalf("a's inbox got %+v; want r1 resolved", e)
	}
	last := e.ID // the client holds no request, as of last
	inbox.close()

	b := start(t, opts)
	cb := newClient(t, b)
	bi := cb.stream("/approvals/stream")
	for bi.next().Event != protocol.SSESnapshotComplete {
	}
	more := append(permissionEvents("t2", "tc2", "r2", 5),
		ev("tool_call_start", "id", "tc3", "name", "bash", "kind", "execute", "title", "ls", "agentSeq", 8),
		ev("permission_requested", "id", "r3", "toolCallId", "tc3", "title", "Run ls?", "agentSeq", 9,
			"options", []any{map[string]any{"id": "allow", "name": "Allow", "kind": "allow_once"}}))
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/events", more, protocol.HeaderInstance, "i1")
	for range 2 { // b hears of them
		if e := bi.next(); e.Event != protocol.SSEApprovalAdded {
			t.Fatalf("b's inbox got %+v; want r2 and r3 added", e)
		}
	}

	re := cb.stream("/approvals/stream", "Last-Event-ID", last)
	held, fresh := map[string]bool{}, map[string]bool{}
	for {
		e := re.next()
		if e.Event == protocol.SSESnapshotComplete {
			if strings.Contains(e.Data, `"full":true`) {
				held = fresh
			}
			break
		}
		switch e.Event {
		case protocol.SSEApprovalSnapshot:
			fresh[approvalData(t, e).RequestID] = true
		case protocol.SSEApprovalAdded:
			held[approvalData(t, e).RequestID] = true
		case protocol.SSEApprovalResolved:
			var r protocol.ApprovalResolved
			if err := json.Unmarshal([]byte(e.Data), &r); err != nil {
				t.Fatal(err)
			}
			delete(held, r.RequestID)
		}
	}
	if !held["r2"] || !held["r3"] || len(held) != 2 {
		t.Fatalf("resumed on b with a's Last-Event-ID %s, the client holds %v; want r2 and r3, which wait", last, held)
	}
}

// A session created and deleted through one replica is counted created
// and removed by that replica alone: the other, which only hears of both,
// moves its rein_sessions gauge but counts neither, so the counters summed
// over replicas are the sessions created and removed.
func TestReplicasCountARemovalOnce(t *testing.T) {
	t.Parallel()
	a, b, ca, cb := twoReplicas(t, app.Options{})
	sessions := cb.stream("/sessions/stream")
	ca.must(http.StatusCreated, nil, "POST", "/sessions/s", nil)
	for e := sessions.next(); e.Event != protocol.SSESessionCreated || !strings.Contains(e.Data, `"id":"s"`); e = sessions.next() {
	}
	ca.must(http.StatusNoContent, nil, "DELETE", "/sessions/s", nil)
	for e := sessions.next(); e.Event != protocol.SSESessionRemoved; e = sessions.next() {
	}
	for name, s := range map[string]*app.App{"a (created and deleted it)": a, "b": b} {
		want := map[string]float64{`rein_sessions_created_total`: 0, `rein_sessions_removed_total`: 0, `rein_sessions{status="bootstrapping"}`: 0}
		if s == a {
			want[`rein_sessions_created_total`], want[`rein_sessions_removed_total`] = 1, 1
		}
		t.Run(name, func(t *testing.T) { wantSamples(t, scrape(t, s.URL()+"/metrics"), want) })
	}
}

// blindStore is a replica's PostgreSQL store that, while fail is set,
// hears nothing of the others and cannot read a session: what they commit
// meanwhile reaches its followers all at once after.
type blindStore struct {
	*postgres.Store
	fail    atomic.Bool
	changed atomic.Value // func(ids []string), Watch's callback
}

func (f *blindStore) Watch(ctx context.Context, changed func(ids []string)) error {
	f.changed.Store(changed)
	return f.Store.Watch(ctx, func(ids []string) {
		if !f.fail.Load() {
			changed(ids)
		}
	})
}

func (f *blindStore) LoadSession(ctx context.Context, id string) (store.Session, *[32]byte, error) {
	if f.fail.Load() {
		return store.Session{}, nil, errors.New("database unreachable")
	}
	return f.Store.LoadSession(ctx, id)
}

// A follower on another replica that keeps up stays live through more
// than the hub's per-subscriber queue (8 MiB) published at once: a relay
// of what the replica missed (its reads failed a while, so the change log
// since is relayed in one go), and a whole tool call whose output grew
// past 8 MiB, relayed as one artifact_snapshot once the change log no
// longer holds what the replica missed (pruned). Each dropped it as
// "fell behind" however fast it read, and each such relay would drop it
// again after it resumed.
func TestReplicasRelayMoreThanAQueueAtOnce(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	a := start(t, app.Options{DBPath: dsn})
	pg := openPostgres(t, dsn)
	f := &blindStore{Store: pg}
	b := start(t, app.Options{Store: f})
	ca, cb := newClient(t, a), newClient(t, b)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/big", nil)
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/big/events", []any{
		ev("turn_started", "turnId", "t1", "source", "user"),
		ev("tool_call_start", "id", "c1", "name", "bash", "kind", "execute", "title", "make"),
	})
	m := newModel(t)
	st := cb.stream("/sessions/big/stream")
	m.readSnapshot(st)
	m.readUntilRev(st, storedRev(t, a, "big"))

	// 13 bodies of 3 deltas of 256 KiB: 9.75 MiB of build log, one
	// artifact_updated per body.
	line := strings.Repeat("x", 255) + "\n"
	delta := strings.Repeat(line, protocol.MaxTextLen/len(line))
	post := func(n int) {
		for range n {
			ca.must(http.StatusAccepted, nil, "POST", "/sessions/big/events", []any{
				ev("tool_output_delta", "id", "c1", "delta", delta),
				ev("tool_output_delta", "id", "c1", "delta", delta),
				ev("tool_output_delta", "id", "c1", "delta", delta),
			})
		}
	}
	f.fail.Store(true)
	post(13)
	f.fail.Store(false)
	f.changed.Load().(func([]string))(nil) // b relays all 13 at once
	// As the deltas a published, not the tool call whole: 9.75 MiB is
	// within what a relay reads of the change log.
	for rev := storedRev(t, a, "big"); m.lastID == "" || atoi(t, m.lastID) < rev; {
		e := st.next()
		if e.Event == protocol.SSEArtifactSnapshot {
			t.Fatalf("relayed as a snapshot; want the deltas")
		}
		m.apply(e)
	}
	m.equal(cb, "big")

	// The change log forgets what b has not relayed yet: b sends the
	// tool call whole.
	f.fail.Store(true)
	post(1)
	forgetChangeBatches(t, dsn)
	f.fail.Store(false)
	f.changed.Load().(func([]string))(nil)
	for {
		e := st.next()
		m.apply(e)
		if e.Event == protocol.SSEArtifactSnapshot {
			break
		}
	}
	m.equal(cb, "big")
	// And the stream is still live.
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/big/events", []any{ev("tool_call_end", "id", "c1", "status", "completed")})
	m.readUntilRev(st, storedRev(t, a, "big"))
	m.equal(cb, "big")
}

// commandReadFailStore is a replica's PostgreSQL store whose reads of
// stored commands fail while fail is set.
type commandReadFailStore struct {
	*postgres.Store
	fail atomic.Bool
}

func (f *commandReadFailStore) Commands(ctx context.Context, id string, after, upto int64) ([]store.Command, error) {
	if f.fail.Load() {
		return nil, errors.New("injected: the database failed a read")
	}
	return f.Store.Commands(ctx, id, after, upto)
}

// A replica that heard of an answer stored through another one but could
// not read it (the database failed the read) does not take a second
// answer to the request: its inbox still had the request unanswered, and
// the second answer was stored with 202, to be dropped by the agent,
// which takes the first only. The replica's view of the session counts
// as behind the database until it has read the commands, so the second
// answer's commit reads them again first, and is refused.
func TestReplicasAnswerThatCouldNotBeReadIsNotAnsweredAgain(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	a := start(t, app.Options{DBPath: dsn})
	pg := openPostgres(t, dsn)
	fs := &commandReadFailStore{Store: pg}
	b := start(t, app.Options{Store: fs})
	ca, cb := newClient(t, a), newClient(t, b)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/p", map[string]string{"project": "x"})
	ca.stream("/sessions/p/commands", protocol.HeaderInstance, "i1")
	inbox := cb.stream("/approvals/stream")
	for inbox.next().Event != protocol.SSESnapshotComplete {
	}
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "i1")
	if e := inbox.next(); e.Event != protocol.SSEApprovalAdded {
		t.Fatalf("b's inbox got %+v; want r1 added", e)
	}
	fs.fail.Store(true)
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/commands", answer("r1", "allow"))
	eventually(t, "b heard of the answer's commit", func() bool { return cb.session("p").PendingCommands == 1 })
	fs.fail.Store(false)
	e := cb.wantError(http.StatusConflict, protocol.CodeConflict, "POST", "/sessions/p/commands", answer("r1", "deny"))
	if !strings.Contains(e.Message, "already answered by command 1") {
		t.Fatalf("a second answer through b: %q; want it refused as answered by command 1", e.Message)
	}
}

// forgetChangeBatches deletes every change batch of the database at dsn,
// as the pruning of old ones does: a replica that had not relayed them
// must fall back to the artifacts.
func forgetChangeBatches(t *testing.T, dsn string) {
	t.Helper()
	db, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	if _, err := db.Exec(t.Context(), `DELETE FROM change_batches`); err != nil {
		t.Fatal(err)
	}
}

// artifactReadFailStore is a replica's PostgreSQL store whose next read
// of changed artifacts fails once fail is set, then tells failed.
type artifactReadFailStore struct {
	*postgres.Store
	fail   atomic.Bool
	failed chan struct{}
}

func (f *artifactReadFailStore) ArtifactsPage(ctx context.Context, id string, after int64, limit, maxBytes int) (store.Snapshot, error) {
	if f.fail.CompareAndSwap(true, false) {
		f.failed <- struct{}{}
		return store.Snapshot{}, errors.New("injected: the database failed a read")
	}
	return f.Store.ArtifactsPage(ctx, id, after, limit, maxBytes)
}

// A replica that heard of a permission request resolved through another
// one but could not read the change (the database failed the read) reads
// it again: its inbox kept the request as waiting for good, listed on
// GET /approvals, and took an answer to it with 202 (stored, and dropped
// by agentd, the request being long gone) where every other replica
// refused it with 409. Its view of the session counts as behind the
// database until it has read the change: an answer's commit reads it
// first, and the poll reads it even when nothing is sent through it.
func TestReplicasApprovalsThatCouldNotBeReadAreReadAgain(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	a := start(t, app.Options{DBPath: dsn})
	fs := &artifactReadFailStore{Store: openPostgres(t, dsn), failed: make(chan struct{}, 1)}
	b := start(t, app.Options{Store: fs})
	ca, cb := newClient(t, a), newClient(t, b)
	inbox := cb.stream("/approvals/stream")
	for inbox.next().Event != protocol.SSESnapshotComplete {
	}
	// resolveUnread asks request r1 in session id through a, then resolves
	// it there while b's read of the change fails.
	resolveUnread := func(id string) {
		t.Helper()
		ca.must(http.StatusCreated, nil, "POST", "/sessions/"+id, map[string]string{"project": "x"})
		ca.stream("/sessions/"+id+"/commands", protocol.HeaderInstance, "i-"+id)
		ca.must(http.StatusAccepted, nil, "POST", "/sessions/"+id+"/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "i-"+id)
		if e := inbox.next(); e.Event != protocol.SSEApprovalAdded {
			t.Fatalf("b's inbox got %+v; want r1 of %s added", e, id)
		}
		fs.fail.Store(true)
		ca.must(http.StatusAccepted, nil, "POST", "/sessions/"+id+"/events",
			[]any{ev("permission_resolved", "id", "r1", "outcome", "selected", "optionId", "deny", "agentSeq", 4)}, protocol.HeaderInstance, "i-"+id)
		select {
		case <-fs.failed:
		case <-time.After(streamDeadline):
			t.Fatalf("b never read the resolution of %s's r1", id)
		}
	}
	wantResolved := func(id string) {
		t.Helper()
		if e := inbox.next(); e.Event != protocol.SSEApprovalResolved || !strings.Contains(e.Data, `"sessionId":"`+id+`"`) {
			t.Fatalf("b's inbox got %+v; want r1 of %s resolved", e, id)
		}
		var list []protocol.Approval
		cb.must(http.StatusOK, &list, "GET", "/approvals", nil)
		for _, p := range list {
			if p.SessionID == id {
				t.Fatalf("b lists %s's r1 as waiting: %+v", id, p)
			}
		}
	}

	// An answer through b is checked against the database, not b's inbox.
	resolveUnread("p")
	wantRefused(t, cb, "p", answer("r1", "allow"), http.StatusConflict, protocol.CodeConflict, "no longer waiting", "denied")
	wantResolved("p")

	// With nothing sent through b, its poll reads the change.
	resolveUnread("q")
	wantResolved("q")
}

// A replica that hears at once of an answer stored through another one
// and of the agent's resolution that took it (its announcements lost, or
// merged into one round) records the decision as the client's: it read
// the session's changed artifacts before its new commands, so it
// resolved the request before it knew it was answered, and its history
// said the agent had decided it, naming no answer.
func TestReplicasDecisionHeardWithItsAnswerNamesTheClient(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	a := start(t, app.Options{DBPath: dsn})
	b, deaf := startDeaf(t, dsn)
	ca, cb := newClient(t, a), newClient(t, b)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/p", map[string]string{"project": "x"})
	ca.stream("/sessions/p/commands", protocol.HeaderInstance, "i1")
	inbox := cb.stream("/approvals/stream")
	for inbox.next().Event != protocol.SSESnapshotComplete {
	}
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "i1")
	if e := inbox.next(); e.Event != protocol.SSEApprovalAdded {
		t.Fatalf("b's inbox got %+v; want r1 added", e)
	}
	deaf.deaf.Store(true)
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/commands", answer("r1", "allow"))
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/events",
		[]any{ev("permission_resolved", "id", "r1", "outcome", "selected", "optionId", "allow", "agentSeq", 4)}, protocol.HeaderInstance, "i1")
	deaf.deaf.Store(false)
	// The next announcement names the session: b reads it with all it
	// missed.
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/events",
		[]any{ev("notice", "level", "info", "message", "hello", "agentSeq", 5)}, protocol.HeaderInstance, "i1")
	for {
		e := inbox.next()
		if e.Event == protocol.SSEApprovalResolved {
			break
		}
	}
	var hist []protocol.Decision
	cb.must(http.StatusOK, &hist, "GET", "/approvals/history", nil)
	if len(hist) != 1 || hist[0].Status != "approved" || hist[0].DecidedBy != "anonymous" || hist[0].OptionID != "allow" || hist[0].AnsweredAt == 0 {
		t.Fatalf("b's history %+v; want r1 approved with allow, decided by the client's answer (anonymous)", hist)
	}
}

// A session deleted through one replica and created again through
// another that had not heard of the delete yet (a script's delete then
// create, each sent to whichever replica a load balancer picks): the
// create must not be refused as "already exists" on that replica's stale
// cache. The client was told the delete was done, and the database holds
// no session of the id.
func TestReplicasCreateAfterDeleteElsewhere(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	a := start(t, app.Options{DBPath: dsn})
	b, deaf := startDeaf(t, dsn)
	ca, cb := newClient(t, a), newClient(t, b)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/r", `{"prompt":"old first"}`)
	cb.must(http.StatusAccepted, nil, "POST", "/sessions/r/events", []any{ev("text_delta", "delta", "old text", "agentSeq", 1)}, protocol.HeaderInstance, "old")
	oldAt := ca.session("r").CreatedAt

	deaf.deaf.Store(true)
	ca.must(http.StatusNoContent, nil, "DELETE", "/sessions/r", nil)
	var rec protocol.Session
	cb.must(http.StatusCreated, &rec, "POST", "/sessions/r", `{"prompt":"new first"}`)
	if rec.CreatedAt == oldAt {
		t.Fatalf("the new session's createdAt %d is the deleted one's", rec.CreatedAt)
	}
	if got := ca.session("r"); got.CreatedAt != rec.CreatedAt || got.PendingCommands != 1 {
		t.Fatalf("the session through a: createdAt %d, pendingCommands %d; want the new one's %d, 1", got.CreatedAt, got.PendingCommands, rec.CreatedAt)
	}
	var page struct{ Events []json.RawMessage }
	cb.must(http.StatusOK, &page, "GET", "/sessions/r/events", nil)
	if len(page.Events) != 0 {
		t.Fatalf("the new session's event log holds %s; want nothing of the old session's", page.Events)
	}
}

// A replica that missed another's announcements (the other killed
// between its commit and its NOTIFY, or its NOTIFY lost) finds what they
// said at its sweep, which compares every session it caches with the
// database: a session deleted elsewhere leaves its session stream's
// snapshot and its approvals inbox, one created elsewhere joins them, a
// changed summary shows, and a client following the session stream
// since before is told all three as the announcements would have told
// it. The poll reads again only the sessions followed or held here, and
// nothing else corrected such a replica until its watch reconnected: a
// session deleted long ago stayed listed, its permission still waiting.
func TestReplicasSweepFindsLostAnnouncements(t *testing.T) {
	// A page per session, too: the deleted session is then in no page,
	// and the sweep finds it gone once its pages are read. Woken as its
	// ticker wakes it, the writer reads one page per wake-up, on its own.
	for _, c := range []struct {
		name  string
		page  int
		woken bool
	}{{"one page", 0, false}, {"a page per session", 1, false}, {"woken, a page per wake-up", 1, true}} {
		t.Run(c.name, func(t *testing.T) {
			if c.page > 0 {
				server.ShortSweepPage(t, c.page)
			}
			sweepFindsLostAnnouncements(t, c.woken)
		})
	}
}

func sweepFindsLostAnnouncements(t *testing.T, woken bool) {
	dsn := pgtest.NewDatabase(t)
	a := start(t, app.Options{DBPath: dsn})
	b, deaf := startDeaf(t, dsn)
	ca, cb := newClient(t, a), newClient(t, b)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/gone", nil)
	ca.stream("/sessions/gone/commands", protocol.HeaderInstance, "i1")
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/gone/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "i1")
	ca.must(http.StatusCreated, nil, "POST", "/sessions/kept", nil)
	for _, id := range []string{"gone", "kept"} {
		server.ReadAgain(b.Server, id)
	}
	var inbox []protocol.Approval
	cb.must(http.StatusOK, &inbox, "GET", "/approvals", nil)
	if len(inbox) != 1 || inbox[0].SessionID != "gone" {
		t.Fatalf("b's inbox before: %+v; want gone's r1", inbox)
	}
	live := cb.stream("/sessions/stream")
	for live.next().Event != protocol.SSESnapshotComplete {
	}

	deaf.deaf.Store(true)
	ca.must(http.StatusNoContent, nil, "DELETE", "/sessions/gone", nil)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/born", nil)
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/kept/events", []any{ev("session_info", "title", "Renamed", "agentSeq", 1)}, protocol.HeaderInstance, "i2")
	deaf.deaf.Store(false)
	server.Poll(b.Server)
	if woken {
		// Nothing says when the pass is over but what it sends.
		server.WakeSweep(b.Server)
		followerTold(t, live)
	} else {
		server.Sweep(b.Server)
	}

	snap := cb.stream("/sessions/stream")
	got := map[string]protocol.Session{}
	for {
		e := snap.next()
		if e.Event == protocol.SSESnapshotComplete {
			break
		}
		var p protocol.SessionPayload
		if err := json.Unmarshal([]byte(e.Data), &p); err != nil || e.Event != protocol.SSESessionSnapshot {
			t.Fatalf("b's session snapshot: %+v (%v)", e, err)
		}
		got[p.Session.ID] = p.Session
	}
	snap.close()
	want := map[string]protocol.Session{"kept": ca.session("kept"), "born": ca.session("born")}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Fatalf("b's session snapshot after its sweep:\n%s\nwant what the database holds:\n%s", g, w)
	}
	cb.must(http.StatusOK, &inbox, "GET", "/approvals", nil)
	if len(inbox) != 0 {
		t.Fatalf("b's inbox after its sweep: %+v; want nothing of the deleted session", inbox)
	}
	if !woken {
		followerTold(t, live)
	}
}

// followerTold reads b's session stream until it has been told what the
// announcements would have told it, once each.
func followerTold(t *testing.T, live *sseStream) {
	t.Helper()
	for seen := map[string]bool{}; len(seen) < 3; {
		e := live.next()
		var key string
		switch {
		case e.Event == protocol.SSESessionRemoved && strings.Contains(e.Data, `"id":"gone"`):
			key = "gone removed"
		case e.Event == protocol.SSESessionCreated && strings.Contains(e.Data, `"id":"born"`):
			key = "born created"
		case e.Event == protocol.SSESessionUpdated && strings.Contains(e.Data, `"id":"kept"`) && strings.Contains(e.Data, `"summary":"Renamed"`):
			key = "kept renamed"
		case e.Event == protocol.SSESessionUpdated && !strings.Contains(e.Data, `"summary"`):
			continue // a status or a count, which the records above checked
		default:
			t.Fatalf("b's session stream: %+v; want gone removed, born created, kept renamed", e)
		}
		if seen[key] {
			t.Fatalf("b's session stream: %s twice", key)
		}
		seen[key] = true
	}
}
