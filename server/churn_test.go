package server_test

import (
	"fmt"
	"maps"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/pgtest"
)

// settled waits, within a bounded loop, until cond holds; streams end and
// release what they hold on their own goroutines after the server or the
// client ended them.
func settled(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	var why string
	// As long as any stream wait of the package: releasing is the
	// server's goroutines ending, which a loaded machine delays (1,000
	// polls, about 5 s, was the likeliest next flake under load).
	for deadline := time.Now().Add(streamDeadline); ; time.Sleep(5 * time.Millisecond) {
		var ok bool
		if ok, why = cond(); ok {
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	t.Fatalf("%s never settled in %s: %s", what, streamDeadline, why)
}

// footprintBack waits until the server's footprint is back to want
// (stateBytes aside: what the cache holds of live sessions is its own
// business) and fails the test if it never is.
func footprintBack(t *testing.T, s *server.Server, want map[string]int, ids []string) {
	t.Helper()
	settled(t, "footprint", func() (bool, string) {
		got := server.Footprint(s, ids...)
		delete(got, "stateBytes")
		return maps.Equal(got, want), fmt.Sprintf("got %v, want %v", got, want)
	})
}

// goroutinesBack waits until the goroutine count is back to at most n.
func goroutinesBack(t *testing.T, n int) {
	t.Helper()
	settled(t, "goroutines", func() (bool, string) {
		// The test's own client keeps connections alive.
		http.DefaultClient.CloseIdleConnections()
		got, stacks := goroutines()
		if got <= n {
			return true, ""
		}
		return false, fmt.Sprintf("%d goroutines, want at most %d:\n%s", got, n, stacks)
	})
}

// goroutines counts the server's goroutines: those running its code. What
// the churn must give back is the server's own; the drivers' and net/http's
// connection goroutines come and go on their own schedule (pgx's pool
// reader, net/http's background read of a live stream's connection: one
// more than at the start failed about 1 run in 8 with nothing leaked),
// and a leaked handler, subscriber or writer runs the server's code.
func goroutines() (int, string) {
	buf := make([]byte, 4<<20)
	all := string(buf[:runtime.Stack(buf, true)])
	var kept []string
	for _, g := range strings.Split(all, "\n\n") {
		if strings.Contains(g, "github.com/rein-ai/rein/server.") || strings.Contains(g, "github.com/rein-ai/rein/server/") {
			kept = append(kept, g)
		}
	}
	return len(kept), strings.Join(kept, "\n\n")
}

// churnSession takes session id through a sandbox's life: created with a
// prompt, its command stream opened, events posted up to a permission
// request, its artifact stream followed and abandoned, the request
// answered (with an Idempotency-Key, sent twice), and then one of three
// ends for the command stream (the client hangs up, a token rotation
// ends it, or the delete does) before the session is deleted.
func churnSession(t *testing.T, c *client, id string, i int) {
	t.Helper()
	c.must(http.StatusCreated, nil, "POST", "/sessions/"+id, map[string]string{"prompt": "hello", "project": "churn"})
	cmds := c.stream("/sessions/"+id+"/commands", protocol.HeaderInstance, fmt.Sprintf("inst-%d", i))
	if e := cmds.next(); e.Event != protocol.SSECommand {
		t.Fatalf("%s: first command %+v", id, e)
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/"+id+"/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, fmt.Sprintf("inst-%d", i))
	arts := c.stream("/sessions/" + id + "/stream")
	m := newModel(t)
	m.readSnapshot(arts)
	if i%2 == 0 {
		arts.close() // abandoned: the client hangs up
	}
	for range 2 {
		c.must(http.StatusAccepted, nil, "POST", "/sessions/"+id+"/commands", `{"type":"permission_response","requestId":"r1","optionId":"allow"}`,
			protocol.HeaderIdempotencyKey, "k-"+id)
	}
	switch i % 3 {
	case 0:
		cmds.close()
	case 1:
		c.must(http.StatusOK, nil, "POST", "/sessions/"+id+"/token", nil)
	}
	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/"+id, nil)
	if i%3 != 0 {
		cmds.expectEnd()
		cmds.close()
	}
	if i%2 != 0 {
		arts.expectEnd()
		arts.close()
	}
}

// Sessions created, used and deleted, again and again under the same
// ids, and others removed by the bootstrap timeout, leave nothing behind
// in the server's memory: every per-session, per-token, per-stream and
// per-subscriber structure is back to its size before, and so is the
// goroutine count, also when the sessions lag as they are deleted
// (deferred).
func TestChurnReleasesEverything(t *testing.T) { nowAndDeferred(t, churn) }

func churn(t *testing.T) {
	clock := newFakeClock()
	s := start(t, app.Options{Now: clock.Now, BootstrapTimeout: time.Minute, HeartbeatTimeout: 24 * time.Hour, PingInterval: time.Hour})
	c := newClient(t, s)
	const ids, rounds = 20, 5
	var all []string
	for i := range ids {
		all = append(all, fmt.Sprintf("churn%d", i), fmt.Sprintf("boot%d", i))
	}
	// One session that stays, so the inbox and the caches are not simply
	// empty.
	c.must(http.StatusCreated, nil, "POST", "/sessions/keep", nil)
	keep := c.stream("/sessions/keep/commands", protocol.HeaderInstance, "keep")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/keep/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "keep")
	all = append(all, "keep")
	if err := server.Settle(s.Server, "keep"); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	before := server.Footprint(s.Server, all...)
	delete(before, "stateBytes")
	started, _ := goroutines()

	for r := range rounds {
		sessions := c.stream("/sessions/stream")
		approvals := c.stream("/approvals/stream")
		var followers []*sseStream
		for i := range ids {
			churnSession(t, c, fmt.Sprintf("churn%d", i), r*ids+i)
			// Removed by the bootstrap timeout, with a follower.
			boot := fmt.Sprintf("boot%d", i)
			c.must(http.StatusCreated, nil, "POST", "/sessions/"+boot, map[string]string{"prompt": "never taken"})
			bs := c.stream("/sessions/" + boot + "/stream")
			newModel(t).readSnapshot(bs)
			if i%2 == 0 {
				bs.close()
			} else {
				followers = append(followers, bs)
			}
		}
		clock.Add(2 * time.Minute)
		server.RunTimeouts(s.Server)
		for _, f := range followers {
			f.expectEnd()
			f.close()
		}
		for i := range ids {
			c.wantError(http.StatusNotFound, protocol.CodeNotFound, "GET", fmt.Sprintf("/sessions/boot%d", i), nil)
		}
		if r%2 == 0 {
			sessions.close()
			approvals.close()
		} else {
			// Read a little, then hang up.
			if e := sessions.next(); !strings.HasPrefix(e.Event, "session_") {
				t.Fatalf("session stream: %+v", e)
			}
			sessions.close()
			approvals.close()
		}
	}
	// Deletes, creates and command streams of the same ids at once, so
	// one group commit deletes a session, creates it again and opens its
	// stream.
	raceSameIDs(ids, 10, func(int, int) (*client, *client) { return c, c })
	for i := range ids {
		c.do("DELETE", fmt.Sprintf("/sessions/churn%d", i), nil)
	}
	clock.Add(2 * time.Minute)
	server.RunTimeouts(s.Server)
	http.DefaultClient.CloseIdleConnections()
	footprintBack(t, s.Server, before, all)
	goroutinesBack(t, started)
	keep.close()
}

// The same churn through two replicas on one PostgreSQL database: each
// session is created on one, streamed and answered through the other,
// and deleted through either, or removed by the bootstrap timeout. Both
// replicas' caches, streams and remote change tracking are back to their
// size before.
func TestChurnReleasesEverythingOnReplicas(t *testing.T) {
	// Not parallel: it counts the goroutines of the whole test binary.
	clock := newFakeClock()
	dsn := pgtest.NewDatabase(t)
	opts := app.Options{DBPath: dsn, Now: clock.Now, BootstrapTimeout: time.Minute, HeartbeatTimeout: 24 * time.Hour, PingInterval: time.Hour}
	a, b := start(t, opts), start(t, opts)
	ca, cb := newClient(t, a), newClient(t, b)
	// The goroutines counted before are those of replicas fully started:
	// each starts its poll's ticker once its watch runs, after New
	// returned, and under load the count before missed it and the one
	// after did not. A replica listening has started it.
	waitListening(t, dsn, 2)
	const ids, rounds = 8, 3
	var all []string
	for i := range ids {
		all = append(all, fmt.Sprintf("churn%d", i), fmt.Sprintf("boot%d", i))
	}
	http.DefaultClient.CloseIdleConnections()
	beforeA, beforeB := server.Footprint(a.Server, all...), server.Footprint(b.Server, all...)
	delete(beforeA, "stateBytes")
	delete(beforeB, "stateBytes")
	started, _ := goroutines()
	for r := range rounds {
		sessions := cb.stream("/sessions/stream")
		approvals := cb.stream("/approvals/stream")
		var followers []*sseStream
		for i := range ids {
			id, n := fmt.Sprintf("churn%d", i), r*ids+i
			inst := fmt.Sprintf("inst-%d", n)
			ca.must(http.StatusCreated, nil, "POST", "/sessions/"+id, map[string]string{"prompt": "hello", "project": "churn"})
			cmds := cb.stream("/sessions/"+id+"/commands", protocol.HeaderInstance, inst)
			if e := cmds.next(); e.Event != protocol.SSECommand {
				t.Fatalf("%s: first command %+v", id, e)
			}
			ca.must(http.StatusAccepted, nil, "POST", "/sessions/"+id+"/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, inst)
			arts := cb.stream("/sessions/" + id + "/stream")
			m := newModel(t)
			m.readSnapshot(arts)
			cb.must(http.StatusAccepted, nil, "POST", "/sessions/"+id+"/commands", `{"type":"permission_response","requestId":"r1","optionId":"allow"}`,
				protocol.HeaderIdempotencyKey, "k-"+id)
			ca.must(http.StatusAccepted, nil, "POST", "/sessions/"+id+"/commands", `{"type":"permission_response","requestId":"r1","optionId":"allow"}`,
				protocol.HeaderIdempotencyKey, "k-"+id)
			if i%2 == 0 {
				arts.close()
			}
			switch i % 3 {
			case 0:
				cmds.close()
			case 1:
				ca.must(http.StatusOK, nil, "POST", "/sessions/"+id+"/token", nil)
			}
			del := ca
			if i%4 < 2 {
				del = cb
			}
			del.must(http.StatusNoContent, nil, "DELETE", "/sessions/"+id, nil)
			if i%3 != 0 {
				cmds.expectEnd()
				cmds.close()
			}
			if i%2 != 0 {
				arts.expectEnd()
				arts.close()
			}
			boot := fmt.Sprintf("boot%d", i)
			ca.must(http.StatusCreated, nil, "POST", "/sessions/"+boot, map[string]string{"prompt": "never taken"})
			bs := cb.stream("/sessions/" + boot + "/stream")
			newModel(t).readSnapshot(bs)
			followers = append(followers, bs)
		}
		clock.Add(2 * time.Minute)
		server.RunTimeouts(a.Server)
		server.RunTimeouts(b.Server)
		for _, f := range followers {
			f.expectEnd()
			f.close()
		}
		sessions.close()
		approvals.close()
	}
	// Creates, deletes, command streams and events of the same ids at
	// once, through both replicas.
	raceSameIDs(ids, 6, func(r, i int) (*client, *client) {
		if (r+i)%2 == 0 {
			return cb, ca
		}
		return ca, cb
	})
	for i := range ids {
		ca.do("DELETE", fmt.Sprintf("/sessions/churn%d", i), nil)
	}
	clock.Add(2 * time.Minute)
	server.RunTimeouts(a.Server)
	server.RunTimeouts(b.Server)
	http.DefaultClient.CloseIdleConnections()
	footprintBack(t, a.Server, beforeA, all)
	footprintBack(t, b.Server, beforeB, all)
	goroutinesBack(t, started)
}

// raceSameIDs creates, deletes, opens the command and artifact streams of
// and posts to sessions churn0..churn(n-1) all at once, rounds times, so
// that one group commit deletes a session, creates it again and opens its
// stream. pick gives round r's clients for the i-th id: one creates,
// follows and posts, other deletes and opens the command stream.
func raceSameIDs(n, rounds int, pick func(r, i int) (one, other *client)) {
	for r := range rounds {
		var wg sync.WaitGroup
		for i := range n {
			id := fmt.Sprintf("churn%d", i)
			inst := fmt.Sprintf("race-%d-%d", r, i)
			one, other := pick(r, i)
			wg.Go(func() { one.do("POST", "/sessions/"+id, map[string]string{"prompt": "again"}) })
			wg.Go(func() { other.do("DELETE", "/sessions/"+id, nil) })
			wg.Go(func() {
				st, status := other.tryStream("/sessions/"+id+"/commands", protocol.HeaderInstance, inst)
				if status == http.StatusOK {
					st.close()
				}
			})
			wg.Go(func() {
				st, status := one.tryStream("/sessions/" + id + "/stream")
				if status == http.StatusOK {
					st.close()
				}
			})
			wg.Go(func() {
				one.do("POST", "/sessions/"+id+"/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, inst)
			})
		}
		wg.Wait()
	}
}
