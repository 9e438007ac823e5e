package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/pgtest"
)

// skewedReplicas starts two replicas on one fresh PostgreSQL database, b's
// clock skew ahead of a's (negative: behind); advancing a's fake clock
// advances both.
func skewedReplicas(t *testing.T, skew time.Duration) (a, b *app.App, ca, cb *client, clk *fakeClock) {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	clk = newFakeClock()
	a = start(t, app.Options{DBPath: dsn, Now: clk.Now})
	b = start(t, app.Options{DBPath: dsn, Now: func() time.Time { return clk.Now().Add(skew) }})
	return a, b, newClient(t, a), newClient(t, b), clk
}

// Heartbeats a sandbox sends through one replica keep its session alive on
// a replica whose clock is ahead: the row's lastHeartbeat is the other
// replica's clock, so timed from it, a replica 50 s ahead (more than the
// heartbeat timeout less agentd's 10 s interval) took every heartbeat for
// one already older than the timeout, marked a connected session
// disconnected, and refused its prompts with no_sandbox. A replica times
// a heartbeat from when it hears of it.
func TestReplicasHeartbeatsThroughASkewedReplica(t *testing.T) {
	t.Parallel()
	_, b, ca, cb, clk := skewedReplicas(t, 50*time.Second)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/s", nil)
	ca.stream("/sessions/s/commands", protocol.HeaderInstance, "i1")
	server.ReadAgain(b.Server, "s")
	for i := range 6 {
		clk.Add(10 * time.Second)
		ca.must(http.StatusAccepted, nil, "POST", "/sessions/s/events", `{"type":"heartbeat"}`, protocol.HeaderInstance, "i1")
		server.ReadAgain(b.Server, "s") // b hears of it
		server.RunTimeouts(b.Server)
		if rec := cb.session("s"); rec.Status != protocol.StatusLive {
			t.Fatalf("%d s after the stream opened, a heartbeat every 10 s through a: b says %s; want live", 10*(i+1), rec.Status)
		}
	}
	// Silent for the timeout: disconnected, as the sandbox is gone.
	clk.Add(46 * time.Second)
	server.RunTimeouts(b.Server)
	if rec := cb.session("s"); rec.Status != protocol.StatusDisconnected {
		t.Fatalf("silent for the heartbeat timeout: %s; want disconnected", rec.Status)
	}
}

// A replica that starts while a sandbox is connected to another, its
// clock ahead of that one's by more than the heartbeat timeout, leaves
// the session live: timed from the row's lastHeartbeat (the other
// replica's clock), its start took the session for one silent since and
// marked it disconnected at once. It times live sessions from its start.
func TestReplicasStartWithAClockAhead(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	clk := newFakeClock()
	a := start(t, app.Options{DBPath: dsn, Now: clk.Now})
	ca := newClient(t, a)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/s", nil)
	ca.stream("/sessions/s/commands", protocol.HeaderInstance, "i1")
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/s/events", `{"type":"heartbeat"}`, protocol.HeaderInstance, "i1")

	b := start(t, app.Options{DBPath: dsn, Now: func() time.Time { return clk.Now().Add(50 * time.Second) }})
	cb := newClient(t, b)
	if rec := cb.session("s"); rec.Status != protocol.StatusLive {
		t.Fatalf("after a replica 50 s ahead started: %s; want live", rec.Status)
	}
	// Silent for the timeout by b's clock since b started: disconnected.
	clk.Add(46 * time.Second)
	server.RunTimeouts(b.Server)
	if rec := cb.session("s"); rec.Status != protocol.StatusDisconnected {
		t.Fatalf("silent for the heartbeat timeout: %s; want disconnected", rec.Status)
	}
}

// An answer stored through a replica whose clock is behind the one that
// stored its request, within the skew of it, carries a time before the
// request's. The other replica, reading it back, took it for an answer
// to an earlier request with the id and dropped it: its inbox showed the
// request unanswered and it accepted (202) a second, different answer,
// which the agent never takes.
func TestReplicasAnswerThroughAReplicaBehind(t *testing.T) {
	t.Parallel()
	a, _, ca, cb, _ := skewedReplicas(t, -5*time.Second)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/p", nil)
	ca.stream("/sessions/p/commands", protocol.HeaderInstance, "i1")
	ca.must(http.StatusAccepted, nil, "POST", "/sessions/p/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "i1")
	cb.must(http.StatusAccepted, nil, "POST", "/sessions/p/commands", answer("r1", "allow"))
	server.ReadAgain(a.Server, "p") // a hears of it
	var list []protocol.Approval
	ca.must(http.StatusOK, &list, "GET", "/approvals", nil)
	if len(list) != 1 || list[0].Answer == nil || list[0].Answer.CommandID != 1 {
		t.Fatalf("a's GET /approvals = %+v; want r1 answered by command 1", list)
	}
	wantRefused(t, ca, "p", answer("r1", "deny"), http.StatusConflict, protocol.CodeConflict, "command 1")
}

// A session created through one replica is not removed by another whose
// clock is ahead by the bootstrap timeout before its sandbox had that
// long to connect: timed from its createdAt (the creating replica's
// clock), a replica 4 minutes ahead removed it, initial prompt and all,
// the moment it heard of it. A replica times the bootstrap from when it
// hears of the session.
func TestReplicasBootstrapOnAReplicaAhead(t *testing.T) {
	t.Parallel()
	_, b, ca, _, clk := skewedReplicas(t, 4*time.Minute)
	ca.must(http.StatusCreated, nil, "POST", "/sessions/s", map[string]string{"prompt": "hello"})
	server.ReadAgain(b.Server, "s") // b hears of it
	server.RunTimeouts(b.Server)
	if rec := ca.session("s"); rec.Status != protocol.StatusBootstrapping {
		t.Fatalf("just created: %s; want bootstrapping", rec.Status)
	}
	// No sandbox for the bootstrap timeout, by b's clock since it heard
	// of the session: removed.
	clk.Add(server.DefaultBootstrapTimeout + time.Second)
	server.RunTimeouts(b.Server)
	ca.wantError(http.StatusNotFound, protocol.CodeNotFound, "GET", "/sessions/s", nil)
}
