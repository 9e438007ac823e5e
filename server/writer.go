package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
	"github.com/rein-ai/rein/server/internal/hub"
	"github.com/rein-ai/rein/server/store"
)

const (
	// maxGroup caps the requests one transaction takes, so one commit (and
	// the replies waiting on it) stays short under a flood.
	maxGroup = 256
	// maxStates caps the reducer states kept in memory, beside their
	// estimated size (Options.StateCacheBytes). An evicted state is folded
	// again from the event log on its next use.
	maxStates = 1024
	// commitTimeout bounds one transaction; busy_timeout is 5s.
	commitTimeout = 30 * time.Second
)

// queueLen is how many requests may wait for the writer; beyond it
// handlers wait to enqueue, which is the backpressure. A variable for the
// test that fills the queue.
var queueLen = 1024

// errUnavailable is what requests get when the store failed or the server
// is shutting down: retryable.
var errUnavailable = protocol.Errorf(protocol.CodeUnavailable, "storage unavailable, retry later")

func unavailable(op string, cause error) error {
	return fmt.Errorf("%s: %w", op, errors.Join(errUnavailable, cause))
}

// readFailed wraps the error of a read of the store with op. A read the
// database failed is unavailable, as a failed write is: retryable, where
// internal would say a bug (and clients retry only the first). An error
// with its own code (a session not found) keeps it.
func readFailed(op string, err error) error {
	if err == nil {
		return nil
	}
	if protocol.CodeOf(err) != protocol.CodeInternal {
		return fmt.Errorf("%s: %w", op, err)
	}
	return unavailable(op, err)
}

// Hub topics.
const sessionsTopic = "sessions"

func artifactTopic(id string) string { return "artifacts/" + id }
func commandTopic(id string) string  { return "commands/" + id }

// entry is the writer's view of one session: its row and what only the
// running process knows.
type entry struct {
	rec store.Session
	// order breaks createdAt ties so snapshots list oldest first.
	order uint64
	// lastActive is when the sandbox last showed it was alive (stream
	// opened, heartbeat, event): the heartbeat timeout runs from it.
	lastActive time.Time
	// sandbox is the SHA-256 of the session's sandbox token; nil for a
	// session made before tokens existed (only the client token reaches
	// its sandbox routes until a rotation gives it one).
	sandbox *[32]byte
	// pubRev is the revision this process's artifact streams of the
	// session have been sent up to (replicas.go: other replicas' changes
	// are read from it on).
	pubRev int64
	// bootFrom is when the bootstrap timeout started: the session's
	// creation by this process, or when this replica heard of it (the
	// row's createdAt is another replica's clock); createdAt for one
	// loaded at the start of a process owning its database, moved up so
	// that restartGrace is left after the start (load).
	bootFrom time.Time
	// retryAt puts off a bootstrap timeout that could not be decided
	// (bootstrapExpired could not read the session's events).
	retryAt time.Time
	// swept is the last sweep pass that found the session in the
	// database as cached (replicas.go, sweepStep); 0 for one no pass has
	// found yet. It takes the padding before answersAfter, so the entry
	// stays 288 bytes, its size class: the sweep costs no memory per
	// session.
	swept uint32
	// answersUnread says that the commands after answersAfter, stored
	// through another replica, may hold answers this replica's inbox
	// does not know: reading them failed (replicas.go, merge).
	answersUnread bool
	answersAfter  int64
	// approvalsUnread says that the session's artifacts changed after
	// revision approvalsAfter through another replica may hold
	// permission requests asked or resolved that this replica's inbox
	// does not know: reading them failed (replicas.go, remoteApprovals).
	approvalsUnread bool
	approvalsAfter  int64
}

// state is a session's reducer state and what dedupe needs, all derived
// from the event log.
type state struct {
	st      *reducer.State
	nextPos int64
	// maxSeq is the highest stored agentSeq per Rein-Instance. agentSeq
	// strictly increases per instance, so anything at or below it is a
	// retry of something stored.
	maxSeq map[string]int64
	used   uint64
	// logBytes is the size of the stored event log, which
	// Options.MaxSessionBytes caps.
	logBytes int64
	// policy is the artifact storage policy of the session (see
	// artifacts.go).
	policy artifactPolicy
	// chain is the running turn digest of the log (turns.go); nil until
	// the first event.
	chain *turnChain
	// asked holds, per permission artifact still pending, the event that
	// asked it (see askedBy); nil until one is.
	asked map[int64]askedEvent
	// turnBy is the Rein-Instance of the event that started the newest
	// turn (see interruptTurn).
	turnBy string
	// cost is the size estimate last counted in writer.stateBytes.
	cost int64
	// usedAt is when the state was last used (Options.ActiveState).
	usedAt time.Time
	// turnEnded: a turn ended since the state was taken from the cache
	// (see evict).
	turnEnded bool
}

// Parts of a state's size estimate, measured as heap per cached state
// (see TestStateSizeEstimate): a state's maps, digest and storage policy
// beside the reducer state, which estimates itself (reducer.State.Size:
// a few dozen bytes per artifact, and the bodies of the open ones; the
// text of closed ones is in the store).
const (
	// idleLogBytes: a state whose log is this small and whose turn has
	// just ended is dropped at once (see evict).
	idleLogBytes   = 16 << 10
	stateBaseBytes = 1 << 10
	// storedBytes is the policy's record of one artifact (held ones only).
	storedBytes = 96
)

// size estimates the memory the state holds.
func (s *state) size() int64 {
	return stateBaseBytes + s.st.Size() + int64(len(s.policy.stored))*storedBytes
}

// holder is the sandbox connection that holds a session's command stream.
type holder struct {
	instance string
	sub      *hub.Subscriber
	token    uint64
	// epoch is the session's StreamEpoch this opening stored; a newer one
	// in the row means another replica took the stream (replicas.go).
	epoch int64
}

// request is one unit of work for the writer goroutine.
type request interface {
	// apply runs in the writer goroutine; it adds the request's writes to
	// g and registers what happens after the commit (or its failure).
	apply(w *writer, g *group)
}

