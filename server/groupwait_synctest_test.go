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

// setGroupWait makes the writer remember a last commit of n requests that
// took d, after its own (empty) group, so it does not change them.
type setGroupWait struct {
	n     int
	d     time.Duration
	reply reply[struct{}]
}

func (r *setGroupWait) apply(w *writer, g *group) {
	g.onCommit(func() {
		w.groupWait.committed(r.n, r.d)
		r.reply.ok(struct{}{})
	})
}

// A request that finds the queue empty waits for more while its group is
// smaller than the last one, at most half the last commit's time: a
// second request sent 1 ms later joins it, and both are answered when the
// 2 ms wait ends. After a commit of one request nothing waits. Time is the
// bubble's fake clock, so the instants are exact.
func TestGroupCommitWait(t *testing.T) {
	for _, tt := range []struct {
		name      string
		lastGroup int
		lastTook  time.Duration
		wantWait  time.Duration // when the first request is answered
		wantSizes []int         // of the commits of the two requests
	}{
		{"after a big group", 8, 4 * time.Millisecond, 2 * time.Millisecond, []int{2}},
		{"wait capped at maxGroupWait", 8, time.Second, maxGroupWait, []int{2}},
		{"after a lone request", 1, 4 * time.Millisecond, 0, []int{1, 1}},
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
				gr := newReply[struct{}]()
				mustCall(t, w, &setGroupWait{n: tt.lastGroup, d: tt.lastTook, reply: gr}, gr)
				obs.sizes = nil // read and written by the writer only inside calls

				start := time.Now()
				answered := make(chan time.Duration, 2)
				post := func(id string) {
					r := newReply[protocol.EventsAccepted]()
					mustCall(t, w, &eventsReq{id: id, instance: "i1", events: []protocol.Event{{Type: protocol.EventTextDelta, ID: "m1", Delta: "x", AgentSeq: 1}}, reply: r}, r)
					answered <- time.Since(start)
				}
				go post("a")
				time.Sleep(time.Millisecond)
				go post("b")
				first := <-answered
				<-answered
				if first != tt.wantWait {
					t.Errorf("first request answered after %v; want %v", first, tt.wantWait)
				}
				if !slices.Equal(obs.sizes, tt.wantSizes) {
					t.Errorf("commit sizes %v; want %v", obs.sizes, tt.wantSizes)
				}
			})
		})
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
