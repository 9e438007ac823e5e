package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/rein-ai/rein/reducer"
	"github.com/rein-ai/rein/server/store"
)

// Deferred materialisation. A session's artifact rows and its row's
// revision are derived from its event log; on a store.Stager that this
// process owns alone (SQLite), the writer commits a small append's events
// staged and writes what they change of the artifacts and the row later,
// a few times a second, for everything that changed since. A group of
// single-event requests then writes its events (a page or two of the
// staged table) and nothing else: before, each event also rewrote its
// session's artifact row, an append row and the session row, four pages
// per session per commit, and the commit's cost grows with its pages.
//
// What keeps this exact:
//   - The acknowledged events are in the log when the 2xx goes out, as
//     before; the artifacts are a pure fold of the log.
//   - A session whose artifacts lag its log is "lagging" (w.lagging); its
//     stored row keeps the revision its stored artifacts are at, so the
//     artifacts that lag are exactly those with a higher revision.
//   - Whoever reads a lagging session's artifacts from the store first
//     has the writer settle it (Server.settle): the read then holds every
//     change committed before it, and the live stream every change after
//     (the stream subscribes before it reads).
//   - Every lagging session is settled in the same commit that moves the
//     staged events into the log (store.Unstage), so after a crash the
//     staged table names every session that may lag: the writer folds
//     those again from the log at start and writes what their stored
//     artifacts lack (see load and settleStale) before anyone reads.
//   - Any other change to a session's row (status, heartbeat, commands,
//     tokens) settles the session in the same commit, so a row written
//     always carries the revision of the artifacts written with it.
const (
	// settleEvery is how long staged events and lagging artifacts wait
	// at most before the writer settles everything: the reads it spares
	// are ~4 pages per event, and a longer wait only holds more text in
	// memory (the released bodies of closed artifacts stay until then).
	settleEvery = 250 * time.Millisecond
	// maxStaged settles everything once this many events are staged, so
	// the staged table (scanned by a log read) stays small under a flood.
	maxStaged = 8192
	// stageEvents: a group that appends more events than this to a session
	// writes them into the log and the session's artifacts at once; a
	// batch costs a page per session either way, and staging it would
	// write it twice.
	stageEvents = 8
)

// deferMinGroup: a group of fewer requests writes everything at once. The
// writer is then not busy, so the pages it saves would be saved for
// nobody, and a lone request's reads find the store current without
// waiting for a settle. A variable for the tests that defer every group.
var deferMinGroup = 4

// lag is what the store lacks of a lagging session.
type lag struct {
	// rev is the revision of the session's stored artifacts (its row's).
	rev int64
	// dirty are the artifacts changed since, merged over the groups (see
	// dirtyArtifact.merge); nil when stale.
	dirty map[int64]*dirtyArtifact
	// stale: the reducer state that knew dirty was dropped (a failed
	// commit) or never existed (a restart); settling folds the log again
	// and writes every artifact above rev in full.
	stale bool
}

// absorb merges a group's dirty artifacts into what the session lacks.
func (l *lag) absorb(arts map[int64]*dirtyArtifact) {
	for seq, d := range arts {
		if was := l.dirty[seq]; was != nil {
			was.merge(d)
		} else {
			l.dirty[seq] = d
		}
	}
}

// merge adds o, what a later group did to the same artifact, to d.
func (d *dirtyArtifact) merge(o *dirtyArtifact) {
	d.rev = max(d.rev, o.rev)
	d.set = d.set || o.set
	if o.full {
		// What o appended after its full change is the text's end.
		d.full = true
		d.fields, d.texts, d.bytes, d.utf8 = nil, nil, 0, true
	}
	for i, f := range o.fields {
		// In o's order of first append per field, as one append each.
		d.add(reducer.Change{Kind: reducer.Appended, Field: f, Append: o.texts[i].String(), Rev: o.rev})
	}
}

// settleReq settles a lagging session before a read of its artifacts.
type settleReq struct {
	id    string
	reply reply[struct{}]
}

func (r *settleReq) apply(w *writer, g *group) {
	if _, ok := w.lagging[r.id]; ok && g.entry(r.id) != nil {
		g.settle[r.id] = true
	}
	failOn(g, r.reply)
	g.onCommit(func() { r.reply.ok(struct{}{}) })
}