// reply carries a request's answer from the writer to the caller waiting
// in call: a value of type T, or an error. It has room for the one
// answer, so the writer never blocks on it.
type reply[T any] chan outcome[T]

type outcome[T any] struct {
	v   T
	err error
}

func newReply[T any]() reply[T] { return make(reply[T], 1) }

// ok answers with v. Only the first answer counts: a request applied
// again (writer.redo) may answer again, and that answer is dropped rather
// than blocking the writer.
func (r reply[T]) ok(v T) {
	select {
	case r <- outcome[T]{v: v}:
	default:
	}
}

// fail answers with err (see ok).
func (r reply[T]) fail(err error) {
	select {
	case r <- outcome[T]{err: err}:
	default:
	}
}

// failOn makes the group's commit failure r's answer.
func failOn[T any](g *group, r reply[T]) { g.onFail(r.fail) }

// applyAgain has the group applied once more after session id is read
// again (commit): a request found this replica's view of it behind the
// database. Its reply waits for that round, as a failed round's does.
func applyAgain[T any](g *group, id string, r reply[T]) {
	g.stale = append(g.stale, id)
	failOn(g, r) // and so applied again (group.take)
}

// writer is the single goroutine that mutates sessions. Everything below
// "owned by run" is touched by that goroutine only, so none of it needs a
// lock, and the in-memory view never disagrees with what was committed.
type writer struct {
	store Store
	hub   *hub.Hub
	log   *slog.Logger
	opts  Options
	// index is shared with the HTTP layer; the writer updates it after
	// commits.
	index *tokenIndex

	reqs chan request
	quit chan struct{}
	done chan struct{}
	// stopCtx is the parent of every store call the writer makes
	// (storeCtx); abort cancels it once a shutdown stops waiting
	// (Server.Shutdown), so a store that hangs cannot hold the writer's
	// last groups: their reads and commits then fail at once.
	stopCtx context.Context
	abort   context.CancelFunc

	// owned by run
	sessions map[string]*entry
	states   map[string]*state
	holders  map[string]*holder
	// revive holds the sessions whose command stream this replica holds
	// that another replica's commit left disconnected though the sandbox
	// showed activity there (reviveHeld).
	revive map[string]bool
	// appendsNUL: the store's appends may hold NUL (newDirtyArtifact).
	appendsNUL bool
	deadlines  map[string]time.Time
	// nextDeadline is at or before every deadline in deadlines (a lower
	// bound, not the minimum): setDeadline lowers it, and only expire's
	// scan raises it (deadlinesScanned). Finding the minimum on every
	// turn of run cost a pass over every waiting and live session per
	// commit: 30% of the server's CPU beside 20,000 waiting sessions
	// (rein-bench ingest_crowded), and creating n sessions took O(n^2).
	nextDeadline     time.Time
	deadlinesScanned bool   // expire ran: resetTimer recomputes nextDeadline
	clock            uint64 // for LRU and ordering
	// lastCreated is the latest createdAt this writer gave or loaded: a
	// new session's is later (createdAt).
	lastCreated int64
	// stateBytes is the sum of the cached states' cost.
	stateBytes int64
	tokens     uint64
	lastProbe  time.Time

	// obs is told what happens, for metrics (nopObserver by default).
	obs Observer

	// failing is set while commits fail (nil when the last one
	// succeeded); Health reads it from other goroutines.
	failing atomic.Pointer[writeFailure]

	// approvals is the inbox (approvals.go); the writer changes it after
	// commits, handlers read it.
	approvals *approvals

	// groupWait sizes group commits (groupwait.go); owned by run.
	groupWait groupWait

	// shared is the store as several replicas share it (nil when this
	// process is the database's only server); remote collects what the
	// others announce (replicas.go).
	shared store.Shared
	remote *remoteChanges
	// The sweep under way (sweepStep), owned by run: its pass (counted
	// from 1), whether it has pages left, and the last id it read.
	sweepPass  uint32
	sweeping   bool
	sweepAfter string

	// stager is the store when commits may leave artifacts to later ones
	// (materialise.go); nil otherwise. Owned by run: lagging (the
	// sessions whose stored artifacts lag their log), staged (events
	// staged since the last Unstage) and stagedSince (when the first of
	// them was). unsettled holds lagging's keys for readers (Server.settle).
	stager      store.Stager
	lagging     map[string]*lag
	staged      int
	stagedSince time.Time
	unsettled   sync.Map
}

// writeFailure is why writes fail and since when.
type writeFailure struct {
	since time.Time
	err   error
}

// probeInterval is how often a failing writer checks whether writes work
// again (store.WriteChecker), so ingestion and /healthz recover by
// themselves when space returns, even before a client retries.
const probeInterval = 2 * time.Second

func newWriter(st Store, h *hub.Hub, log *slog.Logger, opts Options, index *tokenIndex) *writer {
	w := &writer{
		store: st, hub: h, log: log, opts: opts, index: index,
		reqs: make(chan request, queueLen), quit: make(chan struct{}), done: make(chan struct{}),
		sessions: map[string]*entry{}, states: map[string]*state{}, holders: map[string]*holder{}, revive: map[string]bool{},
		deadlines: map[string]time.Time{}, obs: nopObserver{},
		approvals: newApprovals(h, approvalsStart(), authMode(opts)),
	}
	w.stopCtx, w.abort = context.WithCancel(context.Background())
	if sh, ok := st.(store.Shared); ok {
		w.shared, w.remote = sh, newRemoteChanges()
	}
	w.stager, w.lagging = stagerOf(st, w.shared), map[string]*lag{}
	w.appendsNUL = appendsNUL(st)
	return w
}

