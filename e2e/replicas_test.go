package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/client"
	"github.com/rein-ai/rein/server/pgtest"
)

// The tests of several rein-server replicas on one PostgreSQL database
// (README, "More than one replica"). Each starts 3 replicas on a fresh database of the suite's
// throwaway cluster (skipped, saying why, where PostgreSQL cannot be set
// up; on CI they run) and talks to them over HTTP only: to one replica by
// its URL, or to all through round-robin Balancers (nothing sticky).

// renv is the suite's env over several replicas: e.srv is replica 0, e.c
// and e.sw go through lb, a balancer over every replica, so the env
// helpers (create, agentd, waitIdle) work unchanged.
type renv struct {
	*env
	reps *Replicas
	lb   *Balancer
}

// newReplicas starts n replicas with the suite's client token, behind a
// balancer, on a fresh PostgreSQL database. With dbLinks each replica
// reaches PostgreSQL through its own Proxy (Replicas.DBLink).
func newReplicas(t *testing.T, n int, dbLinks bool, serverArgs ...string) *renv {
	t.Helper()
	db := pgtest.NewDatabase(t) // skips (fails on CI) without PostgreSQL
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	dir := t.TempDir()
	reps, err := StartReplicas(ctx, t.Logf, ReplicasConfig{Bin: bins.Server, Dir: dir, DB: db, N: n,
		ClientToken: clientToken, DBLinks: dbLinks, Args: serverArgs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reps.Stop)
	lb, err := reps.NewBalancer()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(lb.URL(), clientToken)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, srv: reps.Servers[0], c: c, dir: dir, tokens: map[string]string{}}
	e.sw = WatchSessions(ctx, c)
	t.Cleanup(e.sw.Close)
	return &renv{env: e, reps: reps, lb: lb}
}

