package server

import (
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// groupSizes records the requests of each commit.
type groupSizes struct {
	nopObserver
	sizes []int
}

func (o *groupSizes) Committed(_ time.Duration, n int) { o.sizes = append(o.sizes, n) }

// A request that finds the queue empty waits for the sessions that
// posted small batches lately, at most maxGroupWait: with a and b both
// posting, a waits for b and both go in one commit; a lone poster never
// waits, nor does one whose fellow posters sent big batches or went quiet
// two windows ago. Time is the bubble's fake clock, so the instants are
// exact.
func TestGroupCommitWait(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		warm      []string      // sessions that post before the measured pair
		warmBatch int           // events in each warm-up post (1 when 0)
		quiet     time.Duration // between the warm-up and the pair
		bAfter    time.Duration // b posts this long after a
		wantA     time.Duration // when a is answered
		wantB     time.Duration // when b is answered
		wantSizes []int         // of the commits of the pair
	}{
		{"waits for a known poster", []string{"a", "b"}, 0, 0, time.Millisecond / 2, time.Millisecond / 2, time.Millisecond / 2, []int{2}},
		{"wait capped at maxGroupWait", []string{"a", "b"}, 0, 0, 3 * time.Millisecond, maxGroupWait, 3*time.Millisecond + maxGroupWait, []int{1, 1}},
		// b is new when it posts, and then waits for a, which does not
		// come: the price of the rule, at most maxGroupWait.
		{"a lone poster never waits", []string{"a"}, 0, 0, time.Millisecond / 2, 0, time.Millisecond/2 + maxGroupWait, []int{1, 1}},
		{"batches make no posters", []string{"a", "b"}, stageEvents + 1, 0, time.Millisecond / 2, 0, time.Millisecond/2 + maxGroupWait, []int{1, 1}},
		{"posters gone quiet", []string{"a", "b"}, 0, 2 * posterWindow, 3 * time.Millisecond, 0, 3*time.Millisecond + maxGroupWait, []int{1, 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w, _ := bubbleWriter(t, filepath.Join(t.TempDir(), "rein.db"), Options{})
				obs := &groupSizes{}
				sr := newReply[struct{}]()
				mustCall(t, w, &setObserver{obs: obs, reply: sr}, sr)
				for _, id := range []string{"a", "b"} {
					r := newReply[protocol.Session]()
					_, h := newSandboxToken()
					mustCall(t, w, &createReq{id: id, sandbox: h, reply: r}, r)
				}
				// post sends n deltas numbered from agent_seq from; a and b
				// post from goroutines of their own, so each call is given
				// its numbers rather than sharing a counter.
				post := func(id string, from int64, n int) {
					var evs []protocol.Event
					for i := range max(n, 1) {
						evs = append(evs, protocol.Event{Type: protocol.EventTextDelta, ID: "m1", Delta: "x", AgentSeq: from + int64(i)})
					}
					r := newReply[protocol.EventsAccepted]()
					mustCall(t, w, &eventsReq{id: id, from: Sandbox{Instance: "i1"}, events: evs, reply: r}, r)
				}
				for _, id := range tt.warm {
					post(id, 1, tt.warmBatch)
				}
				next := int64(max(tt.warmBatch, 1) + 1)
				time.Sleep(tt.quiet)
				sr = newReply[struct{}]()
				mustCall(t, w, &setObserver{obs: obs, reply: sr}, sr)
				obs.sizes = nil // read and written by the writer only inside calls

				start := time.Now()
				answered := make(chan time.Duration, 1)
				go func() {
					post("a", next, 1)
					answered <- time.Since(start)
				}()
				time.Sleep(tt.bAfter)
				post("b", next, 1)
				gotB := time.Since(start)
				gotA := <-answered
				if gotA != tt.wantA || gotB != tt.wantB {
					t.Errorf("a answered after %v, b after %v; want %v and %v", gotA, gotB, tt.wantA, tt.wantB)
				}
				if !slices.Equal(obs.sizes, tt.wantSizes) {
					t.Errorf("commit sizes %v; want %v", obs.sizes, tt.wantSizes)
				}
			})
		})
	}
}

// The posters a group waits for are those of the last window or the one
// before it, and none after two quiet windows.
func TestRecentPosters(t *testing.T) {
	t.Parallel()
	var gw groupWait
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	if n := gw.posters(t0); n != 0 {
		t.Fatalf("no posts yet: %d posters", n)
	}
	gw.posted("a", at(0))
	gw.posted("b", at(time.Millisecond))
	gw.posted("a", at(2*time.Millisecond))
	for _, c := range []struct {
		at   time.Duration
		want int
	}{
		{3 * time.Millisecond, 2},
		{posterWindow + time.Millisecond, 2}, // cur's window ended; it counts as the one before
		{2 * posterWindow, 0},
	} {
		if n := gw.posters(at(c.at)); n != c.want {
			t.Errorf("at %v: %d posters; want %d", c.at, n, c.want)
		}
	}
	// A post in the next window starts it; the one before still counts.
	gw.posted("c", at(posterWindow+time.Millisecond))
	if n := gw.posters(at(posterWindow + 2*time.Millisecond)); n != 2 {
		t.Errorf("after c: %d posters; want 2 (a and b of the window before)", n)
	}
	gw.posted("a", at(posterWindow+3*time.Millisecond))
	gw.posted("b", at(posterWindow+4*time.Millisecond))
	gw.posted("d", at(posterWindow+5*time.Millisecond))
	if n := gw.posters(at(posterWindow + 6*time.Millisecond)); n != 4 {
		t.Errorf("after a, b and d: %d posters; want 4", n)
	}
	// After a quiet window the old posters are gone.
	gw.posted("e", at(4*posterWindow))
	if n := gw.posters(at(4*posterWindow + time.Millisecond)); n != 1 {
		t.Errorf("after two quiet windows: %d posters; want 1", n)
	}
}

// setObserver installs obs in the writer goroutine.
type setObserver struct {
	obs   Observer
	reply reply[struct{}]
}

func (r *setObserver) apply(w *writer, g *group) {
	w.obs = r.obs
	g.onCommit(func() { r.reply.ok(struct{}{}) })
}
