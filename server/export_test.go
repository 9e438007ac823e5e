package server

import (
	"context"
	"errors"
	"testing"
)

// Hooks for the external tests (package server_test), which run the
// domain behind the real HTTP adapter and store and need to reach inside
// now and then.

// notParallel refuses a knob (DeferEveryGroup, ShortQueue, ShortSweepPage,
// SmallThresholds) to a parallel test. A knob is a package variable every
// server started meanwhile reads: set in a parallel test, it would change
// the servers of the tests running beside it, and race with them. The
// tests that set one run sequentially, before the parallel ones start
// ("Parallel tests" in helpers_test.go). t.Setenv is the guard: it panics
// in a test that is, or whose parent is, parallel, and t.Parallel panics
// after it.
func notParallel(t testing.TB) {
	t.Helper()
	t.Setenv("REIN_SERVER_TEST_KNOB", t.Name())
}

// RaceEnabled says whether the tests run under the race detector
// (race_on_test.go).
const RaceEnabled = raceEnabled

// DropState drops a session's cached reducer state, as eviction or a
// restart would, and returns once the writer has done it.
func DropState(s *Server, id string) {
	r := newReply[struct{}]()
	_, _ = call(context.Background(), s.w, &dropStateReq{id: id, reply: r}, r)
}

type dropStateReq struct {
	id    string
	reply reply[struct{}]
}

func (r *dropStateReq) apply(w *writer, _ *group) {
	w.dropState(r.id)
	r.reply.ok(struct{}{})
}

// CachedStates returns the sessions whose reducer state is cached and the
// estimated bytes they hold.
func CachedStates(s *Server) (map[string]bool, int64) {
	r := newReply[cached]()
	c, _ := call(context.Background(), s.w, &cachedReq{reply: r}, r)
	return c.ids, c.bytes
}

type cached struct {
	ids   map[string]bool
	bytes int64
}

type cachedReq struct{ reply reply[cached] }

func (r *cachedReq) apply(w *writer, _ *group) {
	c := cached{ids: map[string]bool{}, bytes: w.stateBytes}
	for id := range w.states {
		c.ids[id] = true
	}
	r.reply.ok(c)
}

// Subscribers returns how many streams follow the session's artifacts.
func Subscribers(s *Server, id string) int { return s.hub.Len(artifactTopic(id)) }

// SettleEvery is how long staged events wait at most for the timed settle,
// on the writer's clock (Options.Now): a test that needs its sessions to
// lag until it says so gives the server a clock it moves itself.
const SettleEvery = settleEvery

// DeferEveryGroup makes every group leave what it can to a later settle
// (materialise.go), not only the busy ones, until the test ends.
func DeferEveryGroup(t testing.TB) {
	notParallel(t)
	was := deferMinGroup
	deferMinGroup = 0
	t.Cleanup(func() { deferMinGroup = was })
}

// ShortQueue makes the writers of servers started from now on queue at
// most n requests, until the test ends.
func ShortQueue(t testing.TB, n int) {
	notParallel(t)
	was := queueLen
	queueLen = n
	t.Cleanup(func() { queueLen = was })
}

// Queued returns how many requests wait in the writer's queue.
func Queued(s *Server) int { return len(s.w.reqs) }

// Lagging returns the sessions whose stored artifacts lag their log.
func Lagging(s *Server) map[string]bool {
	r := newReply[map[string]bool]()
	ids, _ := call(context.Background(), s.w, &laggingReq{reply: r}, r)
	return ids
}

type laggingReq struct{ reply reply[map[string]bool] }

func (r *laggingReq) apply(w *writer, _ *group) {
	ids := map[string]bool{}
	for id := range w.lagging {
		ids[id] = true
	}
	r.reply.ok(ids)
}

// Settle brings the session's stored artifacts up to its log.
func Settle(s *Server, id string) error {
	f, err := s.settle(context.Background(), id)
	if err == nil && f != nil {
		return errors.New("the settle could not be stored (writes fail)")
	}
	return err
}

// RunTimeouts applies the lifecycle timeouts due by the server's clock,
// as its timer does, and returns once they are committed.
func RunTimeouts(s *Server) {
	r := newReply[struct{}]()
	_, _ = call(context.Background(), s.w, &timeoutsReq{reply: r}, r)
}

type timeoutsReq struct{ reply reply[struct{}] }

func (r *timeoutsReq) apply(w *writer, g *group) {
	w.expire(g)
	failOn(g, r.reply)
	g.onCommit(func() { r.reply.ok(struct{}{}) })
}

// ReadAgain has a replica read session id's row from the database now, as
// an announcement of another replica's commit would have it, and returns
// once it has.
func ReadAgain(s *Server, id string) {
	r := newReply[struct{}]()
	_, _ = call(context.Background(), s.w, &readAgainReq{id: id, reply: r}, r)
}

// ReadAllAgain has a replica read every session's row from the database
// now, as it does when announcements may have been lost (its watch
// reconnected), and returns once it has.
func ReadAllAgain(s *Server) {
	r := newReply[struct{}]()
	_, _ = call(context.Background(), s.w, &readAllAgainReq{reply: r}, r)
}

