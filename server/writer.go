package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
	"github.com/rein-ai/rein/server/internal/hub"
	"github.com/rein-ai/rein/server/store"
)

const (
	// maxGroup caps the requests one transaction takes, so one commit (and
	// the replies waiting on it) stays short under a flood.
	maxGroup = 256
	// queueLen is how many requests may wait for the writer; beyond it
	// handlers wait to enqueue, which is the backpressure.
	queueLen = 1024
	// maxStates caps the reducer states kept in memory. An evicted state is
	// folded again from the event log on its next use.
	maxStates = 1024
	// commitTimeout bounds one transaction; busy_timeout is 5s.
	commitTimeout = 30 * time.Second
)

// errUnavailable is what requests get when the store failed or the server
// is shutting down: retryable.
var errUnavailable = protocol.Errorf(protocol.CodeUnavailable, "storage unavailable, retry later")

func unavailable(op string, cause error) error {
	return fmt.Errorf("%s: %w", op, errors.Join(errUnavailable, cause))
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
	// stored is, per artifact this state has written in full, what the
	// database holds for it. An artifact not in it (any artifact of a
	// state folded from the log) is written in full on its next change,
	// which also drops whatever appends were pending for it.
	stored map[int64]storedArtifact
}

// storedArtifact is the size of an artifact's last full body and of the
// text appended to it since.
type storedArtifact struct {
	body, appended int
}

// dirtyArtifact is what one group did to one artifact.
type dirtyArtifact struct {
	rev int64 // the artifact's revision after the group
	// full: the group created the artifact or set a field, so its whole
	// body must be written. Otherwise it only appended to streamed fields:
	// fields and texts hold the text per field, in order of first append.
	full   bool
	fields []string
	texts  []*strings.Builder
	// bytes is the appended text's length; utf8 says it is all valid UTF-8
	// (see store.MergeAppends).
	bytes int
	utf8  bool
}

func (d *dirtyArtifact) add(c reducer.Change) {
	d.rev = max(d.rev, c.Rev)
	if c.Kind != reducer.Appended {
		d.full = true
		d.fields, d.texts = nil, nil
		return
	}
	if d.full {
		return
	}
	d.bytes += len(c.Append)
	d.utf8 = d.utf8 && utf8.ValidString(c.Append)
	i := slices.Index(d.fields, c.Field)
	if i < 0 {
		i = len(d.fields)
		d.fields = append(d.fields, c.Field)
		d.texts = append(d.texts, &strings.Builder{})
	}
	d.texts[i].WriteString(c.Append)
}

// appends returns the group's appends, one per field.
func (d *dirtyArtifact) appends() []store.FieldAppend {
	out := make([]store.FieldAppend, len(d.fields))
	for i, f := range d.fields {
		out[i] = store.FieldAppend{Field: f, Text: d.texts[i].String()}
	}
	return out
}

// holder is the sandbox connection that holds a session's command stream.
type holder struct {
	instance string
	sub      *hub.Subscriber
	token    uint64
}

// request is one unit of work for the writer goroutine.
type request interface {
	// apply runs in the writer goroutine; it adds the request's writes to
	// g and registers what happens after the commit (or its failure).
	apply(w *writer, g *group)
}

type result struct {
	v   any
	err error
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

	// owned by run
	sessions  map[string]*entry
	states    map[string]*state
	holders   map[string]*holder
	deadlines map[string]time.Time
	clock     uint64 // for LRU and ordering
	tokens    uint64
}

func newWriter(st Store, h *hub.Hub, log *slog.Logger, opts Options, index *tokenIndex) *writer {
	return &writer{
		store: st, hub: h, log: log, opts: opts, index: index,
		reqs: make(chan request, queueLen), quit: make(chan struct{}), done: make(chan struct{}),
		sessions: map[string]*entry{}, states: map[string]*state{}, holders: map[string]*holder{},
		deadlines: map[string]time.Time{},
	}
}

