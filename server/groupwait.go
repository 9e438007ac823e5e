package server

import "time"

// Group commit waits. A commit costs much the same whatever it carries
// (BEGIN, the WAL's frames and header, with --sync full its fsync), so the
// CPU and time per one-event request fall with the group's size. Taking
// only what is queued the moment the writer is free makes small groups
// under load: the posters answered by one commit send their next request
// while the next commit already runs with the few that came first.
//
// The first rule waited while a group was smaller than the last one, at
// most half the last commit's time. With --sync normal a commit takes
// ~150 µs, so it waited ~75 µs, too short for a poster's round trip; one
// group of one then made the next one not wait at all, and 32 posters
// settled into groups of 4.6 requests on average, 37% of them of one
// (docs/BENCHMARKS.md, "Group commits that wait for the posters").
//
// So the writer waits for the posters it knows: the sessions that posted
// small batches of events in the last posterWindow or the one before.
// While the group holds fewer requests than that, the writer waits for the
// next one, at most maxGroupWait from the group's first empty queue. A
// lone poster (an agentd streaming one session, a person's prompt) is the
// only one it knows, so it never waits; 32 posters wait for each other,
// which is what the slowest of them does anyway.
const (
	maxGroupWait = time.Millisecond
	// posterWindow: a poster counts while it posted in the last one or two
	// windows. Long beside a poster's round trip under load (2-3 ms for
	// 32), so none of the posters drops out between its requests; short
	// enough that a poster gone quiet stops costing waits within 20 ms.
	posterWindow = 10 * time.Millisecond
)

// groupWait is the writer's memory for straggler: the recent posters, and
// the wait of the group being taken.
type groupWait struct {
	// cur holds the sessions that posted small batches since curFrom;
	// prev those of the window before.
	cur, prev map[string]struct{}
	curFrom   time.Time
	deadline  time.Time // end of the current group's wait; zero before it starts
	// timer is reused by every wait: a new one each time was 3% of the
	// server's CPU under 32 posters.
	timer *time.Timer
}

// posted records that session id posted events at now.
func (gw *groupWait) posted(id string, now time.Time) {
	if gw.cur == nil {
		gw.cur, gw.prev, gw.curFrom = map[string]struct{}{}, map[string]struct{}{}, now
	}
	if age := now.Sub(gw.curFrom); age >= posterWindow {
		// The window ended: cur becomes prev, or, after a quiet window,
		// nothing does. The maps are reused; clear keeps their buckets.
		clear(gw.prev)
		if age < 2*posterWindow {
			gw.cur, gw.prev = gw.prev, gw.cur
		} else {
			clear(gw.cur)
		}
		gw.curFrom = now
	}
	gw.cur[id] = struct{}{}
}

// posters is how many sessions posted small batches lately: the more of
// the two windows, since cur starts empty each window and fills again.
func (gw *groupWait) posters(now time.Time) int {
	if gw.cur == nil || now.Sub(gw.curFrom) >= 2*posterWindow {
		return 0
	}
	if now.Sub(gw.curFrom) >= posterWindow {
		return len(gw.cur)
	}
	return max(len(gw.cur), len(gw.prev))
}

// arrived notes a request taken into a group. Only small batches make
// their session a poster to wait for: a commit's fixed cost is what a
// wait shares out, and a batch of hundreds of events (agentd catching up,
// the bench's batched ingest) already pays its own many times over, so
// waiting for it, or making it wait, only adds its latency.
func (w *writer) arrived(r request) {
	if er, ok := r.(*eventsReq); ok && len(er.events) <= stageEvents {
		w.groupWait.posted(er.id, time.Now())
	}
}

// straggler returns the next request for a group that holds n requests
// and finds the queue empty, waiting for it while the group is smaller
// than the number of recent posters and the wait's budget lasts; nil
// means commit now.
func (w *writer) straggler(n int) request {
	gw := &w.groupWait
	now := time.Now()
	if n >= gw.posters(now) {
		return nil
	}
	if gw.deadline.IsZero() {
		gw.deadline = now.Add(maxGroupWait)
	}
	left := gw.deadline.Sub(now)
	if left <= 0 {
		return nil
	}
	if gw.timer == nil {
		gw.timer = time.NewTimer(left)
	} else {
		// Since Go 1.23 a stopped timer's channel holds no stale tick,
		// so Reset needs no drain.
		gw.timer.Reset(left)
	}
	defer gw.timer.Stop()
	select {
	case r := <-w.reqs:
		return r
	case <-gw.timer.C:
	case <-w.quit:
	}
	return nil
}
