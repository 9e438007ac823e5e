package server_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/pgtest"
)

// sent is the answer to a command POST.
type sent struct {
	status   int
	id       int64
	replayed bool
	body     string
}

// sendKeyed posts cmd to session id's commands with Idempotency-Key key
// ("" sends none) and returns what came back.
func (c *client) sendKeyed(id, key, cmd string) sent {
	c.t.Helper()
	var hdr []string
	if key != "" {
		hdr = []string{protocol.HeaderIdempotencyKey, key}
	}
	status, body, h := c.exchange("POST", "/sessions/"+id+"/commands", cmd, hdr...)
	out := sent{status: status, body: string(body), replayed: h.Get(protocol.HeaderIdempotentReplayed) == "true"}
	if status == http.StatusAccepted {
		var acc protocol.CommandAccepted
		if err := json.Unmarshal(body, &acc); err != nil {
			c.t.Fatalf("202 body %s: %v", body, err)
		}
		out.id = acc.ID
	}
	return out
}

// wantSent checks a command POST was accepted as command id, replayed or
// stored now.
func wantSent(t *testing.T, what string, got sent, id int64, replayed bool) {
	t.Helper()
	if got.status != http.StatusAccepted || got.id != id || got.replayed != replayed {
		t.Fatalf("%s: %d %s (replayed %v); want 202 id %d, replayed %v", what, got.status, got.body, got.replayed, id, replayed)
	}
}

// freshDB is a database for a test that restarts its server on it: a
// SQLite file, or a PostgreSQL database under REIN_TEST_DB=postgres.
func freshDB(t *testing.T) string {
	if os.Getenv("REIN_TEST_DB") == "postgres" {
		return pgtest.NewDatabase(t)
	}
	return filepath.Join(t.TempDir(), "rein.db")
}

// A command sent again with its Idempotency-Key is stored and delivered
// once, and its retry is answered with the first's id; the key with a
// different command is refused and stores nothing; the key outlives the
// sandbox that was connected and the server process; a session deleted
// and created again starts without keys.
func TestIdempotentCommands(t *testing.T) {
	t.Parallel()
	db := freshDB(t)
	s := start(t, app.Options{DBPath: db})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	cmds := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")

	fix := `{"type":"prompt","text":"fix the test"}`
	wantSent(t, "first send", c.sendKeyed("a", "k1", fix), 1, false)
	wantSent(t, "the retry", c.sendKeyed("a", "k1", fix), 1, true)
	// queue is between the client and the server: the stored command is
	// the same with it.
	wantSent(t, "the retry with queue", c.sendKeyed("a", "k1", `{"type":"prompt","text":"fix the test","queue":true}`), 1, true)
	wantCommand(t, cmds, 1, "fix the test")

	for _, other := range []string{`{"type":"prompt","text":"fix the other test"}`, `{"type":"abort"}`} {
		got := c.sendKeyed("a", "k1", other)
		var e protocol.ErrorBody
		_ = json.Unmarshal([]byte(got.body), &e)
		if got.status != http.StatusConflict || e.Code != protocol.CodeConflict || !strings.Contains(e.Message, protocol.HeaderIdempotencyKey) || !strings.Contains(e.Message, "command 1") {
			t.Fatalf("k1 with %s: %d %s; want 409 conflict naming the header and command 1", other, got.status, got.body)
		}
	}
	for _, bad := range []string{"", "a b", strings.Repeat("k", protocol.MaxIdempotencyKeyLen+1)} {
		e := c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "POST", "/sessions/a/commands", fix, protocol.HeaderIdempotencyKey, bad)
		if !strings.Contains(e.Message, protocol.HeaderIdempotencyKey) {
			t.Errorf("key %q refused with %q: want the header named", bad, e.Message)
		}
	}
	// None of the refusals stored anything: the next command is 2, and
	// it is the next the sandbox gets.
	wantNext(t, c, cmds, 2)
	if rec := c.session("a"); rec.PendingCommands != 2 {
		t.Fatalf("pendingCommands %d; want 2 (command 1 once, and 2)", rec.PendingCommands)
	}

	// Every one of many sends of one key at once gets the same id, and
	// one stored it.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		got  []sent
		many = `{"type":"prompt","text":"many"}`
	)
	for range 16 {
		wg.Go(func() {
			r := c.sendKeyed("a", "k-many", many)
			mu.Lock()
			got = append(got, r)
			mu.Unlock()
		})
	}
	wg.Wait()
	stored := 0
	for _, r := range got {
		if r.status != http.StatusAccepted || r.id != 3 {
			t.Fatalf("concurrent sends of k-many: %d %s id %d; want 202 id 3", r.status, r.body, r.id)
		}
		if !r.replayed {
			stored++
		}
	}
	if stored != 1 {
		t.Fatalf("concurrent sends of k-many: %d answered as stored; want 1", stored)
	}
	wantCommand(t, cmds, 3, "many")
	wantNext(t, c, cmds, 4)

	// With no sandbox, a retry of a command accepted earlier is still
	// 202; a new key is no_sandbox as ever.
	c.must(http.StatusCreated, nil, "POST", "/sessions/b", nil)
	wantSent(t, "queued prompt", c.sendKeyed("b", "k1", `{"type":"prompt","text":"wait","queue":true}`), 1, false)
	wantSent(t, "its retry without queue, no sandbox", c.sendKeyed("b", "k1", `{"type":"prompt","text":"wait"}`), 1, true)
	if got := c.sendKeyed("b", "k2", `{"type":"prompt","text":"wait"}`); got.status != http.StatusConflict || !strings.Contains(got.body, string(protocol.CodeNoSandbox)) {
		t.Fatalf("new key, no sandbox: %d %s; want 409 no_sandbox", got.status, got.body)
	}

	// The keys are stored: a restarted server knows them.
	cmds.close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = start(t, app.Options{DBPath: db})
	c = newClient(t, s)
	wantSent(t, "the retry after a restart", c.sendKeyed("a", "k1", `{"type":"prompt","text":"fix the test","queue":true}`), 1, true)
	wantSent(t, "b's retry after a restart", c.sendKeyed("b", "k1", `{"type":"prompt","text":"wait","queue":true}`), 1, true)

	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/a", nil)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	wantSent(t, "k1 on a new session a", c.sendKeyed("a", "k1", `{"type":"prompt","text":"anew","queue":true}`), 1, false)
	cmds = c.stream("/sessions/a/commands", protocol.HeaderInstance, "i2")
	wantCommand(t, cmds, 1, "anew")
}