// load reads every session and applies the restart rules: no sandbox is
// connected to a fresh process, so live and idle sessions become
// disconnected. Bootstrap deadlines continue from createdAt.
func (w *writer) load(ctx context.Context) error {
	rows, err := w.store.LoadSessions(ctx)
	if err != nil {
		return fmt.Errorf("load sessions: %w", err)
	}
	hashes, err := w.store.SandboxTokens(ctx)
	if err != nil {
		return fmt.Errorf("load sessions: %w", err)
	}
	var ops []store.Op
	for _, r := range rows {
		if r.Status == protocol.StatusLive || r.Status == protocol.StatusIdle {
			r.Status = protocol.StatusDisconnected
			ops = append(ops, store.UpdateSession{Session: r})
		}
		w.clock++
		e := &entry{rec: r, order: w.clock}
		if h, ok := hashes[r.ID]; ok {
			e.sandbox = &h
			w.index.set(r.ID, h)
		}
		w.sessions[r.ID] = e
	}
	if len(ops) > 0 {
		if err := w.store.Commit(ctx, ops); err != nil {
			return fmt.Errorf("mark %d sessions disconnected: %w", len(ops), err)
		}
	}
	for id := range w.sessions {
		w.track(id)
	}
	return nil
}

// do hands r to the writer and waits for its reply. Once accepted, a
// request is answered even if ctx ends: its writes commit regardless.
func (w *writer) do(ctx context.Context, r request, reply chan result) (any, error) {
	select {
	case w.reqs <- r:
	case <-w.done:
		return nil, unavailable("enqueue", errors.New("server is shutting down"))
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case res := <-reply:
		return res.v, res.err
	case <-w.done:
		select {
		case res := <-reply:
			return res.v, res.err
		default:
			return nil, unavailable("wait", errors.New("server is shutting down"))
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

// stop ends run after it has committed what was already queued.
func (w *writer) stop() {
	select {
	case <-w.quit:
	default:
		close(w.quit)
	}
	<-w.done
}

func (w *writer) run() {
	defer close(w.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		w.resetTimer(timer)
		select {
		case <-w.quit:
			// Whoever enqueued before the quit gets a real answer.
			for {
				g := w.take(nil)
				if g == nil {
					return
				}
				w.commit(g)
			}
		case r := <-w.reqs:
			w.commit(w.take(r))
		case <-timer.C:
			g := newGroup(w)
			w.expire(g)
			w.commit(g)
		}
	}
}

// take starts a group with first (when not nil) and adds every request
// already waiting, up to maxGroup: that is the group commit. It returns nil
// when there was nothing to do.
func (w *writer) take(first request) *group {
	g := newGroup(w)
	n := 0
	if first != nil {
		first.apply(w, g)
		n++
	}
	for ; n < maxGroup; n++ {
		select {
		case r := <-w.reqs:
			r.apply(w, g)
		default:
			if n == 0 {
				return nil
			}
			return g
		}
	}
	return g
}

func (w *writer) resetTimer(t *time.Timer) {
	t.Stop()
	var next time.Time
	for _, d := range w.deadlines {
		if next.IsZero() || d.Before(next) {
			next = d
		}
	}
	if next.IsZero() {
		return
	}
	t.Reset(max(next.Sub(w.opts.Now()), 0))
}

// track recomputes a session's lifecycle deadline from its committed entry.
func (w *writer) track(id string) {
	e := w.sessions[id]
	switch {
	case e == nil:
		delete(w.deadlines, id)
	case e.rec.Status == protocol.StatusBootstrapping:
		w.deadlines[id] = time.UnixMilli(e.rec.CreatedAt).Add(w.opts.BootstrapTimeout)
	case e.rec.Status == protocol.StatusLive || e.rec.Status == protocol.StatusIdle:
		w.deadlines[id] = e.lastActive.Add(w.opts.HeartbeatTimeout)
	default:
		delete(w.deadlines, id)
	}
}

// expire applies the timeouts whose deadline has passed.
func (w *writer) expire(g *group) {
	now := w.opts.Now()
	for id, d := range w.deadlines {
		if d.After(now) {
			continue
		}
		e := g.entry(id)
		if e == nil {
			continue
		}
		switch e.rec.Status {
		case protocol.StatusBootstrapping:
			w.log.Info("removing session that never got a sandbox", slog.String("session", id), slog.Duration("timeout", w.opts.BootstrapTimeout))
			w.remove(g, id, e)
		case protocol.StatusLive, protocol.StatusIdle:
			w.log.Info("session missed its heartbeat", slog.String("session", id), slog.Duration("timeout", w.opts.HeartbeatTimeout))
			g.setStatus(id, e, protocol.StatusDisconnected)
		}
	}
}

// group is the work of one transaction. Records are changed on copies in
// overlay, merged into the writer's map only after the commit, so a failed
// commit leaves the in-memory view as the database is.
type group struct {
	w       *writer
	overlay map[string]*entry // nil value: deleted in this group
	ids     []string          // overlay keys in first-touch order
	ops     []store.Op
	dirty   map[string]map[int64]*dirtyArtifact // changed artifacts per session
	states  map[string]bool                     // reducer states used (dropped on failure)
	after   []func()
	failed  []func(error)
}

func newGroup(w *writer) *group {
	return &group{w: w, overlay: map[string]*entry{}, dirty: map[string]map[int64]*dirtyArtifact{}, states: map[string]bool{}}
}

// entry returns the session's entry for changing it in this group, or nil
// when it does not exist (or was deleted in this group).
func (g *group) entry(id string) *entry {
	if e, ok := g.overlay[id]; ok {
		return e
	}
	e := g.w.sessions[id]
	if e == nil {
		return nil
	}
	c := *e
	g.put(id, &c)
	return &c
}

func (g *group) put(id string, e *entry) {
	if _, ok := g.overlay[id]; !ok {
		g.ids = append(g.ids, id)
	}
	g.overlay[id] = e
}

func (g *group) onCommit(f func())    { g.after = append(g.after, f) }
func (g *group) onFail(f func(error)) { g.failed = append(g.failed, f) }
func (g *group) reply(ch chan result) { g.onFail(func(err error) { ch <- result{err: err} }) }

// markDirty records an artifact change of session id for the commit.
func (g *group) markDirty(id string, c reducer.Change) {
	arts := g.dirty[id]
	if arts == nil {
		arts = map[int64]*dirtyArtifact{}
		g.dirty[id] = arts
	}
	d := arts[c.Seq]
	if d == nil {
		d = &dirtyArtifact{utf8: true}
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
	msg := &hub.Message{Data: encodeSSE(0, protocol.SSESessionUpdated, data), Key: deref(e.rec.Project)}
	g.onCommit(func() { w.hub.Publish(sessionsTopic, msg) })
}

// remove deletes a session: rows (by cascade), caches, and every stream.
func (w *writer) remove(g *group, id string, e *entry) {
	g.ops = append(g.ops, store.DeleteSession{ID: id})
	g.put(id, nil)
	delete(g.dirty, id)
	if _, ok := w.states[id]; ok {
		delete(w.states, id)
	}
	data, _ := json.Marshal(protocol.SessionRemoved{ID: id})
	msg := &hub.Message{Data: encodeSSE(0, protocol.SSESessionRemoved, data), Key: deref(e.rec.Project)}
	g.onCommit(func() {
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
		g.states[id] = true
		return s, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	log, err := w.store.Events(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("fold session=%s: %w", id, err)
	}
	s := &state{st: reducer.New(), maxSeq: map[string]int64{}, used: w.clock, nextPos: 1, stored: map[int64]storedArtifact{}}
	for _, le := range log {
		var ev protocol.Event
		if err := json.Unmarshal(le.Body, &ev); err != nil {
			return nil, fmt.Errorf("fold session=%s pos=%d: %w", id, le.Pos, err)
		}
		s.st.Apply(ev)
		s.nextPos = le.Pos + 1
		s.logBytes += int64(len(le.Body))
		if le.AgentSeq > s.maxSeq[le.Instance] {
			s.maxSeq[le.Instance] = le.AgentSeq
		}
	}
	if e := g.entry(id); e != nil && e.rec.Rev != s.st.Rev() {
		// The stored artifacts came from a different fold (a reducer
		// change). New revisions continue from the fold; say so once.
		w.log.Warn("folded revision differs from stored", slog.String("session", id), slog.Int64("stored", e.rec.Rev), slog.Int64("folded", s.st.Rev()))
	}
	w.states[id] = s
	g.states[id] = true
	return s, nil
}

// commit stores the group in one transaction, then merges its records,
// answers its requests and publishes. On failure nothing is published, the
// reducer states it touched are dropped (the next use folds them from the
// log again) and every request gets 503.
func (w *writer) commit(g *group) {
	var stored []func() // what the database holds after the commit
	for _, id := range g.ids {
		e := g.overlay[id]
		if e == nil {
			continue
		}
		if arts := g.dirty[id]; len(arts) > 0 {
			ops, after, err := w.artifactOps(id, arts)
			if err != nil {
				w.fail(g, err)
				return
			}
			g.ops = append(g.ops, ops...)
			stored = append(stored, after)
		}
		g.ops = append(g.ops, store.UpdateSession{Session: e.rec})
	}
	if len(g.ops) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
		err := w.store.Commit(ctx, g.ops)
		cancel()
		if err != nil {
			w.fail(g, err)
			return
		}
	}
	for _, f := range stored {
		f()
	}
	for _, id := range g.ids {
		if e := g.overlay[id]; e != nil {
			w.sessions[id] = e
		} else {
			delete(w.sessions, id)
		}
		w.track(id)
	}
	for _, f := range g.after {
		f()
	}
	w.evict()
}

// artifactOps returns the writes for a session's changed artifacts, and a
// func that records, once they are committed, what the database holds.
//
// An artifact the group only appended to gets its appended text as
// AppendArtifacts rather than its whole body, so streaming into it costs
// what was appended, not its size. Appends pile up until they outgrow the
// last full body; then (and on any other change) the whole body is
// written again and the appends dropped. The full writes of a growing
// artifact thus double in size: they add up to less than twice its final
// size, and a read merges at most as many appended bytes as the body has.
func (w *writer) artifactOps(id string, arts map[int64]*dirtyArtifact) ([]store.Op, func(), error) {
	s := w.states[id]
	order := make([]int64, 0, len(arts))
	for seq := range arts {
		order = append(order, seq)
	}
	slices.Sort(order)
	var (
		puts    []store.Artifact
		appends []store.ArtifactAppend
		next    = make(map[int64]storedArtifact, len(order))
	)
	for _, seq := range order {
		d := arts[seq]
		was, known := s.stored[seq]
		if known && !d.full && d.utf8 && was.appended+d.bytes <= was.body {
			appends = append(appends, store.ArtifactAppend{Seq: seq, Rev: d.rev, Fields: d.appends()})
			next[seq] = storedArtifact{body: was.body, appended: was.appended + d.bytes}
			continue
		}
		a := s.st.Artifact(seq)
		body, err := json.Marshal(a)
		if err != nil {
			return nil, nil, fmt.Errorf("encode artifact session=%s seq=%d: %w", id, seq, err)
		}
		puts = append(puts, store.Artifact{Seq: seq, Rev: a.Rev, Body: body})
		next[seq] = storedArtifact{body: len(body)}
	}
	var ops []store.Op
	if len(puts) > 0 {
		ops = append(ops, store.PutArtifacts{SessionID: id, Artifacts: puts})
	}
	if len(appends) > 0 {
		ops = append(ops, store.AppendArtifacts{SessionID: id, Appends: appends})
	}
	return ops, func() { maps.Copy(s.stored, next) }, nil
}

func (w *writer) fail(g *group, err error) {
	w.log.Error("commit failed", slog.Int("ops", len(g.ops)), slog.Any("err", err))
	for id := range g.states {
		delete(w.states, id)
	}
	// A timeout that could not be stored is retried a little later, not
	// in a hot loop against a failing database.
	now := w.opts.Now()
	for _, id := range g.ids {
		if d, ok := w.deadlines[id]; ok && !d.After(now) {
			w.deadlines[id] = now.Add(time.Second)
		}
	}
	err = unavailable("commit", err)
	for _, f := range g.failed {
		f(err)
	}
}

// evict keeps at most maxStates reducer states, dropping the least
// recently used ones.
func (w *writer) evict() {
	if len(w.states) <= maxStates {
		return
	}
	type lru struct {
		id   string
		used uint64
	}
	all := make([]lru, 0, len(w.states))
	for id, s := range w.states {
		all = append(all, lru{id, s.used})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].used < all[j].used })
	for _, x := range all[:len(all)-maxStates*3/4] {
		delete(w.states, x.id)
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
