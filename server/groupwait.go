package server

import "time"

// Group commit waits. Each commit costs about the same whatever it
// carries (with --sync full mostly the WAL's fsync), so the throughput of
// one-event requests is the group size over the commit time. Taking only
// what is queued the moment the writer is free made small groups under
// load: the clients answered by one commit send their next request while
// the next commit already runs with the few that came first (32 posters
// gave groups of ~14 on 8 ms commits). So when a group is smaller than the
// last one, the writer waits a little for the rest, at most maxGroupWait
// and at most half the last commit's time: a lone request (the last group
// was one request) never waits, and the wait costs at most half a commit.
const maxGroupWait = 2 * time.Millisecond

// groupWait is the writer's memory of its last commit, for straggler.
type groupWait struct {
	lastGroup  int           // requests the last commit carried
	lastCommit time.Duration // how long it took
	deadline   time.Time     // end of the current group's wait; zero before it starts
}

// committed records a commit of n requests that took d.
func (gw *groupWait) committed(n int, d time.Duration) {
	gw.lastGroup, gw.lastCommit = n, d
}

// straggler returns the next request for a group that holds n requests
// and finds the queue empty, waiting for it while the group is smaller
// than the last one and the wait's budget lasts; nil means commit now.
func (w *writer) straggler(n int) request {
	gw := &w.groupWait
	if n >= gw.lastGroup {
		return nil
	}
	now := time.Now()
	if gw.deadline.IsZero() {
		gw.deadline = now.Add(min(maxGroupWait, gw.lastCommit/2))
	}
	left := gw.deadline.Sub(now)
	if left <= 0 {
		return nil
	}
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case r := <-w.reqs:
		return r
	case <-t.C:
	case <-w.quit:
	}
	return nil
}