// Within one group commit: a key's second send finds the first before it
// is committed, and a session deleted and created again in the group does
// not find its namesake's keys, still in the database until the commit.
func TestIdempotentCommandsInOneGroup(t *testing.T) {
	t.Parallel()
	g := newGatedStore(t)
	s := start(t, app.Options{Store: g})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusCreated, nil, "POST", "/sessions/b", nil)
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	wantSent(t, "k1 on the first a", c.sendKeyed("a", "k1", `{"type":"prompt","text":"old"}`), 1, false)

	// A commit that waits, and behind it, in order, one group's requests.
	g.closed.Store(true)
	released := false
	defer func() {
		if !released {
			close(g.open) // a failed test must not leave the writer stuck
		}
	}()
	type answer struct {
		what string
		sent
	}
	answers := make(chan answer, 8)
	send := func(what string, f func() sent) {
		n := server.Queued(s.Server)
		go func() { answers <- answer{what, f()} }()
		eventually(t, what+" queued", func() bool { return server.Queued(s.Server) == n+1 })
	}
	go func() { answers <- answer{"hold", c.sendKeyed("a", "", `{"type":"prompt","text":"hold"}`)} }()
	select {
	case <-g.entered:
	case <-time.After(streamDeadline):
		t.Fatal("the first command never reached a commit")
	}
	twice := `{"type":"prompt","text":"twice","queue":true}`
	send("k2", func() sent { return c.sendKeyed("b", "k2", twice) })
	send("k2 again", func() sent { return c.sendKeyed("b", "k2", twice) })
	send("delete a", func() sent { st, b := c.do("DELETE", "/sessions/a", nil); return sent{status: st, body: string(b)} })
	send("create a", func() sent { st, b := c.do("POST", "/sessions/a", nil); return sent{status: st, body: string(b)} })
	send("k1 on the new a", func() sent { return c.sendKeyed("a", "k1", `{"type":"prompt","text":"new","queue":true}`) })
	g.closed.Store(false)
	close(g.open)
	released = true

	got := map[string]sent{}
	for len(got) < 6 {
		select {
		case r := <-answers:
			got[r.what] = r.sent
		case <-time.After(streamDeadline):
			t.Fatalf("only %d of 6 answers: %+v", len(got), got)
		}
	}
	wantSent(t, "hold", got["hold"], 2, false)
	wantSent(t, "k2", got["k2"], 1, false)
	wantSent(t, "k2 again, in the same group", got["k2 again"], 1, true)
	if got["delete a"].status != http.StatusNoContent || got["create a"].status != http.StatusCreated {
		t.Fatalf("delete and create a: %+v, %+v; want 204, 201", got["delete a"], got["create a"])
	}
	wantSent(t, "k1 on the new a", got["k1 on the new a"], 1, false)
	if rec := c.session("a"); rec.PendingCommands != 1 {
		t.Fatalf("the new a: pendingCommands %d; want its own command 1 (k1 stored anew, not taken for the deleted a's)", rec.PendingCommands)
	}
	if rec := c.session("b"); rec.PendingCommands != 1 {
		t.Fatalf("b: pendingCommands %d; want 1 (k2 stored once)", rec.PendingCommands)
	}
	cmds := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i2")
	wantCommand(t, cmds, 1, "new")
}

// An Idempotency-Key header given twice is refused naming it, and nothing
// is stored: the server took the first and ignored the second, so a
// client (or a proxy adding its own) that meant the second stored a
// command under a key it never sends again, and its retry with that key
// stored the command a second time.
func TestIdempotencyKeyGivenTwice(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	req, err := http.NewRequest("POST", s.URL()+"/sessions/a/commands", strings.NewReader(`{"type":"prompt","text":"x","queue":true}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Add(protocol.HeaderIdempotencyKey, "k1")
	req.Header.Add(protocol.HeaderIdempotencyKey, "k2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e protocol.ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest || e.Code != protocol.CodeInvalid || !strings.Contains(e.Message, protocol.HeaderIdempotencyKey) {
		t.Fatalf("two keys: %d %+v; want 400 invalid naming %s", resp.StatusCode, e, protocol.HeaderIdempotencyKey)
	}
	var rec protocol.Session
	c.must(http.StatusOK, &rec, "GET", "/sessions/a", nil)
	if rec.PendingCommands != 0 {
		t.Fatalf("after the refusal: %d commands pending; want none stored", rec.PendingCommands)
	}
	// Either key alone is then a new command.
	wantSent(t, "k2 alone", c.sendKeyed("a", "k2", `{"type":"prompt","text":"x","queue":true}`), 1, false)
}