// load reads every session and token and sets the lifecycle deadlines; it
// writes nothing, so a server whose database refuses writes (a full disk)
// still starts and serves reads. Bootstrap deadlines continue from
// createdAt when this process owns the database, but leave at least
// restartGrace after the start, and run from the start on a shared one
// (createdAt is then another replica's clock). The
// restart rule (no sandbox is connected to a fresh process, so live and
// idle sessions are disconnected) holds only when this process owns the
// database (store.Exclusive): their heartbeat deadline is then
// now, and the first expire (see startup) marks them. On a shared database
// the deadline runs from the start instead (a sandbox may be connected to
// another replica), as from a heartbeat heard now.
func (w *writer) load(ctx context.Context) error {
	rows, err := w.store.LoadSessions(ctx)
	if err != nil {
		return fmt.Errorf("load sessions: %w", err)
	}
	hashes, err := w.store.SandboxTokens(ctx)
	if err != nil {
		return fmt.Errorf("load sessions: %w", err)
	}
	x, ok := w.store.(store.Exclusive)
	exclusive := ok && x.Exclusive()
	now := w.opts.Now()
	for _, r := range rows {
		w.clock++
		e := &entry{rec: r, order: w.clock, pubRev: r.Rev, bootFrom: now}
		if exclusive {
			// From createdAt, but never due before restartGrace from
			// now: a sandbox may have been trying to reach this
			// server while it was down, and a session removed at the
			// start answers it 404, which ends agentd and loses the
			// prompt the session was created with.
			e.bootFrom = later(time.UnixMilli(r.CreatedAt), now.Add(w.restartGrace()-w.opts.BootstrapTimeout))
		}
		w.lastCreated = max(w.lastCreated, r.CreatedAt)
		if r.Status == protocol.StatusLive || r.Status == protocol.StatusIdle {
			switch {
			case exclusive:
				e.lastActive = now.Add(-w.opts.HeartbeatTimeout)
			default:
				// Not from the row's lastHeartbeat: that is the
				// clock of the replica the heartbeat reached, and
				// one ahead of it by more than the timeout took a
				// session whose sandbox is connected there for
				// one silent since and marked it disconnected.
				e.lastActive = now
			}
		}
		if h, ok := hashes[r.ID]; ok {
			e.sandbox = &h
			w.index.set(r.ID, h)
		}
		w.sessions[r.ID] = e
		w.obs.SessionStatus("", r.Status)
	}
	for id := range w.sessions {
		w.track(id)
	}
	return w.loadStaged(ctx)
}

// restartGrace is the least time a bootstrapping session has after the
// start of a process owning its database to get its sandbox: agentd
// dials again at most every 10 s (15 with jitter), and a sandbox shows
// itself within the heartbeat timeout. Never more than the bootstrap
// timeout itself.
func (w *writer) restartGrace() time.Duration {
	return min(w.opts.HeartbeatTimeout, w.opts.BootstrapTimeout)
}

// startup applies the deadlines already passed at start (the restart rule,
// bootstraps that expired while the server was down) before the server
// answers anyone. A failed commit does not stop the start: it is logged,
// /healthz reports it, and the writer retries it.
func (w *writer) startup() {
	g := newGroup(w)
	g.do(w.expire)
	w.commit(g)
}

// call hands req to the writer and waits for its answer on r, which req
// carries. Once accepted, a request is answered even if ctx ends: its
// writes commit regardless.
func call[T any](ctx context.Context, w *writer, req request, r reply[T]) (T, error) {
	var zero T
	select {
	case w.reqs <- req:
	case <-w.done:
		return zero, unavailable("enqueue", errors.New("server is shutting down"))
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	select {
	case res := <-r:
		return res.v, res.err
	case <-w.done:
		select {
		case res := <-r:
			return res.v, res.err
		default:
			return zero, unavailable("wait", errors.New("server is shutting down"))
		}
	}
}

// send hands r to the writer without waiting (stream releases).
func (w *writer) send(r request) {
	select {
	case w.reqs <- r:
	case <-w.done:
	}
}

// storeCtx is the context of one of the writer's store calls: at most
// commitTimeout, and over at once when a shutdown has stopped waiting
// (abort).
func (w *writer) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(w.stopCtx, commitTimeout)
}

// stop ends run after it has committed what was already queued.
func (w *writer) stop() { w.shutdown(context.Background()) }

// shutdown is stop that, once ctx ends, stops waiting on the store:
// the call under way and those of the groups still queued are cancelled,
// and those groups fail (unavailable). Each store call may wait up to
// commitTimeout, and each request queued may make one, so a database
// that hung held the shutdown for that many times commitTimeout. What
// fails so was never answered 2xx; a commit cut short is answered 503
// whether or not the store kept it, as after a crash.
func (w *writer) shutdown(ctx context.Context) {
	select {
	case <-w.quit:
	default:
		close(w.quit)
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		w.log.Warn("shutdown deadline passed: the writer stops waiting on the database; what it has not committed fails, unanswered, and clients send it again",
			slog.Int("queued", len(w.reqs)))
		w.abort()
		<-w.done
	}
	w.abort()
}