// settle makes the store's artifacts of session id hold every change
// committed so far (see above); it returns at once unless the session
// lags. When the settle cannot be stored (writes fail: a full disk), it
// returns the artifacts folded from the log instead, so that reads keep
// working while writes fail and still hold every acknowledged change:
// nothing commits meanwhile, so the fold is what followers were sent.
func (s *Server) settle(ctx context.Context, id string) (*foldedArtifacts, error) {
	if _, ok := s.w.unsettled.Load(id); !ok {
		return nil, nil
	}
	r := newReply[struct{}]()
	_, err := call(ctx, s.w, &settleReq{id: id, reply: r}, r)
	if err == nil || ctx.Err() != nil {
		return nil, err
	}
	// The session's record before and after its log: the same createdAt
	// both times says no delete and create came between, so the fold is
	// of the session that createdAt names (store.Snapshot.Created).
	before, ferr := s.store.Session(ctx, id)
	if ferr != nil {
		return nil, errors.Join(err, ferr)
	}
	st, ferr := foldStored(ctx, s.store, id)
	if ferr != nil {
		return nil, errors.Join(err, ferr)
	}
	after, ferr := s.store.Session(ctx, id)
	if ferr == nil && after.CreatedAt != before.CreatedAt {
		ferr = fmt.Errorf("session %s was deleted and created again while its log was read", id)
	}
	if ferr != nil {
		return nil, errors.Join(err, ferr)
	}
	f := &foldedArtifacts{rev: st.st.Rev(), created: before.CreatedAt}
	for seq := int64(1); seq <= int64(st.st.Len()); seq++ {
		body, rev, merr := st.st.ArtifactJSON(seq) // see artifactPolicy.ops
		if merr != nil {
			return nil, errors.Join(err, merr)
		}
		if body != nil {
			f.bySeq = append(f.bySeq, store.Artifact{Seq: seq, Rev: rev, Body: body})
		}
	}
	return f, nil
}

// foldedArtifacts is a lagging session's artifacts as a fold of its log
// gives them, for reads while the store's copy cannot be brought up to
// date; the reads page them as the store would.
type foldedArtifacts struct {
	rev     int64
	created int64            // the session's createdAt
	bySeq   []store.Artifact // seq order, as the reducer holds them
}

// page is store.ArtifactsPage of the fold: the artifacts changed after
// revision after, in revision order, cut as the store cuts them.
func (f *foldedArtifacts) page(after int64, limit, maxBytes int) store.Snapshot {
	var out []store.Artifact
	for _, a := range f.bySeq {
		if a.Rev > after {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b store.Artifact) int { return cmp.Compare(a.Rev, b.Rev) })
	out, more := cut(out, limit, maxBytes)
	return store.Snapshot{Rev: f.rev, Artifacts: out, Created: f.created, More: more}
}

// seqPage is store.ArtifactsBySeq of the fold (limit < 0: all).
func (f *foldedArtifacts) seqPage(after int64, limit, maxBytes int) ([]store.Artifact, bool) {
	i, _ := slices.BinarySearchFunc(f.bySeq, after+1, func(a store.Artifact, seq int64) int { return cmp.Compare(a.Seq, seq) })
	out, more := cut(f.bySeq[i:], limit, maxBytes)
	return slices.Clone(out), more
}

// cut is list cut as store.PageCut cuts a page (limit < 0: all), and
// whether it left any.
func cut(list []store.Artifact, limit, maxBytes int) ([]store.Artifact, bool) {
	if limit < 0 {
		return list, false
	}
	sizes := make([]int64, len(list))
	for i, a := range list {
		sizes[i] = int64(len(a.Body))
	}
	n := store.PageCut(sizes, limit, maxBytes)
	return list[:n], n < len(list)
}

// stager returns the store as a Stager when the writer may defer (see
// above): it stages, and no other process reads or writes the database.
func stagerOf(st Store, shared store.Shared) store.Stager {
	sg, ok := st.(store.Stager)
	x, exclusive := st.(store.Exclusive)
	if !ok || !exclusive || !x.Exclusive() || shared != nil {
		return nil
	}
	return sg
}

// loadStaged marks the sessions with staged events lagging and stale: a
// crash may have left their artifacts behind their log.
func (w *writer) loadStaged(ctx context.Context) error {
	if w.stager == nil {
		return nil
	}
	ids, err := w.stager.StagedSessions(ctx)
	if err != nil {
		return fmt.Errorf("load staged sessions: %w", err)
	}
	for _, id := range ids {
		if e := w.sessions[id]; e != nil {
			w.lagging[id] = &lag{rev: e.rec.Rev, stale: true}
			w.unsettled.Store(id, struct{}{})
			w.staged++
		}
	}
	if len(ids) > 0 {
		w.stagedSince = w.opts.Now().Add(-settleEvery)
		w.log.Info("settling sessions staged before the last stop", slog.Int("sessions", len(ids)))
	}
	return nil
}

// defers reports whether the group may leave session id's artifacts and
// row to a later commit: the store stages, the group appended a few
// events at most, and it changed nothing of the row but its revision.
func (w *writer) defers(g *group, id string, e *entry) bool {
	if w.stager == nil || g.reqs < deferMinGroup || g.settleAll || g.settle[id] || g.appended[id] > stageEvents {
		return false
	}
	if l := w.lagging[id]; l != nil && l.stale {
		return false
	}
	old := w.sessions[id]
	return old != nil && sameRow(old.rec, e.rec)
}

