package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/hub"
	"github.com/rein-ai/rein/server/store"
)

// Several replicas on one database (store.Shared, PostgreSQL).
//
// Each replica runs the same writer over a cache of the sessions. Three
// rules keep the caches from ever forking the database:
//
//   - Every commit expects the versions of the session rows it read
//     (store.Expect, checked under the rows' lock). A replica that missed
//     another's change fails that commit, writing nothing, reads the
//     sessions again and applies the same requests once more (see
//     writer.commit), so a client sees a retry as nothing at all.
//   - After each commit the store announces the sessions it changed;
//     every other replica reads them again (refresh) and tells its own
//     streams what changed: artifacts as artifact_snapshot records with
//     their revision as id (exactly what a resume would replay), session
//     records, commands for a command stream it holds, the approvals
//     inbox. Announcements may be lost (a replica dies between commit and
//     announce, a LISTEN connection drops): the next write finds the
//     change through its Expect, a reconnected listener reads every
//     session again, the poll reads the sessions streamed here, and the
//     sweep compares every cached session with the database.
//   - A command stream belongs to the replica whose opening stored the
//     session's newest StreamEpoch. When another replica stores a newer
//     one, this one closes its stream without touching the session's
//     status: the sandbox is connected, elsewhere.
//
// Timeouts run on every replica from the session row's changes (a new
// lastHeartbeat, stored with every heartbeat) and from the events other
// replicas store (merge), timed from when this replica hears of them on
// its own clock: the times in the row are other replicas' clocks. The
// first replica to commit an expiry wins and the others' Expect fails, so
// each fires once.

// maxRetries bounds how often one group is applied again after its
// commit found sessions changed by another replica.
const maxRetries = 3

// remoteChanges collects the sessions other replicas announced until the
// writer takes them: however many announcements arrive while it is busy,
// it reads each session once (the coalescing reader).
type remoteChanges struct {
	mu  sync.Mutex
	ids map[string]bool
	all bool
	// poll: read again the sessions this replica streams (see pollEvery).
	poll bool
	// sweep: compare the next page of sessions with the database (see
	// sweepEvery).
	sweep bool
	// kick has room for one wake-up: the writer takes everything pending
	// when it wakes.
	kick chan struct{}
}

func newRemoteChanges() *remoteChanges {
	return &remoteChanges{ids: map[string]bool{}, kick: make(chan struct{}, 1)}
}

