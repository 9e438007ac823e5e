package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/client"
)

// inboxWatcher follows GET /approvals/stream into a set of pending
// requests, as a client of the inbox keeps it.
type inboxWatcher struct {
	mu      sync.Mutex
	pending map[string]protocol.Approval
	fresh   map[string]protocol.Approval
	changed chan struct{}
	done    chan struct{}
	cancel  context.CancelFunc
}

func watchInbox(ctx context.Context, c *client.Client) *inboxWatcher {
	ctx, cancel := context.WithCancel(ctx)
	w := &inboxWatcher{pending: map[string]protocol.Approval{}, changed: make(chan struct{}, 1), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(w.done)
		_ = c.StreamApprovals(ctx, "", client.StreamOptions{}, func(ev client.ApprovalEvent) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			switch {
			case ev.Name == client.EventConnected:
				w.fresh = map[string]protocol.Approval{}
			case ev.Name == protocol.SSEApprovalSnapshot:
				w.fresh[ev.Approval.SessionID+"/"+ev.Approval.RequestID] = *ev.Approval
			case ev.Approval != nil:
				w.pending[ev.Approval.SessionID+"/"+ev.Approval.RequestID] = *ev.Approval
			case ev.Resolved != nil:
				delete(w.pending, ev.Resolved.SessionID+"/"+ev.Resolved.RequestID)
			case ev.Complete != nil && ev.Complete.Full:
				w.pending = w.fresh
			}
			select {
			case w.changed <- struct{}{}:
			default:
			}
			return nil
		})
	}()
	return w
}

func (w *inboxWatcher) Close() { w.cancel(); <-w.done }

// waitCount waits until the stream shows n pending requests.
func (w *inboxWatcher) waitCount(ctx context.Context, n int) error {
	for {
		w.mu.Lock()
		got := len(w.pending)
		w.mu.Unlock()
		if got == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the approvals stream shows %d pending; want %d: %w", got, n, ctx.Err())
		case <-w.changed:
		}
	}
}