// client returns a client of replica i alone, at its current address.
func (r *renv) client(i int) *client.Client {
	r.t.Helper()
	c, err := client.New(r.reps.Servers[i].URL, clientToken)
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// balancedClient returns a client with a balancer of its own over the
// replicas listed (see Replicas.NewBalancer): its first connection goes
// to the first one, and the balancer says where its connections are.
func (r *renv) balancedClient(replicas ...int) (*client.Client, *Balancer) {
	r.t.Helper()
	b, err := r.reps.NewBalancer(replicas...)
	if err != nil {
		r.t.Fatal(err)
	}
	c, err := client.New(b.URL(), clientToken)
	if err != nil {
		r.t.Fatal(err)
	}
	return c, b
}

// follow follows id's artifact stream with c until the test ends.
func (r *renv) follow(c *client.Client, id string) *Follower {
	f := Follow(r.ctx, c, id)
	r.t.Cleanup(f.Close)
	return f
}

// promptOn sends a prompt through replica i.
func (r *renv) promptOn(i int, id, text string) {
	r.t.Helper()
	if _, err := r.client(i).Prompt(r.ctx, id, text); err != nil {
		r.t.Fatalf("prompt %q through replica %d: %v", text, i, err)
	}
}

// modelMatchesEverywhere checks f's model against GET /artifacts of every
// live replica (see assertModelMatchesServer) and returns the transcript.
func (r *renv) modelMatchesEverywhere(f *Follower, id string) []*protocol.Artifact {
	r.t.Helper()
	var arts []*protocol.Artifact
	for i, s := range r.reps.Servers {
		select {
		case <-s.Done():
			continue // killed and not restarted
		default:
		}
		one := *r.env
		one.c = r.client(i)
		arts = one.assertModelMatchesServer(f, id)
	}
	return arts
}

// holder returns the replica holding the one open connection of b (a
// client's stream), waiting while the client is between connections.
func (r *renv) holder(b *Balancer) int {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h := b.Holding()
		if len(h) == 1 {
			for addr := range h {
				if i := r.reps.Which(addr); i >= 0 {
					return i
				}
				r.t.Fatalf("the stream is held by %s, which is no replica", addr)
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("want exactly one replica holding the stream, connections: %v", h)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// textLen is the length of the first assistant text in arts.
func textLen(arts []*protocol.Artifact) int {
	for _, a := range arts {
		if a.Type == protocol.ArtifactAssistantText {
			return len(a.String("text"))
		}
	}
	return 0
}

// waitText waits until the follower's first assistant text is longer than n.
func waitText(t *testing.T, ctx context.Context, f *Follower, n int) {
	t.Helper()
	if err := f.WaitFor(ctx, fmt.Sprintf("more than %d characters of streamed text", n), func(arts []*protocol.Artifact) bool {
		return textLen(arts) > n
	}); err != nil {
		t.Fatal(err)
	}
}

// A turn spread over three replicas: the client follows on replica 0,
// agentd is connected to replica 1, commands are POSTed to replica 2. The
// commands reach the sandbox through the database, the client sees every
// change once and in order, and every replica serves the same model.
func TestReplicasCrossReplicaTurn(t *testing.T) {
	r := newReplicas(t, 3, false)
	id := "cross"
	r.create(id, "")
	f := r.follow(r.client(0), id)
	r.agentd(r.reps.Servers[1].URL, id, nil, nil)
	r.waitIdle(id)
	r.promptOn(2, id, "hello world")
	waitTurns(t, r.ctx, f, 1)
	r.promptOn(2, id, "run: echo hello")
	waitTurns(t, r.ctx, f, 2)
	r.promptOn(2, id, "ask: may I read the repo?")
	reqID := waitPermission(t, r.ctx, f)
	if _, err := r.client(2).AnswerPermission(r.ctx, id, reqID, "allow"); err != nil {
		t.Fatal(err)
	}
	waitTurns(t, r.ctx, f, 3)
	arts := r.modelMatchesEverywhere(f, id)
	wantTranscript(t, "cross-replica", arts, []string{
		"turn completed end_turn",
		"user: hello world",
		"text done: You said: hello world",
		"turn completed end_turn",
		"user: run: echo hello",
		"text done: Running `echo hello`",
		`tool shell completed exit=0 output="hello\n"`,
		"text done: Exit code 0.",
		"turn completed end_turn",
		"user: ask: may I read the repo?",
		`permission approved "may I read the repo?" option=allow`,
		"text done: Permission granted.",
	})
	r.waitIdle(id)
	// A stream ticket issued by one replica opens the stream on another:
	// they share the ticket key.
	var ticket protocol.StreamTicket
	if err := r.client(0).Do(r.ctx, http.MethodPost, "/sessions/"+id+"/stream-ticket", nil, &ticket); err != nil {
		t.Fatal(err)
	}
	tf := r.follow(ticketClient(t, r.reps.Servers[2].URL, ticket.Ticket), id)
	wantTranscript(t, "followed with a ticket of another replica", r.modelMatchesEverywhere(tf, id), render(arts))
	// The session record is the same on every replica.
	for i := range r.reps.Servers {
		s, err := r.client(i).Session(r.ctx, id)
		if err != nil || s.Summary == nil || *s.Summary != "hello world" || s.PendingCommands != 0 {
			t.Fatalf("replica %d: session %+v, %v: want summary %q and no pending command", i, s, err, "hello world")
		}
	}
}

// kill -9 of the replica holding the sandbox's command stream in the
// middle of a long streamed turn, then of the one holding the client's
// stream: agentd and the client reconnect through their balancers to
// other replicas, and the text is exactly what the agent produced.
func TestReplicasKilledMidTurn(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	r := newReplicas(t, 3, false)
	id := "kill"
	// 3,000 words at 10 ms each: the turn outlasts both kills and the
	// reconnects with a wide margin (checked below, not assumed).
	const n = 3000
	r.create(id, "")
	fc, fb := r.balancedClient(0, 1, 2)
	f := r.follow(fc, id)
	// agentd's balancer has only replica 1 until agentd is connected, so
	// replica 1 holds its command stream; then the others join it.
	ab, err := r.reps.NewBalancer(1)
	if err != nil {
		t.Fatal(err)
	}
	r.agentd(ab.URL(), id, []string{"DEMO_AGENT_DELAY=10ms"}, nil)
	r.waitIdle(id)
	ab.Add(r.reps.Addr(2))
	ab.Add(r.reps.Addr(0))
	r.promptOn(2, id, fmt.Sprintf("slow: %d", n))
	waitText(t, r.ctx, f, 200)

	r.reps.Kill(1)
	at := textLen(f.Artifacts())
	if err := r.reps.Restart(r.ctx, 1); err != nil {
		t.Fatal(err)
	}
	// agentd reconnected to another replica and its events flow again.
	waitText(t, r.ctx, f, at+500)

	held := r.holder(fb)
	if turnEnded(f.Artifacts()) {
		t.Fatal("the turn ended before the second kill: make it longer")
	}
	r.reps.Kill(held)
	waitTurns(t, r.ctx, f, 1)
	if err := r.reps.Restart(r.ctx, held); err != nil {
		t.Fatal(err)
	}
	arts := r.modelMatchesEverywhere(f, id)
	assertSlowText(t, arts, n)
	if f.Connects() < 2 {
		t.Fatalf("the client connected %d times; killing its replica should have forced a reconnect", f.Connects())
	}
	// A client that was never connected sees the same, on any replica.
	fresh := r.follow(r.client(held), id)
	r.modelMatchesEverywhere(fresh, id)
	// Queued: delivered whether or not agentd has reopened its command
	// stream since the second kill.
	if _, err := r.client(1).QueuePrompt(r.ctx, id, "still there?"); err != nil {
		t.Fatal(err)
	}
	waitTurns(t, r.ctx, f, 2)
	wantTranscript(t, "after the kills", r.modelMatchesEverywhere(f, id)[3:], []string{
		"turn completed end_turn",
		"user: still there?",
		"text done: You said: still there?",
	})
}

// ticketClient is a client of base without a token whose requests carry
// ?ticket=, as a browser's EventSource does.
func ticketClient(t *testing.T, base, ticket string) *client.Client {
	t.Helper()
	c, err := client.New(base, "")
	if err != nil {
		t.Fatal(err)
	}
	c.HTTP = &http.Client{Transport: ticketTransport(ticket)}
	return c
}

// ticketTransport adds ?ticket= to every request.
type ticketTransport string

func (tt ticketTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	q := req.URL.Query()
	q.Set("ticket", string(tt))
	req.URL.RawQuery = q.Encode()
	return http.DefaultTransport.RoundTrip(req)
}

// turnEnded reports whether the first turn has ended.
func turnEnded(arts []*protocol.Artifact) bool {
	for _, a := range arts {
		if a.Type == protocol.ArtifactTurn {
			return a.String("status") != "running"
		}
	}
	return false
}

// heartbeat and staleEvent are what postAs posts: a heartbeat stores
// nothing, an event would land in the transcript if it were accepted.
const (
	heartbeat  = `{"type":"heartbeat"}`
	staleEvent = `{"type":"text_delta","id":"stale","delta":"from a superseded agentd","agentSeq":1000000}`
)

// postAs posts body (one event) for session id as sandbox instance to
// base and returns the error code of the answer ("" for a 2xx).
func postAs(ctx context.Context, base, id, token, instance, body string) (protocol.Code, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/sessions/"+id+"/events", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set(protocol.HeaderInstance, instance)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return "", nil
	}
	return protocol.CodeOf(protocol.ReadError(resp)), nil
}

// Two agentds (different instances, each with its own state dir) for one
// session on different replicas: the newer takes over, the older is
// refused as superseded on every replica and exits saying so, and the
// session carries on with exactly one sandbox.
func TestReplicasTwoAgentds(t *testing.T) {
	r := newReplicas(t, 3, false)
	id := "two"
	r.create(id, "")
	f := r.follow(r.client(2), id)
	oldDir := filepath.Join(r.dir, "state-old")
	old := r.agentd(r.reps.Servers[0].URL, id, nil, []string{"--state-dir", oldDir})
	r.waitIdle(id)
	r.promptOn(2, id, "first")
	waitTurns(t, r.ctx, f, 1)
	b, err := os.ReadFile(filepath.Join(oldDir, id, "instance"))
	if err != nil {
		t.Fatalf("the first agentd's instance: %v", err)
	}
	oldInstance := strings.TrimSpace(string(b))
	token, err := os.ReadFile(r.tokens[id])
	if err != nil {
		t.Fatal(err)
	}

	old.Signal(syscall.SIGSTOP) // frozen, as a process stuck on a dead host
	newer := r.agentd(r.reps.Servers[1].URL, id, nil, []string{"--state-dir", filepath.Join(r.dir, "state-new")})
	// The new one took over once a replica other than its own refuses
	// the old instance (a bounded wait for a condition).
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, err := postAs(r.ctx, r.reps.Servers[2].URL, id, string(token), oldInstance, heartbeat)
		if err != nil {
			t.Fatal(err)
		}
		if code == protocol.CodeSuperseded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the old instance's events are still answered %q on replica 2, want superseded", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Its events are refused on every replica, the one that held its
	// stream included: the check runs under the session's row lock.
	for i := range r.reps.Servers {
		if code, err := postAs(r.ctx, r.reps.Servers[i].URL, id, string(token), oldInstance, staleEvent); err != nil || code != protocol.CodeSuperseded {
			t.Fatalf("replica %d: an event of the old instance answered %q, %v; want superseded", i, code, err)
		}
	}
	old.Signal(syscall.SIGCONT)
	if err := old.Wait(60 * time.Second); err != nil {
		t.Fatalf("the superseded agentd did not exit: %v", err)
	}
	if code := old.ExitCode(); code == 0 {
		t.Fatal("superseded agentd exited 0; want non-zero")
	}
	if out := strings.ToLower(strings.Join(old.Output(), "\n")); !strings.Contains(out, "superseded") {
		t.Fatalf("superseded agentd's output does not say why:\n%s", out)
	}
	r.waitIdle(id)
	r.promptOn(2, id, "second")
	waitTurns(t, r.ctx, f, 2)
	arts := r.modelMatchesEverywhere(f, id)
	wantTranscript(t, "two agentds", arts, []string{
		"turn completed end_turn",
		"user: first",
		"text done: You said: first",
		"turn completed end_turn",
		"user: second",
		"text done: You said: second",
	})
	select {
	case <-newer.Done():
		t.Fatal("the new agentd exited")
	default:
	}
}

// Sessions that never get a sandbox, created through different replicas
// that all sweep deadlines: each is removed once, and every replica's
// session stream says so once.
func TestReplicasBootstrapTimeoutOnce(t *testing.T) {
	r := newReplicas(t, 3, false, "--bootstrap-timeout", "1s")
	watchers := make([]*SessionWatcher, len(r.reps.Servers))
	for i := range watchers {
		watchers[i] = WatchSessions(r.ctx, r.client(i))
		t.Cleanup(watchers[i].Close)
	}
	// Each watcher has its snapshot before the sessions exist.
	for i, w := range watchers {
		if err := w.WaitConnected(r.ctx); err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	const n = 6
	var ids []string
	for k := range n {
		id := fmt.Sprintf("lonely%d", k)
		ids = append(ids, id)
		if _, err := r.client(k%3).CreateSession(r.ctx, id, "p1"); err != nil {
			t.Fatal(err)
		}
	}
	waitRemoved := func(ids ...string) {
		t.Helper()
		for i, w := range watchers {
			for _, id := range ids {
				if err := w.WaitRemoved(r.ctx, id); err != nil {
					t.Fatalf("replica %d: %v", i, err)
				}
			}
		}
	}
	waitRemoved(ids...)
	// A session created now is removed only after at least one more
	// sweep round of the replicas: a second firing of the first ones
	// would have shown by the time this one's removal reached every
	// stream.
	if _, err := r.client(1).CreateSession(r.ctx, "marker", "p1"); err != nil {
		t.Fatal(err)
	}
	waitRemoved("marker")
	for i, w := range watchers {
		for _, id := range append(ids, "marker") {
			if got := w.Removals(id); got != 1 {
				t.Errorf("replica %d's session stream: session_removed %s %d times, want once", i, id, got)
			}
		}
	}
	for i := range r.reps.Servers {
		for _, id := range ids {
			if _, err := r.client(i).Session(r.ctx, id); protocol.CodeOf(err) != protocol.CodeNotFound {
				t.Errorf("replica %d: GET removed session %s: %v, want not_found", i, id, err)
			}
		}
	}
}

// All replicas killed and started again (on new ports, behind the same
// balancers): the sessions, their transcripts and the clients' resume are
// intact, and the sandboxes carry on.
func TestReplicasAllRestarted(t *testing.T) {
	r := newReplicas(t, 3, false)
	ids := []string{"r1", "r2"}
	followers := map[string]*Follower{}
	for _, id := range ids {
		r.create(id, "")
		fc, _ := r.balancedClient()
		followers[id] = r.follow(fc, id)
		r.agentd(r.lb.URL(), id, nil, nil)
	}
	for _, id := range ids {
		r.waitIdle(id)
		r.promptOn(0, id, "before "+id)
		waitTurns(t, r.ctx, followers[id], 1)
	}
	for i := range r.reps.Servers {
		r.reps.Kill(i)
	}
	for i := range r.reps.Servers {
		if err := r.reps.Restart(r.ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	// agentd reconnects by itself; a queued prompt is delivered to it
	// whether or not its command stream is open again yet.
	for k, id := range ids {
		if _, err := r.client(k+1).QueuePrompt(r.ctx, id, "after "+id); err != nil {
			t.Fatalf("queue a prompt for %s through replica %d: %v", id, k+1, err)
		}
	}
	for _, id := range ids {
		f := followers[id]
		waitTurns(t, r.ctx, f, 2)
		arts := r.modelMatchesEverywhere(f, id)
		wantTranscript(t, id, arts, []string{
			"turn completed end_turn",
			"user: before " + id,
			"text done: You said: before " + id,
			"turn completed end_turn",
			"user: after " + id,
			"text done: You said: after " + id,
		})
		if f.Connects() < 2 {
			t.Fatalf("%s: the client connected %d times; the restart should have forced a reconnect", id, f.Connects())
		}
	}
	for i := range r.reps.Servers {
		list, err := r.client(i).Sessions(r.ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range list {
			got = append(got, s.ID)
			if s.Summary == nil || *s.Summary != "before "+s.ID {
				t.Errorf("replica %d: session %s summary %v, want %q", i, s.ID, s.Summary, "before "+s.ID)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, ids) {
			t.Fatalf("replica %d lists sessions %v, want %v", i, got, ids)
		}
	}
}

// A replica cut off from PostgreSQL answers /healthz 503 while the others
// carry on; when the link is back it answers 200 by itself and serves
// what was written meanwhile, to a new client and to its own subscriber.
func TestReplicaDatabaseCut(t *testing.T) {
	r := newReplicas(t, 3, true)
	const cut = 2
	id := "cut"
	r.create(id, "")
	f := r.follow(r.client(0), id)
	onCut := r.follow(r.client(cut), id)
	r.agentd(r.reps.Servers[1].URL, id, nil, nil)
	r.waitIdle(id)
	r.promptOn(cut, id, "before")
	waitTurns(t, r.ctx, f, 1)
	waitTurns(t, r.ctx, onCut, 1)

	r.reps.DBLink(cut).Cut()
	if err := r.reps.WaitHealth(r.ctx, cut, http.StatusServiceUnavailable); err != nil {
		t.Fatal(err)
	}
	for i := range r.reps.Servers {
		if i == cut {
			continue
		}
		if code, err := r.reps.Health(r.ctx, i); err != nil || code != http.StatusOK {
			t.Fatalf("replica %d /healthz: %d, %v while replica %d is cut off; want 200", i, code, err, cut)
		}
	}
	r.promptOn(0, id, "during")
	waitTurns(t, r.ctx, f, 2)

	r.reps.DBLink(cut).Restore()
	if err := r.reps.WaitHealth(r.ctx, cut, http.StatusOK); err != nil {
		t.Fatal(err)
	}
	// Its subscriber gets what was written during the cut, and a new
	// client of it sees the same model.
	waitTurns(t, r.ctx, onCut, 2)
	one := *r.env
	one.c = r.client(cut)
	one.assertModelMatchesServer(onCut, id)
	r.promptOn(cut, id, "after")
	waitTurns(t, r.ctx, f, 3)
	arts := r.modelMatchesEverywhere(f, id)
	wantTranscript(t, "database cut", arts, []string{
		"turn completed end_turn",
		"user: before",
		"text done: You said: before",
		"turn completed end_turn",
		"user: during",
		"text done: You said: during",
		"turn completed end_turn",
		"user: after",
		"text done: You said: after",
	})
	fresh := r.follow(r.client(cut), id)
	r.modelMatchesEverywhere(fresh, id)
	if v := onCut.Violations(); len(v) > 0 {
		t.Fatalf("the cut replica's stream broke its promises: %v", v)
	}
}

// A prompt's answers are lost twice behind a balancer over three replicas:
// each resend, with the same Idempotency-Key, lands on another replica,
// which finds the command the first stored; the agent runs it once.
func TestReplicasLostAnswerRunsOnce(t *testing.T) {
	r := newReplicas(t, 3, false)
	id := "lost-on-replicas"
	r.create(id, "")
	f := r.follow(r.client(0), id)
	r.agentd(r.reps.Servers[1].URL, id, nil, nil)
	r.waitIdle(id)
	d, c := dropAnswers(t, r.lb.URL())
	d.DropNext(2)
	if n, err := c.Prompt(r.ctx, id, "once, on three replicas"); err != nil || n != 1 {
		t.Fatalf("prompt whose answers were lost: id %d, %v; want command 1", n, err)
	}
	wantOneCommandSent(t, d.Seen(), 2)
	r.promptOn(2, id, "next")
	r.wantPromptsRan(f, id, "once, on three replicas", "next")
	r.modelMatchesEverywhere(f, id)
}

// A replica killed while a tool prints megabytes through it, past the
// size at which an output is kept as appends and, at its close, a head
// (server/README.md, Memory). agentd goes on through another replica,
// which folds the session from the log and so does not know how the
// store holds the running output: its next change writes the body
// without the text and the text as appends (a rebase), then more appends
// and the head, beside the writes the killed replica left. A follower on
// the other replicas follows across the kill, and a new one on the
// restarted replica sees the same: exactly what the command printed, on
// every replica.
func TestReplicaKilledDuringBigOutput(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	r := newReplicas(t, 3, false)
	id := "bigrep"
	r.create(id, "")
	fc, _ := r.balancedClient(0, 2)
	f := r.follow(fc, id)
	// agentd's balancer has only replica 1 until agentd is connected, so
	// its command stream and its events go to replica 1; then the others
	// join it for after the kill.
	ab, err := r.reps.NewBalancer(1)
	if err != nil {
		t.Fatal(err)
	}
	r.agentd(ab.URL(), id, nil, nil)
	r.waitIdle(id)
	ab.Add(r.reps.Addr(2))
	ab.Add(r.reps.Addr(0))
	const lines, width = 60, 99_999 // 6 MB over 3 s at least
	r.promptOn(0, id, bigOutputPrompt(lines, width))
	waitPrinting(t, r.ctx, f, 1_500_000)

	r.reps.Kill(1)
	if err := r.reps.Restart(r.ctx, 1); err != nil {
		t.Fatal(err)
	}
	waitTurns(t, r.ctx, f, 1)
	assertPrinted(t, r.modelMatchesEverywhere(f, id), lines, width)
	fresh := r.follow(r.client(1), id)
	assertPrinted(t, r.modelMatchesEverywhere(fresh, id), lines, width)
}