// sameRow reports whether a and b store the same row but for the
// revision and the version.
func sameRow(a, b store.Session) bool {
	return a.Status == b.Status && eqPtr(a.Summary, b.Summary) && eqPtr(a.Project, b.Project) &&
		a.CreatedAt == b.CreatedAt && eqPtr(a.LastHeartbeat, b.LastHeartbeat) &&
		a.AckedCommandID == b.AckedCommandID && a.LastCommandID == b.LastCommandID &&
		a.CurrentInstance == b.CurrentInstance && a.StreamEpoch == b.StreamEpoch
}

func eqPtr[T comparable](a, b *T) bool {
	return a == b || (a != nil && b != nil && *a == *b)
}

// settleStale returns the writes that bring a stale lagging session's
// stored artifacts up to its log as committed: every artifact whose
// revision passed l.rev, in full, from a fold of the log (the cached
// state, if any, may hold this group's uncommitted events). It returns the
// log's revision.
func (w *writer) settleStale(id string, l *lag) ([]store.Op, int64, error) {
	ctx, cancel := w.storeCtx()
	defer cancel()
	// The stored artifacts are those of revision l.rev: the fold may
	// release what it closed at or below it, and holds what it writes.
	s, err := foldReleasingThrough(ctx, w.store, id, l.rev)
	if err != nil {
		return nil, 0, fmt.Errorf("settle: %w", err)
	}
	dirty := map[int64]*dirtyArtifact{}
	// Heads: st.Artifacts() copied every held text, for revisions. The
	// fold's policy knows none of them, so each is written whole, or a
	// big one as a body without its text and the text as appends
	// (writeRebase); the record carries no change of its own.
	for _, a := range s.st.ArtifactHeads() {
		if a != nil && a.Rev > l.rev {
			dirty[a.Seq] = &dirtyArtifact{rev: a.Rev, utf8: true, nul: w.appendsNUL}
		}
	}
	ops, _, err := s.policy.ops(id, s.st, dirty)
	return ops, s.st.Rev(), err
}

// planSettle counts the group's appends per session and decides whether
// it settles everything: when the first staged event has waited
// settleEvery, or maxStaged are staged. Then every lagging session joins
// the group.
func (w *writer) planSettle(g *group) {
	if w.stager == nil {
		return
	}
	g.appended = map[string]int{}
	for _, op := range g.ops {
		if ae, ok := op.(store.AppendEvents); ok {
			g.appended[ae.SessionID] += len(ae.Events)
		}
	}
	if w.staged > 0 && (w.staged >= maxStaged || !w.opts.Now().Before(w.stagedSince.Add(settleEvery))) {
		g.settleAll = true
	}
	if g.settleAll {
		for id := range w.lagging {
			g.entry(id)
		}
	}
}

// stage marks the appends of the deferred sessions staged and, when the
// group settles everything, adds the move of the staged events into the
// log. It returns how many events the group stages.
func (w *writer) stage(g *group, deferred []string) int {
	if w.stager == nil {
		return 0
	}
	n := 0
	if len(deferred) > 0 {
		stage := make(map[string]bool, len(deferred))
		for _, id := range deferred {
			stage[id] = true
		}
		for i, op := range g.ops {
			if ae, ok := op.(store.AppendEvents); ok && stage[ae.SessionID] {
				ae.Stage = true
				g.ops[i] = ae
				n += len(ae.Events)
			}
		}
	}
	if g.settleAll && w.staged+n > 0 {
		g.ops = append(g.ops, store.Unstage{})
	}
	return n
}

// lagged records, once the group committed, which sessions lag (before
// anything is published: a reader that sees the publication finds the
// session unsettled) and which caught up.
func (w *writer) lagged(g *group, deferred, settled []string, staged int) {
	if w.stager == nil {
		return
	}
	for _, id := range deferred {
		l := w.lagging[id]
		if l == nil {
			// The row as stored: the commit did not write it.
			l = &lag{rev: w.sessions[id].rec.Rev, dirty: map[int64]*dirtyArtifact{}}
			w.lagging[id] = l
			w.unsettled.Store(id, struct{}{})
		}
		l.absorb(g.dirty[id])
	}
	for _, id := range settled {
		delete(w.lagging, id)
		w.unsettled.Delete(id)
	}
	if g.settleAll {
		w.staged, w.stagedSince = 0, time.Time{}
		return
	}
	if w.staged == 0 && staged > 0 {
		w.stagedSince = w.opts.Now()
	}
	w.staged += staged
}