// add is store.Shared.Watch's callback.
func (r *remoteChanges) add(ids []string) {
	r.mu.Lock()
	if ids == nil {
		r.all = true
	}
	for _, id := range ids {
		r.ids[id] = true
	}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// again has everything read again at the writer's next wake-up (an
// announcement, or the poll within pollEvery) without waking it now: a
// read that just failed is not retried at once, in a loop against a
// database that is failing.
func (r *remoteChanges) again() {
	r.mu.Lock()
	r.all = true
	r.mu.Unlock()
}

// retry has ids read again at the writer's next wake-up, without waking
// it now (see again).
func (r *remoteChanges) retry(ids []string) {
	r.mu.Lock()
	for _, id := range ids {
		r.ids[id] = true
	}
	r.mu.Unlock()
}

// wakePoll asks the writer to check the sessions it streams.
func (r *remoteChanges) wakePoll() {
	r.mu.Lock()
	r.poll = true
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// wakeSweep asks the writer for the next step of its sweep.
func (r *remoteChanges) wakeSweep() {
	r.mu.Lock()
	r.sweep = true
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// take returns what was announced since the last take.
func (r *remoteChanges) take() (ids []string, all, poll, sweep bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.ids {
		ids = append(ids, id)
	}
	clear(r.ids)
	all, r.all = r.all, false
	poll, r.poll = r.poll, false
	sweep, r.sweep = r.sweep, false
	slices.Sort(ids)
	return ids, all, poll, sweep
}

// pollEvery is how often a replica reads again the sessions it has
// followers or a command stream for, announced or not. An announcement
// can be lost without the listener noticing: a replica killed between
// its commit and its NOTIFY, or one stopped while its NOTIFY kept failing
// (a failed one is sent again while it runs). The poll bounds how long
// such a change can stay unseen by a session's followers.
const pollEvery = 5 * time.Second

// sweepEvery is how often a replica compares every session it caches
// with the database (sweepStep). The poll reads again only the sessions
// followed or held here, so a change whose announcement was lost stayed
// unseen by the rest until the watch reconnected or the replica
// restarted: a session deleted elsewhere stayed in this replica's session
// stream and approvals inbox, one created elsewhere never joined them.
// The sweep bounds that to a period and a pass, whatever the session.
// A pass reads (id, version, createdAt) a page at a time. Measured on the
// test cluster (2 cores shared with its PostgreSQL), a pass over 100,000
// cached sessions took 130-180 ms, 75-110 ms of this replica's CPU and
// 80-120 ms of the database's; over 10,000, 7-14, 3-9 and 5-10 ms. Every
// 30 s that is 0.3% of a core on each side per replica at 100,000
// sessions: not worth an option. A shorter period costs in proportion,
// and lost announcements are rare (a replica's crash).
const sweepEvery = 30 * time.Second

// sweepPage is how many sessions one step of the sweep reads: the writer
// takes requests between steps, so a pass over many sessions holds their
// writes for one page's read at a time, and the page is all the memory a
// step adds. A variable for the test that reads a page per session.
var sweepPage = 1000

// watch runs store.Shared.Watch until ctx ends; Server.Close ends it and
// waits for it (and for the poll and sweep tickers it starts).
func (w *writer) watch(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		poll, sweep := time.NewTicker(pollEvery), time.NewTicker(sweepEvery)
		defer poll.Stop()
		defer sweep.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-poll.C:
				w.remote.wakePoll()
			case <-sweep.C:
				w.remote.wakeSweep()
			}
		}
	}()
	for ctx.Err() == nil {
		err := w.shared.Watch(ctx, w.remote.add)
		if err == nil || ctx.Err() != nil {
			return
		}
		w.log.Error("watching other replicas' commits", slog.Any("err", err))
		w.remote.add(nil)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// applyRemote reads again what other replicas announced (in the writer
// goroutine, between groups).
func (w *writer) applyRemote() {
	defer w.commitRevive()
	ids, all, poll, sweep := w.remote.take()
	if sweep {
		// After the announced sessions are read: the page then finds
		// them as the database holds them.
		defer func() {
			if w.sweepStep() {
				w.remote.wakeSweep() // the next page, after the requests waiting
			}
		}()
	}
	if all {
		w.resync()
		return
	}
	if poll {
		ids = append(ids, w.polled()...)
		slices.Sort(ids)
		ids = slices.Compact(ids)
	}
	for i, id := range ids {
		if err := w.refresh(id); err != nil {
			// This one and the rest are read at the next wake-up, not
			// each against a failing database now: a session that only
			// a failed commit may have stored (writer.fail) has no other
			// way here.
			w.remote.retry(ids[i:])
			return
		}
	}
}

// polled returns the sessions the poll reads again: those it holds the
// command stream of, and those it has followers of.
func (w *writer) polled() []string {
	var ids []string
	for id := range w.holders {
		ids = append(ids, id)
	}
	for id, e := range w.sessions {
		// The inbox lacks changes it could not read: it shows what
		// the database no longer holds until they are read.
		if e.approvalsUnread || e.answersUnread {
			ids = append(ids, id)
		}
	}
	for _, topic := range w.hub.Topics(artifactTopic("")) {
		ids = append(ids, strings.TrimPrefix(topic, artifactTopic("")))
	}
	return ids
}

// sweepStep compares the next page of the database's sessions (their
// ids, versions and createdAt) with the cache, starting a pass when none
// is under way, and reads again each session that differs: merge and
// forget then publish what changed, as its announcement would have. The last page ends the pass: every cached session no page of it
// found is read again too (deleted elsewhere, or cached since its page
// was read). It reports whether pages are left.
//
// Announcements can be lost without the listener noticing (a replica
// killed between its commit and its NOTIFY), and nothing else reads a
// session nobody here follows: a commit finds a change through its
// Expect, but nobody writes a disconnected session again.
func (w *writer) sweepStep() (more bool) {
	if !w.sweeping {
		w.sweepPass++
		w.sweeping, w.sweepAfter = true, ""
	}
	ctx, cancel := w.storeCtx()
	page, err := w.shared.SessionVersions(ctx, w.sweepAfter, sweepPage)
	cancel()
	if err != nil {
		// The next pass starts at the next sweepEvery, not at once
		// against a database that is failing.
		w.log.Warn("compare the cached sessions with the database", slog.Any("err", err))
		w.sweeping = false
		return false
	}
	var differ []string
	for _, v := range page {
		if e := w.sessions[v.ID]; e != nil && e.rec.Version == v.Version && e.rec.CreatedAt == v.CreatedAt {
			e.swept = w.sweepPass
			continue
		}
		differ = append(differ, v.ID)
	}
	more = len(page) == sweepPage
	if more {
		w.sweepAfter = page[len(page)-1].ID
	} else {
		w.sweeping = false
		for id, e := range w.sessions {
			if e.swept != w.sweepPass {
				differ = append(differ, id)
			}
		}
	}
	changed := 0
	for i, id := range differ {
		was := w.sessions[id]
		if err := w.refresh(id); err != nil {
			w.remote.retry(differ[i:])
			w.sweeping = false
			return false
		}
		e := w.sessions[id]
		if e != nil {
			e.swept = w.sweepPass
		}
		if e != was {
			changed++ // merged a newer row, or forgot the session
		}
	}
	if changed > 0 {
		// Debug, not Info: under load a change committed elsewhere a
		// moment before the page was read, its announcement still on
		// its way, counts too.
		w.log.Debug("sweep: sessions that differed from the database read again", slog.Int("sessions", changed))
	}
	return more
}

// resync reads every session again: announcements may have been lost.
func (w *writer) resync() {
	ctx, cancel := w.storeCtx()
	defer cancel()
	rows, err := w.store.LoadSessions(ctx)
	if err != nil {
		w.log.Warn("read sessions again after missed announcements", slog.Any("err", err))
		w.remote.again()
		return
	}
	hashes, err := w.store.SandboxTokens(ctx)
	if err != nil {
		w.log.Warn("read sessions again after missed announcements", slog.Any("err", err))
		w.remote.again()
		return
	}
	seen := make(map[string]bool, len(rows))
	for _, r := range rows {
		seen[r.ID] = true
		var h *[32]byte
		if x, ok := hashes[r.ID]; ok {
			h = &x
		}
		w.merge(ctx, r, h)
	}
	for id, e := range w.sessions {
		if !seen[id] {
			w.forget(id, e)
		}
	}
	// Sessions followed here that this replica never cached and the rows
	// lack: removed, the announcements of their creation and removal
	// among those lost, or created since the rows were read. Each is
	// read again, so that the streams of one gone end (refresh).
	var unread []string
	for _, prefix := range []string{artifactTopic(""), commandTopic("")} {
		for _, topic := range w.hub.Topics(prefix) {
			if id := strings.TrimPrefix(topic, prefix); !seen[id] && w.sessions[id] == nil {
				unread = append(unread, id)
			}
		}
	}
	for i, id := range unread {
		if err := w.refresh(id); err != nil {
			w.remote.retry(unread[i:])
			return
		}
	}
}

// endUncached ends this replica's streams of session id, which the
// database no longer holds and this replica never cached (its creation
// and removal were announced together, or not heard), yet a client may
// follow here: a stream reads the database, not this cache. Its stream
// would otherwise follow a deleted session for as long as the client
// stays, and be sent the changes of one created again under the id as if
// they were its own.
func (w *writer) endUncached(id string) {
	w.hub.CloseTopic(artifactTopic(id))
	w.hub.CloseTopic(commandTopic(id))
}

// refresh reads one session again from the shared store and merges it.
// It returns the error of a read that failed (a session found gone is
// not one).
func (w *writer) refresh(id string) error {
	ctx, cancel := w.storeCtx()
	defer cancel()
	rec, hash, err := w.shared.LoadSession(ctx, id)
	if protocol.CodeOf(err) == protocol.CodeNotFound {
		if e := w.sessions[id]; e != nil {
			w.forget(id, e)
			return nil
		}
		w.endUncached(id)
		return nil
	}
	if err != nil {
		// The next commit of the session still checks its version.
		w.log.Warn("read session changed by another replica", slog.String("session", id), slog.Any("err", err))
		w.dropState(id)
		return err
	}
	w.merge(ctx, rec, hash)
	return nil
}

// merge installs a session row another replica wrote, if it is newer than
// the cached one, and tells this replica's streams what changed.
func (w *writer) merge(ctx context.Context, rec store.Session, hash *[32]byte) {
	id := rec.ID
	old := w.sessions[id]
	if old != nil && (rec.CreatedAt != old.rec.CreatedAt || rec.Version < old.rec.Version) {
		// The session was deleted and created again under its id, and
		// this replica did not hear of it while it was gone (the
		// announcements were lost, or merged into one round). The new
		// row's version counts from 0 again, so comparing versions would
		// keep the old session here for good, and every commit of the
		// id through this replica would expect a version the row never
		// has again. (A row read here is never older than the cache:
		// both are read and written by this goroutine, after the
		// commits they saw.)
		w.forget(id, old)
		old = nil
	}
	if old != nil && rec.Version <= old.rec.Version {
		return
	}
	// The cached reducer state is behind the log: fold it again on its
	// next use.
	w.dropState(id)
	e := &entry{rec: rec, sandbox: hash, bootFrom: w.opts.Now()}
	if old != nil {
		e.order, e.lastActive, e.pubRev, e.bootFrom = old.order, old.lastActive, old.pubRev, old.bootFrom
		e.answersUnread, e.answersAfter = old.answersUnread, old.answersAfter
		e.approvalsUnread, e.approvalsAfter = old.approvalsUnread, old.approvalsAfter
		e.swept = old.swept
		if e.sandbox == nil {
			e.sandbox = old.sandbox
		}
	} else {
		w.clock++
		e.order = w.clock
		w.lastCreated = max(w.lastCreated, rec.CreatedAt)
	}
	// active: the sandbox showed itself to another replica since this
	// one last read the row (a heartbeat, or events stored there).
	active := false
	if old != nil && rec.LastHeartbeat != nil && (old.rec.LastHeartbeat == nil || *rec.LastHeartbeat != *old.rec.LastHeartbeat) {
		active = true
		// A heartbeat reached another replica just now. Its time in
		// the row is that replica's clock, which may be seconds off
		// this one's: timed from it, a replica whose clock is ahead by
		// more than the timeout less agentd's heartbeat interval took
		// every heartbeat for a stale one and marked a connected
		// session disconnected. It is timed from when this replica
		// hears of it, on its own clock.
		if now := w.opts.Now(); now.After(e.lastActive) {
			e.lastActive = now
		}
	}
	if old != nil && rec.Rev > old.rec.Rev {
		active = true
		// Events were stored through another replica just now: the
		// sandbox is active, as a heartbeat says. The row's
		// lastHeartbeat stores heartbeats only, and agentd sends none
		// while it has a backlog to post; timed from it alone, this
		// replica would take a busy session for a silent one.
		if now := w.opts.Now(); now.After(e.lastActive) {
			e.lastActive = now
		}
	}
	if rec.Status == protocol.StatusLive || rec.Status == protocol.StatusIdle {
		if old == nil || old.rec.Status != rec.Status || e.lastActive.IsZero() {
			// Another replica saw the sandbox just now: its heartbeat
			// timeout runs from here.
			if now := w.opts.Now(); now.After(e.lastActive) {
				e.lastActive = now
			}
		}
	}
	if e.sandbox != nil {
		w.index.set(id, *e.sandbox)
	}
	w.sessions[id] = e
	w.track(id)
	w.obs.SessionStatus(entryStatus(old), rec.Status)
	if h := w.holders[id]; h != nil && old != nil && old.sandbox != nil && e.sandbox != nil && *old.sandbox != *e.sandbox {
		// The token was rotated on another replica: the stream the old
		// one opened ends, as on the replica that rotated it (rotateReq).
		h.sub.Close()
	}
	if h := w.holders[id]; h != nil && h.epoch != rec.StreamEpoch {
		// Another replica opened the session's command stream since: the
		// sandbox is there now. This stream ends without a status change
		// (its release finds no holder).
		w.log.Info("command stream taken over on another replica", slog.String("session", id), slog.String("instance", h.instance))
		h.sub.Close()
		delete(w.holders, id)
	}
	if h := w.holders[id]; h != nil && old != nil && e.rec.Status == protocol.StatusDisconnected && active {
		w.revive[id] = true
	}
	w.publishRemote(ctx, old, e)
}

// reviveHeld makes live again the sessions whose command stream this
// replica holds and that another replica's commit left disconnected
// though the sandbox showed activity there (merge): on one server, a
// heartbeat or events turn a disconnected session live again while a
// sandbox holds its stream, and the replica they reached cannot tell
// from the row that one does (the row says which stream is the newest,
// not whether it is still open). Left so, that replica refused prompts
// with no_sandbox while this one took them, until a post happened to
// reach this one. Only the holder can say the stream is open, so it
// says it. A session it no longer holds, or another stream's, is left
// as it is; a failed commit is tried again at the next wake-up.
func (w *writer) reviveHeld(g *group) {
	for id := range w.revive {
		e := g.entry(id)
		h := w.holders[id]
		if e == nil || h == nil || h.epoch != e.rec.StreamEpoch {
			delete(w.revive, id)
			continue
		}
		status, _ := nextStatus(e.rec.Status, activity, facts{held: true})
		if status == e.rec.Status {
			delete(w.revive, id)
			continue
		}
		g.setStatus(id, e, status)
		g.onCommit(func() {
			delete(w.revive, id)
			w.log.Info("sandbox active through another replica: session connected again", slog.String("session", id), slog.String("instance", h.instance))
		})
	}
}

// commitRevive commits reviveHeld's changes, if any (between groups).
func (w *writer) commitRevive() {
	if len(w.revive) == 0 {
		return
	}
	g := newGroup(w)
	g.do(w.reviveHeld)
	w.commit(g)
}

// publishRemote tells this replica's streams what another replica
// changed in a session, old being the cached entry before (nil: new to
// this replica).
func (w *writer) publishRemote(ctx context.Context, old, e *entry) {
	id := e.rec.ID
	project := deref(e.rec.Project)
	if old == nil {
		rec := e.rec.Session
		rec.PendingApprovals = w.approvals.Count(id)
		data, _ := json.Marshal(protocol.SessionPayload{Session: rec})
		w.hub.Publish(sessionsTopic, &hub.Message{Event: protocol.SSESessionCreated, Data: data, Key: project})
	} else {
		var f protocol.SessionFields
		changed := false
		if old.rec.Status != e.rec.Status {
			st := e.rec.Status
			f.Status, changed = &st, true
		}
		if deref(old.rec.Summary) != deref(e.rec.Summary) && e.rec.Summary != nil {
			f.Summary, changed = e.rec.Summary, true
		}
		if old.rec.AckedCommandID != e.rec.AckedCommandID || old.rec.PendingCommands != e.rec.PendingCommands {
			acked, pending := e.rec.AckedCommandID, e.rec.PendingCommands
			f.AckedCommandID, f.PendingCommands, changed = &acked, &pending, true
		}
		if changed {
			data, _ := json.Marshal(protocol.SessionUpdated{ID: id, Fields: f})
			w.hub.Publish(sessionsTopic, &hub.Message{Event: protocol.SSESessionUpdated, Data: data, Key: project})
		}
	}
	var lastCmd int64 // the commands this replica had seen
	if old != nil {
		lastCmd = old.rec.LastCommandID
	}
	var (
		cmds    []store.Command
		cmdsErr error
		read    bool
	)
	if h := w.holders[id]; h != nil && old != nil && e.rec.LastCommandID > lastCmd {
		cmds, cmdsErr = w.store.Commands(ctx, id, lastCmd, e.rec.LastCommandID)
		read = true
		if cmdsErr != nil {
			// The sandbox gets them when its stream resumes.
			w.log.Warn("read commands sent through another replica", slog.String("session", id), slog.Any("err", cmdsErr))
			h.sub.Close()
			delete(w.holders, id)
		} else {
			msgs := make([]*hub.Message, len(cmds))
			for i, c := range cmds {
				msgs[i] = &hub.Message{Event: protocol.SSECommand, Data: c.Body, Seq: c.ID}
			}
			w.hub.Publish(commandTopic(id), msgs...)
		}
	}
	// Answers stored through another replica to the requests waiting
	// here: this replica's inbox shows them, and a second answer through
	// it is refused (answers.go). Count is of the requests not answered
	// yet, the only ones a new command can answer. They are read before
	// the changed artifacts, which may resolve a request one of them
	// answered (heard of together: announcements lost, or merged into
	// one round), so the decision names the answer that took effect,
	// not the agent; and recorded again after them, for the requests
	// the artifacts add.
	from := lastCmd // the first command whose answers the inbox may lack
	if e.answersUnread {
		from = min(from, e.answersAfter)
	}
	answersRead := false
	readAnswers := func() {
		if answersRead || e.rec.LastCommandID <= from || w.approvals.Count(id) == 0 {
			return
		}
		answersRead = true
		if !read || from != lastCmd {
			cmds, cmdsErr = w.store.Commands(ctx, id, from, e.rec.LastCommandID)
		}
		if cmdsErr != nil {
			// This replica's inbox does not know them, and would take
			// a second answer to a request they answered (stored, 202,
			// and dropped by the agent, which takes the first only).
			// So its view of the session counts as behind the
			// database until it has read them: the cached row's
			// version is one the row never has, so the next commit of
			// the session through here reads the row again and merges
			// it (writer.behind), reading these again first.
			w.log.Warn("read answers sent through another replica", slog.String("session", id), slog.Any("err", cmdsErr))
			e.answersUnread, e.answersAfter = true, from
			e.rec.Version = -1
			return
		}
		e.answersUnread = false
		if n, changed := w.recordAnswers(id, cmds); changed {
			w.publishPending(id, e.rec.Project, n)
		}
	}
	readAnswers()
	if e.approvalsUnread {
		w.remoteApprovals(ctx, e, nil, e.approvalsAfter, e.approvalsAfter)
	}
	if e.rec.Rev > e.pubRev {
		w.publishArtifacts(ctx, e)
	}
	if !answersRead {
		readAnswers()
	} else if cmdsErr == nil {
		if n, changed := w.recordAnswers(id, cmds); changed {
			w.publishPending(id, e.rec.Project, n)
		}
	}
}

// relayBytes bounds the change records one relay reads and publishes at
// once. A follower that keeps up takes a relay larger than its queue (the
// hub's bounds apply to what is queued before a publish), so a replica
// whose reads failed a while still relays the deltas it missed; past
// eight queues' worth it reads the changed artifacts instead, a page at
// a time, and the followers resume from them.
const relayBytes = 8 * hub.DefaultQueueBytes

// changeRecord is one artifact stream record in a store.ChangeBatch.
type changeRecord struct {
	Event string          `json:"e"`
	Rev   int64           `json:"r"`
	Data  json.RawMessage `json:"d"`
}

// logChanges adds to the group, on a store that keeps a change log, the
// records a request publishes (revisions from to to), so other replicas
// relay the same ones.
func (w *writer) logChanges(g *group, id string, from, to int64, msgs []*hub.Message) {
	if _, ok := w.store.(store.ChangeLog); !ok || to <= from {
		return
	}
	recs := make([]changeRecord, len(msgs))
	for i, m := range msgs {
		recs[i] = changeRecord{Event: m.Event, Rev: m.Seq, Data: m.Data}
	}
	body, err := json.Marshal(recs)
	if err != nil {
		return // the replicas fall back to whole artifacts
	}
	g.ops = append(g.ops, store.PutChanges{SessionID: id, Batch: store.ChangeBatch{FromRev: from, ToRev: to, At: w.opts.Now().UnixMilli(), Body: body}})
}

// relayChanges returns the records another replica's commits published
// for the session from revision from up to to, when the change log holds
// every one of them (a chain of batches); ok is false otherwise.
//
// It reads at most relayBytes of them: the change log keeps minutes of a
// busy session's records, and a replica whose followers were that far
// behind read them all at once, in the writer. Past that it falls back
// to artifacts, read a page at a time.
func (w *writer) relayChanges(ctx context.Context, id string, from, to int64) (msgs []*hub.Message, ok bool) {
	cl, isLog := w.store.(store.ChangeLog)
	if !isLog {
		return nil, false
	}
	batches, err := cl.ChangeBatches(ctx, id, from, to, relayBytes)
	if err != nil {
		w.log.Warn("read change batches", slog.String("session", id), slog.Any("err", err))
		return nil, false
	}
	cur := from
	for _, b := range batches {
		if cur >= to {
			break
		}
		if b.FromRev != cur {
			return nil, false // forgotten, or written by another path
		}
		var recs []changeRecord
		if err := json.Unmarshal(b.Body, &recs); err != nil {
			return nil, false
		}
		for _, r := range recs {
			msgs = append(msgs, &hub.Message{Event: r.Event, Data: r.Data, Seq: r.Rev})
		}
		cur = b.ToRev
	}
	return msgs, cur == to
}

// publishArtifacts sends this replica's followers of the session what
// changed since they were last sent something: the records the other
// replica published (its change log), else the changed artifacts as
// artifact_snapshot records (what a resume replays: exact too, only
// bigger). It updates the approvals inbox from the permissions among
// them.
//
// The changed artifacts are read as a replay page is (Options.ReplayPage,
// Options.ReplayPageBytes). When more changed than a page holds, the
// followers' streams end instead and they resume with Last-Event-ID,
// which replays exactly those artifacts page by page, each follower off
// the writer: read whole here, every changed artifact (each up to
// --max-session-bytes) was in memory at once, in the writer, which
// stalled every session's writes meanwhile.
func (w *writer) publishArtifacts(ctx context.Context, e *entry) {
	id := e.rec.ID
	if msgs, ok := w.relayChanges(ctx, id, e.pubRev, e.rec.Rev); ok {
		w.hub.Publish(artifactTopic(id), msgs...)
		from := e.pubRev
		e.pubRev = e.rec.Rev
		for _, m := range msgs {
			if bytes.Contains(m.Data, []byte(`"permission"`)) || bytes.Contains(m.Data, []byte(`"status"`)) {
				w.remoteApprovals(ctx, e, nil, from, from)
				break
			}
		}
		return
	}
	snap, err := w.store.ArtifactsPage(ctx, id, e.pubRev, w.opts.ReplayPage, w.opts.ReplayPageBytes)
	if err != nil {
		// Followers of the session cannot be told what they missed:
		// end their streams, so they resume exactly (Last-Event-ID).
		w.log.Warn("read artifacts changed by another replica", slog.String("session", id), slog.Any("err", err))
		w.hub.CloseTopic(artifactTopic(id))
		w.approvalsUnread(e, e.pubRev)
		e.pubRev = e.rec.Rev
		return
	}
	if snap.More {
		w.hub.CloseTopic(artifactTopic(id))
		from := e.pubRev
		e.pubRev = max(snap.Rev, e.rec.Rev)
		// The approvals read on from the page already read (from its
		// start again, should that read fail).
		w.remoteApprovals(ctx, e, w.approvalArtifacts(id, nil, snap.Artifacts), snap.Artifacts[len(snap.Artifacts)-1].Rev, from)
		return
	}
	msgs := make([]*hub.Message, 0, len(snap.Artifacts))
	for _, a := range snap.Artifacts {
		data := make([]byte, 0, len(a.Body)+13)
		data = append(append(append(data, `{"artifact":`...), a.Body...), '}')
		msgs = append(msgs, &hub.Message{Event: protocol.SSEArtifactSnapshot, Data: data, Seq: a.Rev})
	}
	if len(msgs) > 0 {
		w.hub.Publish(artifactTopic(id), msgs...)
	}
	e.pubRev = max(snap.Rev, e.rec.Rev)
	w.approvalsFrom(e, w.approvalArtifacts(id, nil, snap.Artifacts))
}

// remoteApprovals updates the approvals inbox from arts (what
// approvalArtifacts kept of pages read already) and the session's
// artifacts changed after revision from, read a page at a time (as
// publishArtifacts reads them) and kept only as approvalArtifacts keeps
// them, so a session of large changed artifacts is never in memory whole.
// arts are of the artifacts changed after revision unread: should a read
// fail, the changes after it count as unread (approvalsUnread).
func (w *writer) remoteApprovals(ctx context.Context, e *entry, arts []*protocol.Artifact, from, unread int64) {
	for after := from; ; {
		snap, err := w.store.ArtifactsPage(ctx, e.rec.ID, after, w.opts.ReplayPage, w.opts.ReplayPageBytes)
		if err != nil {
			w.log.Warn("read permissions changed by another replica", slog.String("session", e.rec.ID), slog.Any("err", err))
			w.approvalsUnread(e, unread)
			return
		}
		arts = w.approvalArtifacts(e.rec.ID, arts, snap.Artifacts)
		if !snap.More {
			break
		}
		after = snap.Artifacts[len(snap.Artifacts)-1].Rev
	}
	if e.approvalsUnread && unread <= e.approvalsAfter {
		e.approvalsUnread = false
	}
	w.approvalsFrom(e, arts)
}

// approvalsUnread records that the permission requests among session e's
// artifacts changed after revision after could not be read: the inbox
// would go on listing one resolved meanwhile as waiting (and take an
// answer to it, which agentd drops), and miss one asked meanwhile. So
// this replica's view of the session counts as behind the database until
// they are read: the cached row's version is one the row never has, so
// the next commit of the session through here reads the row again and
// merges it (writer.behind, publishRemote), reading them first; the poll
// reads it too (polled).
func (w *writer) approvalsUnread(e *entry, after int64) {
	if !e.approvalsUnread || after < e.approvalsAfter {
		e.approvalsAfter = after
	}
	e.approvalsUnread = true
	e.rec.Version = -1
}

// approvalArtifacts appends to arts what approvalsFrom needs of list (the
// session id's artifacts): its permissions, of its tool calls only what
// an approval names of them (id, name, kind, title) and their status,
// not their output, and its turns without their fields (toolFinder tells
// by them which turn a tool call is of).
func (w *writer) approvalArtifacts(id string, arts []*protocol.Artifact, list []store.Artifact) []*protocol.Artifact {
	for _, s := range list {
		if !bytes.Contains(s.Body, []byte(`"permission"`)) && !bytes.Contains(s.Body, []byte(`"tool_call"`)) && !bytes.Contains(s.Body, []byte(`"turn"`)) {
			continue
		}
		var a protocol.Artifact
		if err := json.Unmarshal(s.Body, &a); err != nil {
			// Stored before the decoder refused it (a number beyond a
			// float, say): the inbox is derived, and failing here
			// would keep the server, and every session, from starting.
			w.log.Warn("approvals: artifact not readable, left out of the inbox",
				slog.String("session", id), slog.Int64("seq", s.Seq), slog.Any("err", err))
			continue
		}
		switch a.Type {
		case protocol.ArtifactPermission:
		case protocol.ArtifactTurn:
			a.Fields = map[string]any{}
		case protocol.ArtifactToolCall:
			fields := map[string]any{}
			for _, k := range []string{"name", "kind", "title", "status"} {
				if v, ok := a.Fields[k]; ok {
					fields[k] = v
				}
			}
			a.Fields = fields
		default:
			continue // a text that holds one of the words
		}
		arts = append(arts, &a)
	}
	return arts
}

// approvalsFrom adds the pending permissions among arts (tool calls among
// them name their tools) to the inbox and resolves the others.
func (w *writer) approvalsFrom(e *entry, perms []*protocol.Artifact) {
	if len(perms) == 0 {
		return
	}
	tool := toolFinder(perms)
	var changes []inboxChange
	for _, a := range perms {
		if a.Type == protocol.ArtifactPermission {
			changes = append(changes, inboxChangeOf(e, a, tool))
		}
	}
	if n, changed := w.applyInbox(e.rec.ID, changes); changed {
		w.publishPending(e.rec.ID, e.rec.Project, n)
	}
}

// held reports whether a sandbox holds the session's command stream: on
// this replica, or on another one as the session's status says (a
// command stored now reaches it through the database). The error is a
// read of the database that failed: it cannot tell, and a no_sandbox,
// which clients take as final, would be a guess.
//
// A session deleted earlier in the group g, and so created again in it,
// is held only by a stream the group opened on the new one: the holder
// and the row (still the old session's until the commit) are the deleted
// session's, whose stream the delete ends.
func (w *writer) held(g *group, id string, e *entry) (bool, error) {
	if g.removed[id] {
		return g.opened[id], nil
	}
	if w.holders[id] != nil {
		return true, nil
	}
	if w.shared == nil {
		return false, nil
	}
	if connected(e.rec.Status) {
		return true, nil
	}
	// The cache may not have heard yet of a stream another replica
	// opened a moment ago: before refusing, ask the database. (Going on
	// with the cached entry is safe: the commit expects its version, so
	// it is redone on the fresh one.)
	ctx, cancel := w.storeCtx()
	defer cancel()
	rec, _, err := w.shared.LoadSession(ctx, id)
	if protocol.CodeOf(err) == protocol.CodeNotFound {
		return false, nil // the commit finds it gone, and is redone
	}
	if err != nil {
		return false, unavailable("check sandbox session="+id, err)
	}
	return connected(rec.Status), nil
}

func connected(s protocol.SessionStatus) bool {
	return s == protocol.StatusLive || s == protocol.StatusIdle
}

// behind reports whether the database's row of session id is not the one
// the group read (another replica changed it, or deleted it and created
// it again, and this one has not heard yet): a request about to refuse
// on this replica's view asks it first, and applies the group again on
// the row read anew (applyAgain) rather than refuse what the database
// would take. op names the check for a read's error (503). It is false on
// a database of this process's own, and for a session the group created.
func (w *writer) behind(g *group, id, op string) (bool, error) {
	v, ok := g.base[id]
	if !ok || w.shared == nil {
		return false, nil
	}
	ctx, cancel := w.storeCtx()
	defer cancel()
	rec, _, err := w.shared.LoadSession(ctx, id)
	if protocol.CodeOf(err) == protocol.CodeNotFound {
		return true, nil // read again, the request finds it gone
	}
	if err != nil {
		return false, unavailable(op+" session="+id, err)
	}
	return rec.Version != v.Version || rec.CreatedAt != v.CreatedAt, nil
}

// forget drops a session another replica deleted, as remove does after
// its commit. The replica that removed it counted the removal (as the one
// that created it counted the creation): counting it here too made the
// removals summed over replicas as many times the true number as there
// are replicas. The status gauge is this replica's view, so it moves.
func (w *writer) forget(id string, e *entry) {
	w.approvals.removeSession(id, w.opts.Now().UnixMilli())
	w.obs.SessionStatus(entryStatus(e), "")
	w.index.remove(id)
	if h := w.holders[id]; h != nil {
		h.sub.Close()
		delete(w.holders, id)
	}
	w.dropState(id)
	delete(w.sessions, id)
	w.track(id)
	w.hub.CloseTopic(artifactTopic(id))
	w.hub.CloseTopic(commandTopic(id))
	data, _ := json.Marshal(protocol.SessionRemoved{ID: id})
	w.hub.Publish(sessionsTopic, &hub.Message{Event: protocol.SSESessionRemoved, Data: data, Key: deref(e.rec.Project)})
}