type readAllAgainReq struct{ reply reply[struct{}] }

func (r *readAllAgainReq) apply(w *writer, g *group) {
	w.resync()
	failOn(g, r.reply)
	g.onCommit(func() { r.reply.ok(struct{}{}) })
}

// Poll has a replica read again the sessions it streams, as its poll
// does every pollEvery, and returns once it has.
func Poll(s *Server) {
	r := newReply[struct{}]()
	_, _ = call(context.Background(), s.w, &pollReq{reply: r}, r)
}

type pollReq struct{ reply reply[struct{}] }

func (r *pollReq) apply(w *writer, g *group) {
	for _, id := range w.polled() {
		_ = w.refresh(id)
	}
	failOn(g, r.reply)
	g.onCommit(func() { r.reply.ok(struct{}{}) })
}

type readAgainReq struct {
	id    string
	reply reply[struct{}]
}

func (r *readAgainReq) apply(w *writer, g *group) {
	w.refresh(r.id)
	// What an announcement's round then commits (applyRemote).
	g.do(w.reviveHeld)
	failOn(g, r.reply)
	g.onCommit(func() { r.reply.ok(struct{}{}) })
}

// Footprint returns the sizes of what the server keeps per session,
// token, stream and subscriber, read in the writer goroutine; ids name
// the sessions whose hub topics are counted (a topic exists only while
// it has subscribers).
func Footprint(s *Server, ids ...string) map[string]int {
	r := newReply[map[string]int]()
	m, _ := call(context.Background(), s.w, &footprintReq{ids: ids, reply: r}, r)
	return m
}

type footprintReq struct {
	ids   []string
	reply reply[map[string]int]
}

func (r *footprintReq) apply(w *writer, _ *group) {
	m := map[string]int{
		"sessions": len(w.sessions), "states": len(w.states), "holders": len(w.holders),
		"deadlines": len(w.deadlines), "lagging": len(w.lagging),
		"stateBytes": int(w.stateBytes),
	}
	w.unsettled.Range(func(any, any) bool { m["unsettled"]++; return true })
	w.approvals.mu.Lock()
	m["approvals.pending"], m["approvals.count"] = len(w.approvals.pending), len(w.approvals.count)
	w.approvals.mu.Unlock()
	w.index.mu.RLock()
	m["tokens.byHash"], m["tokens.bySession"] = len(w.index.byHash), len(w.index.bySession)
	w.index.mu.RUnlock()
	if w.remote != nil {
		w.remote.mu.Lock()
		m["remote.ids"] = len(w.remote.ids)
		w.remote.mu.Unlock()
	}
	m["hub.sessions"] = w.hub.Len(sessionsTopic)
	m["hub.approvals"] = w.hub.Len(approvalsTopic)
	for _, id := range r.ids {
		m["hub.artifacts"] += w.hub.Len(artifactTopic(id))
		m["hub.commands"] += w.hub.Len(commandTopic(id))
	}
	r.reply.ok(m)
}

// ShortSweepPage makes the sweeps read n sessions a page, until the test
// ends.
func ShortSweepPage(t testing.TB, n int) {
	notParallel(t)
	was := sweepPage
	sweepPage = n
	t.Cleanup(func() { sweepPage = was })
}

// Sweep has a replica compare every session it caches with the
// database, one whole pass of the sweep it starts every sweepEvery, and
// read again those that differ; it returns once it has.
func Sweep(s *Server) {
	r := newReply[struct{}]()
	_, _ = call(context.Background(), s.w, &sweepReq{reply: r}, r)
}

// WakeSweep wakes a replica's writer for a step of its sweep, as its
// ticker does every sweepEvery, and returns at once: the writer reads the
// pages that follow at its next wake-ups.
func WakeSweep(s *Server) { s.w.remote.wakeSweep() }

type sweepReq struct{ reply reply[struct{}] }

func (r *sweepReq) apply(w *writer, g *group) {
	w.sweeping = false // a pass of its own, from the first page
	for w.sweepStep() {
	}
	failOn(g, r.reply)
	g.onCommit(func() { r.reply.ok(struct{}{}) })
}

// WholeBodyMax is the size past which a growing artifact is no longer
// written whole (artifactPolicy): the real one, not SmallThresholds'.
var WholeBodyMax = wholeBodyMax

// SmallThresholds makes the sizes past which the server treats an
// artifact as big (wholeBodyMax, shareMin) and a rebuilt state releases
// (releaseEvery) a few hundred KiB, until the test ends, so that a test
// of a few MB of output takes every path a session of tens of MB takes.
func SmallThresholds(t testing.TB) {
	notParallel(t)
	body, share, release := wholeBodyMax, shareMin, releaseEvery
	wholeBodyMax, shareMin, releaseEvery = 256<<10, 64<<10, 256<<10
	t.Cleanup(func() { wholeBodyMax, shareMin, releaseEvery = body, share, release })
}