// TestInboxAcrossSessions: three sessions' agents each wait for a
// permission; the inbox (list and stream) shows all three, with their
// sessions' pendingApprovals; they are answered from the inbox alone, and
// every turn completes as answered, with the decisions in the history.
func TestInboxAcrossSessions(t *testing.T) {
	e := newEnv(t)
	in := watchInbox(e.ctx, e.c)
	defer in.Close()
	followers := map[string]*Follower{}
	for i, id := range []string{"inbox-a", "inbox-b", "inbox-c"} {
		e.create(id, []string{"p1", "p1", "p2"}[i])
		followers[id] = Follow(e.ctx, e.c, id)
		t.Cleanup(followers[id].Close)
		e.agentd(e.srv.URL, id, nil, nil)
		e.waitIdle(id)
		e.prompt(id, "ask: may "+id+" run the tests?")
	}
	if err := in.waitCount(e.ctx, 3); err != nil {
		t.Fatal(err)
	}
	list, err := e.c.Approvals(e.ctx, "")
	if err != nil || len(list) != 3 {
		t.Fatalf("GET /approvals: %v %+v", err, list)
	}
	p1, err := e.c.Approvals(e.ctx, "p1")
	if err != nil || len(p1) != 2 {
		t.Fatalf("GET /approvals?project=p1: %v %+v", err, p1)
	}
	sessions, err := e.c.Sessions(e.ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sessions {
		if s.PendingApprovals != 1 {
			t.Fatalf("session %s pendingApprovals %d; want 1", s.ID, s.PendingApprovals)
		}
	}
	// Answer from the inbox: the first allow_once, the others reject_once.
	want := map[string]string{}
	for i, p := range list {
		kind := protocol.RejectOnce
		if i == 0 {
			kind = protocol.AllowOnce
		}
		option := ""
		for _, o := range p.Options {
			if o.Kind == kind {
				option = o.ID
			}
		}
		if option == "" {
			t.Fatalf("request %+v offers no %s option", p, kind)
		}
		if _, err := e.c.AnswerPermission(e.ctx, p.SessionID, p.RequestID, option); err != nil {
			t.Fatal(err)
		}
		want[p.SessionID] = option
	}
	if err := in.waitCount(e.ctx, 0); err != nil {
		t.Fatal(err)
	}
	for id, f := range followers {
		waitTurns(t, e.ctx, f, 1)
		status := map[string]string{"allow": "approved", "deny": "denied"}[want[id]]
		wantTranscript(t, id, e.assertModelMatchesServer(f, id), []string{
			"turn completed end_turn",
			"user: ask: may " + id + " run the tests?",
			fmt.Sprintf("permission %s %q option=%s", status, "may "+id+" run the tests?", want[id]),
			"text done: Permission " + map[string]string{"allow": "granted.", "deny": "denied."}[want[id]],
		})
	}
	hist, err := e.c.ApprovalHistory(e.ctx, "", 0)
	if err != nil || len(hist) != 3 {
		t.Fatalf("history: %v %+v", err, hist)
	}
	for _, d := range hist {
		if d.DecidedBy != "client" || d.Auth != "token" || d.OptionID != want[d.SessionID] || d.AnsweredAt == 0 {
			t.Fatalf("decision %+v", d)
		}
	}
	sessions, _ = e.c.Sessions(e.ctx, "")
	for _, s := range sessions {
		if s.PendingApprovals != 0 {
			t.Fatalf("session %s pendingApprovals %d after the answers", s.ID, s.PendingApprovals)
		}
	}
}

// TestTurnDigestDetectsEdit: a session's turn digests verify against its
// exported log; after one stored event is edited directly in the SQLite
// file (server stopped), verification names the turn that holds it.
func TestTurnDigestDetectsEdit(t *testing.T) {
	e := newEnv(t)
	_, f := e.session("digest")
	for i, p := range []string{"hello one", "hello two", "hello three"} {
		e.prompt("digest", p)
		waitTurns(t, e.ctx, f, i+1)
	}
	v, err := e.c.Verify(e.ctx, "digest", 5)
	if err != nil || v.FirstMismatch != nil || v.Verified != 3 || v.Recorded != 3 {
		t.Fatalf("verify: %+v %v", v, err)
	}
	turns, err := e.c.Turns(e.ctx, "digest")
	if err != nil || len(turns) != 3 {
		t.Fatalf("turns: %v %+v", err, turns)
	}
	// The second turn's user_message: edit its text in the database.
	var pos int64
	for p := turns[1].StartPos; p <= *turns[1].EndPos && pos == 0; p++ {
		page, err := e.c.EventLog(e.ctx, "digest", p-1, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) == 1 && strings.Contains(string(page.Events[0].Event), `"user_message"`) {
			pos = page.Events[0].Pos
		}
	}
	if pos == 0 {
		t.Fatal("no user_message in the second turn")
	}
	e.srv.Stop(15 * time.Second)
	// The same edit on either backend (REIN_E2E_DB).
	driver, q := "sqlite", `UPDATE events SET body = replace(body, 'hello two', 'hello TWO') WHERE session_id = ? AND pos = ?`
	if strings.HasPrefix(e.srv.DB, "postgres") {
		driver, q = "pgx", `UPDATE events SET body = convert_to(replace(convert_from(body, 'UTF8'), 'hello two', 'hello TWO'), 'UTF8') WHERE session_id = $1 AND pos = $2`
	}
	db, err := sql.Open(driver, e.srv.DB)
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.Exec(q, "digest", pos)
	if err == nil {
		if n, _ := res.RowsAffected(); n != 1 {
			err = errors.New("no row changed")
		}
	}
	if cerr := db.Close(); err != nil || cerr != nil {
		t.Fatalf("edit the event: %v %v", err, cerr)
	}
	if err := e.srv.Restart(e.ctx); err != nil {
		t.Fatal(err)
	}
	v, err = e.c.Verify(e.ctx, "digest", 5)
	if err != nil || v.FirstMismatch == nil || v.FirstMismatch.ID != turns[1].ID || v.Verified != 1 {
		t.Fatalf("verify after the edit: %+v %v; want turn %s to mismatch", v, err, turns[1].ID)
	}
}