func (w *writer) run() {
	defer close(w.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var remote chan struct{} // nil (never ready) without other replicas
	if w.remote != nil {
		remote = w.remote.kick
	}
	for {
		w.resetTimer(timer)
		select {
		case <-w.quit:
			// Whoever enqueued before the quit gets a real answer.
			for {
				g := w.take(nil)
				if g == nil {
					break
				}
				w.commit(g)
			}
			if w.staged > 0 {
				g := newGroup(w)
				g.settleAll = true
				w.commit(g)
			}
			return
		case r := <-w.reqs:
			w.commit(w.take(r))
		case <-remote:
			w.applyRemote()
		case <-timer.C:
			g := newGroup(w)
			g.do(w.expire)
			w.commit(g)
			w.probe()
		}
	}
}

// take starts a group with first (when not nil) and adds every request
// already waiting, up to maxGroup: that is the group commit. It returns nil
// when there was nothing to do.
func (w *writer) take(first request) *group {
	g := newGroup(w)
	w.groupWait.deadline = time.Time{}
	add := func(r request) {
		w.arrived(r) // its session may be a poster to wait for (groupwait.go)
		g.take(r)
	}
	n := 0
	if first != nil {
		add(first)
		n++
	}
	for ; n < maxGroup; n++ {
		select {
		case r := <-w.reqs:
			add(r)
		default:
			if n == 0 {
				return nil
			}
			if r := w.straggler(n); r != nil {
				add(r)
				continue
			}
			g.reqs = n
			return g
		}
	}
	g.reqs = n
	return g
}

func (w *writer) resetTimer(t *time.Timer) {
	t.Stop()
	if w.deadlinesScanned {
		// After the expire group's commit, which has moved or removed
		// the deadlines that passed (or pushed them back, on failure).
		w.deadlinesScanned = false
		w.nextDeadline = time.Time{}
		for _, d := range w.deadlines {
			if w.nextDeadline.IsZero() || d.Before(w.nextDeadline) {
				w.nextDeadline = d
			}
		}
	}
	var next time.Time
	if len(w.deadlines) > 0 {
		next = w.nextDeadline
	}
	if w.staged > 0 {
		if at := w.stagedSince.Add(settleEvery); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	if _, ok := w.store.(store.WriteChecker); ok && w.failing.Load() != nil {
		if p := w.lastProbe.Add(probeInterval); next.IsZero() || p.Before(next) {
			next = p
		}
	}
	if next.IsZero() {
		return
	}
	t.Reset(max(next.Sub(w.opts.Now()), 0))
}

// probe checks, while commits fail and at most every probeInterval,
// whether the store takes writes again.
func (w *writer) probe() {
	wc, ok := w.store.(store.WriteChecker)
	f := w.failing.Load()
	now := w.opts.Now()
	if !ok || f == nil || now.Before(w.lastProbe.Add(probeInterval)) {
		return
	}
	w.lastProbe = now
	ctx, cancel := w.storeCtx()
	defer cancel()
	if err := wc.CheckWrite(ctx); err != nil {
		w.failing.Store(&writeFailure{since: f.since, err: err})
		return
	}
	w.recovered()
}

// recovered clears the failure after a write succeeded.
func (w *writer) recovered() {
	if f := w.failing.Swap(nil); f != nil {
		w.log.Info("writes succeed again", slog.Duration("failedFor", w.opts.Now().Sub(f.since)))
	}
}

// track recomputes a session's lifecycle deadline from its committed entry.
func (w *writer) track(id string) {
	e := w.sessions[id]
	switch {
	case e == nil:
		delete(w.deadlines, id)
	case e.rec.Status == protocol.StatusBootstrapping:
		w.setDeadline(id, later(e.bootFrom.Add(w.opts.BootstrapTimeout), e.retryAt))
	case e.rec.Status == protocol.StatusLive || e.rec.Status == protocol.StatusIdle:
		w.setDeadline(id, e.lastActive.Add(w.opts.HeartbeatTimeout))
	default:
		delete(w.deadlines, id)
	}
}

// setDeadline sets id's lifecycle deadline, keeping nextDeadline a lower
// bound. A deadline that moves later (a heartbeat) leaves the bound where
// it was: the timer then fires early once, and expire's scan finds the
// real minimum.
func (w *writer) setDeadline(id string, d time.Time) {
	w.deadlines[id] = d
	if w.nextDeadline.IsZero() || d.Before(w.nextDeadline) {
		w.nextDeadline = d
	}
}

// expire applies the timeouts whose deadline has passed. It scans every
// deadline, so it runs only once the earliest may have passed (the timer
// also fires for settles and probes).
func (w *writer) expire(g *group) {
	now := w.opts.Now()
	if len(w.deadlines) == 0 || now.Before(w.nextDeadline) {
		return
	}
	w.deadlinesScanned = true
	for id, d := range w.deadlines {
		if d.After(now) {
			continue
		}
		e := g.entry(id)
		if e == nil {
			continue
		}
		// Which deadline passed follows from the status (see track).
		if e.rec.Status == protocol.StatusBootstrapping {
			w.bootstrapExpired(g, id, e, now)
			continue
		}
		if status, _ := nextStatus(e.rec.Status, heartbeatMissed, facts{held: w.holders[id] != nil}); status != e.rec.Status {
			g.onCommit(func() {
				w.log.Info("session missed its heartbeat", slog.String("session", id), slog.Duration("timeout", w.opts.HeartbeatTimeout))
			})
			g.setStatus(id, e, status)
		}
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// hasEvents says whether any event of the session is stored, from the
// first entry of its log: many sessions may expire at once, and folding
// each one's log to know would be wasted. It asks the store, not a cached
// state: on a shared database another replica may have stored events this
// one has not folded (the removal would cascade to them).
func (w *writer) hasEvents(id string) (bool, error) {
	ctx, cancel := w.storeCtx()
	defer cancel()
	evs, err := eventsAfter(ctx, w.store, id, 0, 1)
	return len(evs) > 0, err
}

// bootstrapExpired removes a session whose sandbox never came, unless
// events of it are stored: a sandbox posted them without ever opening the
// command stream, and what was accepted is never thrown away.
func (w *writer) bootstrapExpired(g *group, id string, e *entry, now time.Time) {
	stored, err := w.hasEvents(id)
	if err != nil {
		// Neither removed nor kept for good: asked again shortly.
		w.log.Warn("bootstrap timeout: cannot read the session's events", slog.String("session", id), slog.Any("err", err))
		e.retryAt = now.Add(time.Second)
		return
	}
	status, remove := nextStatus(e.rec.Status, bootstrapExpired, facts{stored: stored})
	if remove {
		// Logged once stored: on a shared database another replica
		// may have removed it first (this commit is then redone).
		g.onCommit(func() {
			w.log.Info("removed session that never got a sandbox", slog.String("session", id), slog.Duration("timeout", w.opts.BootstrapTimeout))
		})
		w.remove(g, id, e)
		return
	}
	g.onCommit(func() {
		w.log.Warn("session's sandbox posted events but never opened the command stream", slog.String("session", id), slog.Duration("timeout", w.opts.BootstrapTimeout))
	})
	g.setStatus(id, e, status)
}

// group is the work of one transaction. Records are changed on copies in
// overlay, merged into the writer's map only after the commit, so a failed
// commit leaves the in-memory view as the database is.
type group struct {
	w       *writer
	overlay map[string]*entry // nil value: deleted in this group
	ids     []string          // overlay keys in first-touch order
	// base is the version and createdAt of each session row the group
	// read (those it did not create): its commit expects them
	// (store.Expect) on a shared store.
	base map[string]store.Expect
	// redo applies the group's work to a new group: what commit runs
	// again when another replica changed the sessions (replicas.go).
	redo []func(*group)
	// aborts release what the group's work took (a subscription) when
	// its commit fails or is redone.
	aborts  []func()
	retries int
	ops     []store.Op
	dirty   map[string]map[int64]*dirtyArtifact // changed artifacts per session
	states  map[string]bool                     // reducer states used (dropped on failure)
	after   []func()
	failed  []func(error)
	reqs    int // requests taken (see take), for the group size metric
	// settle names lagging sessions the group must settle (a read waits
	// for it); settleAll settles every one and moves the staged events
	// into the log (materialise.go). appended counts the events the group
	// appends per session.
	settle    map[string]bool
	settleAll bool
	appended  map[string]int
	// err, when set, fails the group's commit (see abort).
	err error
	// keyed holds the commands the group added with an Idempotency-Key,
	// by session and key, and removed the sessions it deleted, whose
	// stored keys are going with them (commandReq.replay); both are
	// made on first use.
	keyed   map[string]map[string]protocol.Command
	removed map[string]bool
	// opened names the sessions whose command stream a request of the
	// group opened (openStreamReq): an older stream's close later in
	// the group must not mark them disconnected (closeStreamReq).
	opened map[string]bool
	// inbox holds the permission requests the group's events asked (the
	// approval) or resolved (nil), and answers the permission_responses
	// it added (their command ids), for the answers after them in the
	// group (answers.go); both are made on first use.
	inbox   map[approvalKey]*protocol.Approval
	answers map[approvalKey]int64
	// stale names sessions a request found behind the database
	// (another replica changed them): the commit reads them again and
	// applies the group once more instead (see answers.go).
	stale []string
	// unread holds why entry could not read a session this replica had
	// not heard of (see missing); made on first use.
	unread map[string]error
}

// missing is the error of a request for session id, which entry did not
// find: not found, unless this replica had not heard of the session and
// its read of the row failed. The database did not say the session is
// gone then, and a 404 is final to agentd (it exits) and to a client:
// the answer is 503, which both retry.
func (g *group) missing(id string) error {
	if err := g.unread[id]; err != nil {
		return unavailable("read session="+id, err)
	}
	return notFound(id)
}

// abort makes the group fail as a failed commit does: a request could not
// finish what it began on a state (a read the reducer needed failed).
func (g *group) abort(err error) {
	if g.err == nil {
		g.err = err
	}
}

func newGroup(w *writer) *group {
	return &group{w: w, overlay: map[string]*entry{}, base: map[string]store.Expect{}, dirty: map[string]map[int64]*dirtyArtifact{}, states: map[string]bool{}, settle: map[string]bool{}}
}

// entry returns the session's entry for changing it in this group, or nil
// when it does not exist (or was deleted in this group).
func (g *group) entry(id string) *entry {
	if e, ok := g.overlay[id]; ok {
		return e
	}
	e := g.w.sessions[id]
	if e == nil && g.w.shared != nil {
		// Maybe created on another replica, not announced yet.
		if err := g.w.refresh(id); err != nil {
			if g.unread == nil {
				g.unread = map[string]error{}
			}
			g.unread[id] = err
		} else {
			delete(g.unread, id) // read now: its word stands
		}
		e = g.w.sessions[id]
	}
	if e == nil {
		return nil
	}
	c := *e
	g.base[id] = store.Expect{SessionID: id, Version: e.rec.Version, CreatedAt: e.rec.CreatedAt}
	g.put(id, &c)
	return &c
}

// take applies r to the group, and remembers to apply it again if the
// commit must be redone. A request that answered in apply without
// touching the group (a refusal, a snapshot) is done: it is not redone.
func (g *group) take(r request) {
	n := len(g.after) + len(g.failed) + len(g.ops)
	r.apply(g.w, g)
	if len(g.after)+len(g.failed)+len(g.ops) > n {
		g.redo = append(g.redo, func(ng *group) { r.apply(ng.w, ng) })
	}
}

// do runs f on the group and again on a redone one.
func (g *group) do(f func(*group)) {
	f(g)
	g.redo = append(g.redo, f)
}

func (g *group) put(id string, e *entry) {
	if _, ok := g.overlay[id]; !ok {
		g.ids = append(g.ids, id)
	}
	g.overlay[id] = e
}

func (g *group) onCommit(f func())    { g.after = append(g.after, f) }
func (g *group) onFail(f func(error)) { g.failed = append(g.failed, f) }
func (g *group) onAbort(f func())     { g.aborts = append(g.aborts, f) }

// markDirty records an artifact change of session id for the commit.
func (g *group) markDirty(id string, c reducer.Change) {
	arts := g.dirty[id]
	if arts == nil {
		arts = map[int64]*dirtyArtifact{}
		g.dirty[id] = arts
	}
	d := arts[c.Seq]
	if d == nil {
		d = newDirtyArtifact(g.w.appendsNUL)
		arts[c.Seq] = d
	}
	d.add(c)
}

// setStatus changes a session's status and, after the commit, tells the
// session stream.
func (g *group) setStatus(id string, e *entry, st protocol.SessionStatus) {
	if e.rec.Status == st {
		return
	}
	e.rec.Status = st
	g.w.publishSessionUpdate(g, e, &st, nil)
}

func (w *writer) publishSessionUpdate(g *group, e *entry, st *protocol.SessionStatus, summary *string) {
	data, err := json.Marshal(protocol.SessionUpdated{ID: e.rec.ID, Fields: protocol.SessionFields{Status: st, Summary: summary}})
	if err != nil {
		w.log.Error("encode session_updated", slog.Any("err", err))
		return
	}
	msg := &hub.Message{Event: protocol.SSESessionUpdated, Data: data, Key: deref(e.rec.Project)}
	g.onCommit(func() { w.hub.Publish(sessionsTopic, msg) })
}

// remove deletes a session: rows (by cascade), caches, and every stream.
func (w *writer) remove(g *group, id string, e *entry) {
	g.ops = append(g.ops, store.DeleteSession{ID: id})
	g.put(id, nil)
	delete(g.keyed, id)
	for k := range g.inbox {
		if k.session == id {
			delete(g.inbox, k)
		}
	}
	for k := range g.answers {
		if k.session == id {
			delete(g.answers, k)
		}
	}
	if g.removed == nil {
		g.removed = map[string]bool{}
	}
	g.removed[id] = true
	// A stream opened earlier in the group was the deleted session's
	// (held).
	delete(g.opened, id)
	delete(g.dirty, id)
	w.dropState(id)
	data, _ := json.Marshal(protocol.SessionRemoved{ID: id})
	msg := &hub.Message{Event: protocol.SSESessionRemoved, Data: data, Key: deref(e.rec.Project)}
	g.onCommit(func() {
		delete(w.lagging, id)
		w.unsettled.Delete(id)
		w.approvals.removeSession(id, w.opts.Now().UnixMilli())
		w.log.Info("session removed", slog.String("session", id))
		w.obs.SessionRemoved()
		w.index.remove(id)
		if h := w.holders[id]; h != nil {
			h.sub.Close()
			delete(w.holders, id)
		}
		w.hub.CloseTopic(artifactTopic(id))
		w.hub.CloseTopic(commandTopic(id))
		w.hub.Publish(sessionsTopic, msg)
	})
}

// state returns the session's reducer state, folding the event log when it
// is not cached.
func (w *writer) state(g *group, id string) (*state, error) {
	w.clock++
	if s, ok := w.states[id]; ok {
		s.used = w.clock
		s.usedAt = w.opts.Now()
		s.turnEnded = false
		g.states[id] = true
		return s, nil
	}
	ctx, cancel := w.storeCtx()
	defer cancel()
	fold := foldStored
	if w.lagging[id] == nil {
		fold = foldReleasing
	}
	s, err := fold(ctx, w.store, id)
	if err != nil {
		return nil, err
	}
	if w.lagging[id] == nil {
		// The closed artifacts' bodies are stored: only the open ones
		// stay. (A lagging session's stored artifacts lag its log, so
		// the bodies a later event needs could not be read back: it
		// keeps them all until it settles, which this group does, see
		// defers.)
		s.st.Release()
		// After the fold's artifacts, every one the store holds: see
		// storedPastFold. (A lagging session's stored artifacts are of a
		// shorter log; its settle writes the fold's.)
		last, err := storedPastFold(ctx, w.store, id, int64(s.st.Len()))
		if err != nil {
			return nil, err
		}
		if last > int64(s.st.Len()) {
			w.log.Warn("stored artifacts past the folded ones: new ones go after them", slog.String("session", id), slog.Int64("stored", last), slog.Int("folded", s.st.Len()))
			s.st.SkipSeqTo(last)
		}
	}
	s.used = w.clock
	s.usedAt = w.opts.Now()
	s.turnEnded = false
	if e := g.entry(id); e != nil && e.rec.Rev != s.st.Rev() && (w.shared == nil || e.rec.Rev > s.st.Rev()) && w.lagging[id] == nil {
		// The stored artifacts came from a different fold (a reducer
		// change: an upgrade, or replicas of two builds during a
		// roll); say so once. New revisions continue above both:
		// clients hold the stored ones, and a change numbered at or
		// below them would be one they skip as had. (With other
		// replicas, a cache behind the log differs too, below the
		// fold: its commit expects the old version and is redone. A
		// row's revision is written in the commit of its events, so on
		// a shared database a stored revision above the fold is a
		// reducer change, or a session deleted and created again,
		// whose commit is redone too.)
		w.log.Warn("folded revision differs from stored", slog.String("session", id), slog.Int64("stored", e.rec.Rev), slog.Int64("folded", s.st.Rev()))
		s.st.SkipTo(e.rec.Rev)
	}
	w.states[id] = s
	g.states[id] = true
	return s, nil
}

// storedPastFold returns the highest seq of session id's stored
// artifacts above folded (the number of artifacts its fold made), or
// folded when there is none, as nearly always: a build whose reducer
// made more artifacts of the same log (before 43f7d0a a notice split an
// id-less text block in two) stored more than the current one folds, and
// the next artifact created at a stored seq would be written over one
// the transcript holds. A session the store no longer has has none.
func storedPastFold(ctx context.Context, st Store, id string, folded int64) (int64, error) {
	last := folded
	for {
		list, more, err := st.ArtifactsBySeq(ctx, id, last, foldPageEvents, foldPageBytes)
		if protocol.CodeOf(err) == protocol.CodeNotFound {
			return folded, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read the artifacts stored past the fold session=%s after=%d: %w", id, last, err)
		}
		if len(list) > 0 {
			last = list[len(list)-1].Seq
		}
		if !more || len(list) == 0 {
			return last, nil
		}
	}
}

// Pages of a log read for a fold: the log a page at a time, so a fold
// holds the state it builds and one page of bodies, not the whole log
// beside it (up to --max-session-bytes).
const (
	foldPageEvents = 512
	foldPageBytes  = 1 << 20
)

// foldStored reads session id's event log from st a page at a time and
// folds it. Positions only grow, so the pages read one after another are
// the log as it was at the last one's read: in the writer, for a process
// owning its database, the log as it is (nothing else appends); on a
// shared database another replica's commit may be in the later pages, as
// it may be in a whole read made a moment later, and a commit on such a
// state expects the session's version and is redone when it is stale.
func foldStored(ctx context.Context, st Store, id string) (*state, error) {
	s := newFoldState()
	if err := eachLogEntry(ctx, st, id, foldPageEvents, foldPageBytes, s.fold); err != nil {
		return nil, fmt.Errorf("fold session=%s: %w", id, err)
	}
	return s, nil
}

// releaseEvery is how many bytes of bodies (reducer.State.Size) a
// releasing fold lets its state take on before it releases the closed
// artifacts' bodies again: often enough that a long session's rebuild
// holds about its open artifacts and this much, rarely enough that the
// walk over the held artifacts costs nothing beside the fold. A variable
// only for SmallThresholds.
var releaseEvery int64 = 4 << 20

// errReleasedNeeded stops a releasing fold whose log changes an artifact
// after its body was released.
var errReleasedNeeded = errors.New("an event changes an artifact whose body the fold released")

// foldReleasing is foldStored for a session whose stored artifacts are
// those of its whole log (not lagging), holding only the bodies that an
// event may still change: it releases the closed artifacts' bodies as it
// goes, as the writer does after each commit. foldStored holds every body
// until the fold ends, which for a long session is all of its text (up
// to --max-session-bytes) each time its state is rebuilt: after an
// eviction or a restart, on the session's next request.
//
// An event that changes an artifact already closed (a late
// tool_call_end, a text_end naming a finished block: reducer.State.Needs)
// would need that artifact's body as it was then, and the store holds it
// as the whole log left it. So such a log is folded again by foldStored,
// holding everything: rare, and no worse than before. Otherwise nothing
// released is read again, each released body is the stored one, and the
// state is the one foldStored's would be once released.
func foldReleasing(ctx context.Context, st Store, id string) (*state, error) {
	return foldReleasingThrough(ctx, st, id, math.MaxInt64)
}

// foldReleasingThrough is foldReleasing for a session whose stored
// artifacts are those of revision through (a lagging session's, see
// materialise.go): it releases only closed artifacts at or below that
// revision (reducer.State.ReleaseThrough), which the store holds as the
// fold does, and keeps every artifact changed after it, which a settle
// writes.
func foldReleasingThrough(ctx context.Context, st Store, id string, through int64) (*state, error) {
	s, err := foldReleasingEvery(ctx, st, id, releaseEvery, through)
	if errors.Is(err, errReleasedNeeded) {
		return foldStored(ctx, st, id)
	}
	return s, err
}

// foldReleasingEvery is foldReleasingThrough's fold, releasing whenever
// the bodies held grew by every bytes, and failing with
// errReleasedNeeded where foldReleasingThrough folds again.
func foldReleasingEvery(ctx context.Context, st Store, id string, every, through int64) (*state, error) {
	s := newFoldState()
	next := s.st.Size() + every
	err := eachLogEntry(ctx, st, id, foldPageEvents, foldPageBytes, func(le store.Event) error {
		ev, err := decodeLogEntry(le)
		if err != nil {
			return err
		}
		if len(s.st.Needs(ev)) > 0 {
			return errReleasedNeeded
		}
		s.foldEvent(le, ev)
		if s.st.Size() > next {
			s.st.ReleaseThrough(through)
			next = s.st.Size() + every
		}
		return nil
	})
	if errors.Is(err, errReleasedNeeded) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("fold session=%s: %w", id, err)
	}
	return s, nil
}

// foldLog builds a session's state from its event log.
func foldLog(log []store.Event) (*state, error) {
	s := newFoldState()
	for _, le := range log {
		if err := s.fold(le); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func newFoldState() *state {
	return &state{st: reducer.New(), maxSeq: map[string]int64{}, nextPos: 1, policy: newArtifactPolicy()}
}

// fold applies the log entry le, the next after what s has folded.
func (s *state) fold(le store.Event) error {
	ev, err := decodeLogEntry(le)
	if err != nil {
		return err
	}
	s.foldEvent(le, ev)
	return nil
}

func decodeLogEntry(le store.Event) (protocol.Event, error) {
	var ev protocol.Event
	if err := json.Unmarshal(le.Body, &ev); err != nil {
		return ev, fmt.Errorf("pos=%d: %w", le.Pos, err)
	}
	return ev, nil
}

// foldEvent applies ev, decoded from the log entry le (see fold).
func (s *state) foldEvent(le store.Event, ev protocol.Event) {
	cs := s.st.Apply(ev)
	s.chainEvent(le, cs)
	s.noteAsked(le, cs)
	s.noteTurn(le, cs)
	s.nextPos = le.Pos + 1
	s.logBytes += int64(len(le.Body))
	if le.AgentSeq > s.maxSeq[le.Instance] {
		s.maxSeq[le.Instance] = le.AgentSeq
	}
}

// commit stores the group in one transaction, then merges its records,
// answers its requests and publishes. On failure nothing is published, the
// reducer states it touched are dropped (the next use folds them from the
// log again) and every request gets 503.
func (w *writer) commit(g *group) {
	if len(g.stale) > 0 && g.err == nil {
		w.redo(g, g.stale)
		return
	}
	if g.err != nil {
		if w.shared != nil && g.retries < maxRetries {
			// The read that failed (a finished artifact's body) may have
			// met what another replica changed since this cache read the
			// session: read the sessions again and redo, as for a stale
			// commit.
			w.redo(g, g.ids)
			return
		}
		w.fail(g, g.err)
		return
	}
	w.planSettle(g)
	var (
		stored   []func() // what the database holds after the commit
		deferred []string // sessions whose artifacts and row wait (materialise.go)
		settled  []string // lagging sessions this commit brings up to date
	)
	for _, id := range g.ids {
		e := g.overlay[id]
		if e == nil {
			continue
		}
		if w.defers(g, id, e) {
			deferred = append(deferred, id)
			continue
		}
		arts := g.dirty[id]
		// A session removed in this group and created again in it is
		// new: the lag is its deleted namesake's (forgotten once the
		// removal commits), and settling it would write the old log's
		// artifacts, still in the database, into the new session.
		if l := w.lagging[id]; l != nil && !g.removed[id] {
			// Should the commit fail, the state dropped marks the
			// session stale: its bodies may be released by now.
			g.states[id] = true
			settled = append(settled, id)
			if l.stale {
				ops, rev, err := w.settleStale(id, l)
				if err != nil {
					w.fail(g, err)
					return
				}
				g.ops = append(g.ops, ops...)
				e.rec.Rev = max(e.rec.Rev, rev)
			} else {
				l.absorb(arts)
				arts = l.dirty
			}
		}
		if len(arts) > 0 {
			s := w.states[id]
			ops, after, err := s.policy.ops(id, s.st, arts)
			if err != nil {
				w.fail(g, err)
				return
			}
			g.ops = append(g.ops, ops...)
			stored = append(stored, after)
		}
		e.rec.Version++
		g.ops = append(g.ops, store.UpdateSession{Session: e.rec})
	}
	staged := w.stage(g, deferred)
	if w.shared != nil && len(g.base) > 0 {
		// First, so the store checks them before anything is written.
		exp := make([]store.Op, 0, len(g.base)+len(g.ops))
		for _, id := range g.ids {
			if x, ok := g.base[id]; ok {
				exp = append(exp, x)
			}
		}
		g.ops = append(exp, g.ops...)
	}
	if len(g.ops) > 0 {
		ctx, cancel := w.storeCtx()
		start := time.Now()
		err := w.store.Commit(ctx, g.ops)
		cancel()
		var stale *store.StaleError
		if errors.As(err, &stale) && w.shared != nil && g.retries < maxRetries {
			w.redo(g, stale.IDs)
			return
		}
		if err != nil {
			w.fail(g, err)
			return
		}
		took := time.Since(start)
		w.obs.Committed(took, g.reqs)
		w.recovered()
	}
	w.lagged(g, deferred, settled, staged)
	for _, f := range stored {
		f()
	}
	for _, id := range g.ids {
		w.obs.SessionStatus(entryStatus(w.sessions[id]), entryStatus(g.overlay[id]))
		if e := g.overlay[id]; e != nil {
			// This commit's changes are published below.
			e.pubRev = max(e.pubRev, e.rec.Rev)
			w.sessions[id] = e
		} else {
			delete(w.sessions, id)
		}
		w.track(id)
	}
	for _, f := range g.after {
		f()
	}
	w.evict(g)
}

// redo runs a group again after its commit found sessions stale changed
// by another replica, having read them again: the requests see what the
// database holds now, and their callers see one answer, as if the other
// replica's change had come first.
func (w *writer) redo(g *group, stale []string) {
	w.log.Debug("sessions changed by another replica: applying the group again", slog.Any("sessions", stale), slog.Int("retry", g.retries+1))
	for _, f := range g.aborts {
		f()
	}
	for id := range g.states {
		w.dropState(id)
	}
	for _, id := range stale {
		_ = w.refresh(id) // logged; the commit expects the version again
	}
	ng := newGroup(w)
	ng.retries, ng.reqs, ng.redo = g.retries+1, g.reqs, g.redo
	for _, f := range g.redo {
		f(ng)
	}
	w.commit(ng)
}

// dropState forgets a session's cached reducer state; its next use folds
// the log again.
func (w *writer) dropState(id string) {
	if l := w.lagging[id]; l != nil {
		// What the state knew of the lag is gone with it.
		l.stale, l.dirty = true, nil
	}
	if s, ok := w.states[id]; ok {
		w.stateBytes -= s.cost
		delete(w.states, id)
	}
}

func (w *writer) fail(g *group, err error) {
	w.log.Error("commit failed", slog.Int("ops", len(g.ops)), slog.Any("err", err))
	w.obs.CommitFailed()
	for _, f := range g.aborts {
		f()
	}
	for id := range g.states {
		w.dropState(id)
	}
	// A timeout that could not be stored is retried a little later, not
	// in a hot loop against a failing database.
	now := w.opts.Now()
	since := now
	if f := w.failing.Load(); f != nil {
		since = f.since
	}
	w.failing.Store(&writeFailure{since: since, err: err})
	for _, id := range g.ids {
		// A sandbox that posted or opened its stream showed it is alive,
		// stored or not: the heartbeat timeout runs from then. Forgotten,
		// a full disk outlasting the timeout marked every session whose
		// sandbox kept heartbeating disconnected once writes worked.
		if e, cur := g.overlay[id], w.sessions[id]; e != nil && cur != nil && e.lastActive.After(cur.lastActive) {
			cur.lastActive = e.lastActive
			w.track(id)
		}
		if d, ok := w.deadlines[id]; ok && !d.After(now) {
			w.setDeadline(id, now.Add(time.Second))
		}
	}
	if w.staged > 0 {
		// Settling is tried again after settleEvery, not at once.
		w.stagedSince = now
	}
	if w.remote != nil && len(g.ids) > 0 {
		// The commit may have been stored all the same (the connection
		// lost after the database committed), and no replica was told:
		// its sessions are read again at the next wake-up, as another
		// replica's change (not at once, against a failing database).
		w.remote.retry(g.ids)
	}
	err = unavailable("commit", err)
	for _, f := range g.failed {
		f(err)
	}
}

// evict recounts the size of the states the group used and then keeps at
// most maxStates reducer states and Options.StateCacheBytes of them,
// dropping the least recently used ones. Those the group used stay, and
// the byte budget spares active ones (Options.ActiveState): folding a
// busy session again on every request would cost far more than its
// memory, so busy sessions bigger than the budget together exceed it
// rather than thrash.
//
// A small state whose turn ended in the group, and no other began, is
// dropped right away: a session between turns may stay idle for hours, most stored sessions are
// such, and folding a short log again when the next turn starts costs one
// read of a few KiB, while caching it would cost its memory times the
// collector's headroom for every idle session.
func (w *writer) evict(g *group) {
	for id := range g.states {
		if s, ok := w.states[id]; ok {
			n := s.size()
			w.stateBytes += n - s.cost
			s.cost = n
			if s.logBytes <= idleLogBytes && s.turnEnded && !s.st.TurnOpen() && w.lagging[id] == nil {
				w.dropState(id)
			}
		}
	}
	budget := w.opts.StateCacheBytes
	if len(w.states) <= maxStates && w.stateBytes <= budget {
		return
	}
	type lru struct {
		id     string
		used   uint64
		active bool
	}
	all := make([]lru, 0, len(w.states))
	now := w.opts.Now()
	for id, s := range w.states {
		if g.states[id] || w.lagging[id] != nil {
			// A lagging session's state knows what to settle.
			continue
		}
		all = append(all, lru{id, s.used, now.Sub(s.usedAt) < w.opts.ActiveState})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].used < all[j].used })
	// Down to three quarters of either cap, so the sort is not paid on
	// every commit once the cache is full.
	for _, x := range all {
		overCount := len(w.states) > maxStates*3/4
		if !overCount && w.stateBytes <= budget*3/4 {
			break
		}
		if x.active && !overCount {
			continue
		}
		w.dropState(x.id)
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
