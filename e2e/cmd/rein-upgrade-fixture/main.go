// Command rein-upgrade-fixture makes a database with an older build of
// rein-server, for e2e's TestUpgrade: it starts the given rein-server
// binary on a fresh SQLite file (or a fresh PostgreSQL database of a
// throwaway cluster, with --postgres), drives it over HTTP as agentd and
// clients would (sessions, two sandbox instances' events, commands with and
// without Idempotency-Key, a pending and an answered permission, a rotated
// token, a deleted session and one created again under a deleted id, and
// with --kill single events posted while the server is killed), stops it
// (SIGTERM, or kill -9 with --kill) and writes a .tar.gz holding the
// database (rein.db and the -wal the stop left, or PostgreSQL's dump.sql)
// and manifest.json, what the test checks the current build serves.
//
// It speaks raw HTTP, not server/client, so that it drives builds older
// than the client it is compiled with. e2e/testdata/upgrade/README.md says
// how the fixtures were made. It is not a test: nothing runs it but a
// person making a fixture.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rein-ai/rein/e2e"
	"github.com/rein-ai/rein/server/pgtest"
	_ "modernc.org/sqlite"
)

func main() {
	bin := flag.String("server", "", "the older build's rein-server binary")
	out := flag.String("out", "", "the fixture to write (.tar.gz)")
	commit := flag.String("commit", "", "the commit the binary was built from (recorded in the manifest)")
	kill := flag.Bool("kill", false, "post single events to session staged and kill -9 the server while they flow, instead of stopping it with SIGTERM")
	postgres := flag.Bool("postgres", false, "run the server on a database of a throwaway PostgreSQL cluster and keep its pg_dump, not a SQLite file")
	flag.Parse()
	if *bin == "" || *out == "" || *commit == "" {
		fmt.Fprintln(os.Stderr, "usage: rein-upgrade-fixture --server BIN --commit HASH --out FILE.tar.gz [--kill] [--postgres]")
		os.Exit(2)
	}
	// A kill that lands just after the server moved the staged events
	// into the log leaves none staged: try again, a few times.
	for attempt := 1; ; attempt++ {
		err := run(*bin, *out, *commit, *kill, *postgres)
		if errors.Is(err, errNoneStaged) && attempt < 10 {
			fmt.Fprintln(os.Stderr, "rein-upgrade-fixture: nothing staged at the kill; again")
			continue
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "rein-upgrade-fixture:", err)
			os.Exit(1)
		}
		return
	}
}

// errNoneStaged is a kill of a build that stages single events that left
// none staged.
var errNoneStaged = errors.New("the kill left no staged events")

const clientToken = "upgrade-fixture-client-token-0123456789"

func run(bin, out, commit string, kill, postgres bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "rein-upgrade-fixture-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tokenFile := filepath.Join(dir, "api-token")
	if err := os.WriteFile(tokenFile, []byte(clientToken), 0o600); err != nil {
		return err
	}
	cfg := e2e.ServerConfig{Bin: bin, Dir: dir, Args: []string{"--api-token-file", tokenFile}}
	var dsn string
	if postgres {
		cluster, err := pgtest.Start(ctx)
		if err != nil {
			return err
		}
		defer cluster.Stop()
		conn, err := pgx.Connect(ctx, cluster.DSN("postgres"))
		if err != nil {
			return err
		}
		_, err = conn.Exec(ctx, "CREATE DATABASE fixture")
		conn.Close(ctx)
		if err != nil {
			return err
		}
		dsn = cluster.DSN("fixture")
		cfg.DB = dsn
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	srv, err := e2e.StartServer(ctx, logf, cfg)
	if err != nil {
		return err
	}
	defer srv.Kill()
	d := &driver{ctx: ctx, base: srv.URL, m: e2e.UpgradeManifest{Commit: commit, Backend: "sqlite", ClientToken: clientToken}}
	if postgres {
		d.m.Backend = "postgres"
	}
	if err := d.traffic(); err != nil {
		return err
	}
	if kill {
		if err := d.stagedThenKill(srv); err != nil {
			return err
		}
	} else {
		srv.Stop(20 * time.Second)
		if code := srv.ExitCode(); code != 0 {
			return fmt.Errorf("the server exited %d on SIGTERM", code)
		}
	}
	d.m.Killed = kill

	files := map[string][]byte{}
	if postgres {
		dump, err := pgDump(ctx, dsn)
		if err != nil {
			return err
		}
		files["dump.sql"] = dump
		d.m.NoTurnDigests = !bytes.Contains(dump, []byte("CREATE TABLE public.turn_digests"))
		d.m.NoCommandAcks = !bytes.Contains(dump, []byte("acked_command_id"))
	} else {
		for _, name := range []string{"rein.db", "rein.db-wal"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if errors.Is(err, os.ErrNotExist) {
				continue
			} else if err != nil {
				return err
			}
			files[name] = b
		}
		if err := d.countStaged(dir); err != nil {
			return err
		}
		// Builds from schema version 8 stage single events when the
		// writer is busy (server/README.md, "Staged events").
		if kill && d.m.SchemaVersion >= 8 && d.m.StagedRows == 0 {
			return errNoneStaged
		}
	}
	m, err := json.MarshalIndent(d.m, "", "  ")
	if err != nil {
		return err
	}
	files["manifest.json"] = m
	return writeTarGz(out, files)
}

// driver sends the fixture's traffic and records what it was told.
type driver struct {
	ctx  context.Context
	base string
	m    e2e.UpgradeManifest
	hc   http.Client
}

type answer struct {
	status int
	body   []byte
	header http.Header
}

func (d *driver) do(method, path, token string, hdr map[string]string, body any) (answer, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return answer{}, err
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(d.ctx, method, d.base+path, r)
	if err != nil {
		return answer{}, err
	}
	if token == "" {
		token = clientToken
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, b, resp.Header}, err
}

// must sends a request that must be answered want.
func (d *driver) must(want int, method, path, token string, hdr map[string]string, body any) answer {
	a, err := d.do(method, path, token, hdr, body)
	if err != nil {
		panic(fmt.Errorf("%s %s: %w", method, path, err))
	}
	if a.status != want {
		panic(fmt.Errorf("%s %s: %d %s; want %d", method, path, a.status, a.body, want))
	}
	return a
}

func (d *driver) create(id string, body any) (created int64, token string) {
	a := d.must(201, "POST", "/sessions/"+id, "", nil, body)
	var r struct {
		CreatedAt    int64  `json:"createdAt"`
		SandboxToken string `json:"sandboxToken"`
	}
	if err := json.Unmarshal(a.body, &r); err != nil || r.SandboxToken == "" {
		panic(fmt.Errorf("create %s: %s", id, a.body))
	}
	return r.CreatedAt, r.SandboxToken
}

// instance is one sandbox instance posting events with agentSeq.
type instance struct {
	d              *driver
	session, name  string
	token          string
	seq            int64
	stream         *commandStream
	sessionRecords *e2e.UpgradeSession
}

// post sends events (one object when there is one, else a batch) with the
// next agentSeqs, and with the command cursor when cursor > 0.
func (in *instance) post(cursor int64, evs ...map[string]any) {
	for _, ev := range evs {
		in.seq++
		ev["agentSeq"] = in.seq
	}
	hdr := map[string]string{"Rein-Instance": in.name}
	if cursor > 0 {
		hdr["Rein-Command-Cursor"] = strconv.FormatInt(cursor, 10)
	}
	var body any = evs
	if len(evs) == 1 {
		body = evs[0]
	}
	a := in.d.must(202, "POST", "/sessions/"+in.session+"/events", in.token, hdr, body)
	var r struct{ Accepted, Duplicates int }
	if err := json.Unmarshal(a.body, &r); err != nil || r.Accepted != len(evs) || r.Duplicates != 0 {
		panic(fmt.Errorf("post to %s: %s", in.session, a.body))
	}
	in.sessionRecords.Instances[in.name] = in.seq
}

// commandStream is a sandbox's GET /sessions/:id/commands.
type commandStream struct {
	cancel context.CancelFunc
	ids    chan int64
	done   chan struct{}
}

func (in *instance) open(lastEventID int64) {
	ctx, cancel := context.WithCancel(in.d.ctx)
	req, err := http.NewRequestWithContext(ctx, "GET", in.d.base+"/sessions/"+in.session+"/commands", nil)
	if err != nil {
		panic(err)
	}
	req.Header.Set("Authorization", "Bearer "+in.token)
	req.Header.Set("Rein-Instance", in.name)
	if lastEventID >= 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(lastEventID, 10))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	if resp.StatusCode != 200 {
		panic(fmt.Errorf("command stream of %s: %d", in.session, resp.StatusCode))
	}
	cs := &commandStream{cancel: cancel, ids: make(chan int64, 100), done: make(chan struct{})}
	go func() {
		defer close(cs.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
				n, _ := strconv.ParseInt(id, 10, 64)
				cs.ids <- n
			}
		}
	}()
	in.stream = cs
}

// await waits for command id on the instance's stream.
func (in *instance) await(id int64) {
	for {
		select {
		case got := <-in.stream.ids:
			if got == id {
				return
			}
		case <-time.After(10 * time.Second):
			panic(fmt.Errorf("%s: command %d never came on the stream", in.name, id))
		}
	}
}

func (in *instance) close() {
	in.stream.cancel()
	<-in.stream.done
}

// command sends a command, with key when not "", and returns its id.
func (d *driver) command(s *e2e.UpgradeSession, key string, cmd map[string]any) int64 {
	id, ok := d.tryCommand(s, key, cmd)
	if !ok {
		panic(fmt.Errorf("%s: %v: 409", s.ID, cmd))
	}
	return id
}

// tryCommand is command, but a 409 (an older build refusing what it
// does not do yet) is no panic: ok is false and nothing was stored.
func (d *driver) tryCommand(s *e2e.UpgradeSession, key string, cmd map[string]any) (id int64, ok bool) {
	hdr := map[string]string{}
	if key != "" {
		hdr["Idempotency-Key"] = key
	}
	a, err := d.do("POST", "/sessions/"+s.ID+"/commands", "", hdr, cmd)
	if err != nil {
		panic(err)
	}
	if a.status == http.StatusConflict {
		return 0, false
	}
	if a.status != http.StatusAccepted {
		panic(fmt.Errorf("%s: %v: %d %s", s.ID, cmd, a.status, a.body))
	}
	var r struct{ ID int64 }
	if err := json.Unmarshal(a.body, &r); err != nil || r.ID == 0 {
		panic(fmt.Errorf("command: %s", a.body))
	}
	if key != "" {
		// Sent again: a build that honours keys answers the same id; an
		// older one stores it again, and the key means nothing there.
		again := d.must(202, "POST", "/sessions/"+s.ID+"/commands", "", hdr, cmd)
		var r2 struct{ ID int64 }
		json.Unmarshal(again.body, &r2)
		if r2.ID == r.ID {
			delete(cmd, "queue")
			c, _ := json.Marshal(cmd)
			s.Keys = append(s.Keys, e2e.UpgradeKey{Key: key, ID: r.ID, Command: c})
		} else {
			r.ID = r2.ID
		}
	}
	return r.ID, true
}

// awaitStatus waits for the server to have seen a closed stream: the
// session's record says status.
func (d *driver) awaitStatus(id, status string) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var r struct{ Status string }
		json.Unmarshal(d.must(200, "GET", "/sessions/"+id, "", nil, nil).body, &r)
		if r.Status == status {
			return
		}
	}
	panic(fmt.Errorf("%s never became %s", id, status))
}

func ev(typ string, kv ...any) map[string]any {
	m := map[string]any{"type": typ}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func (d *driver) session(id string) *e2e.UpgradeSession {
	s := &e2e.UpgradeSession{ID: id, Instances: map[string]int64{}}
	d.m.Sessions = append(d.m.Sessions, s)
	return s
}

func (d *driver) traffic() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	options := []map[string]any{
		{"id": "allow", "name": "Allow", "kind": "allow_once"},
		{"id": "reject", "name": "Reject", "kind": "reject_once"},
	}

	// alpha: a project and a first prompt; two instances, the second
	// taking over; an answered permission and a pending one.
	alpha := d.session("alpha")
	_, tok := d.create("alpha", map[string]any{"project": "web", "prompt": "first prompt"})
	alpha.Token = tok
	a1 := &instance{d: d, session: "alpha", name: "alpha-1", token: tok, sessionRecords: alpha}
	a1.open(-1)
	first := int64(1)
	if rec := d.must(200, "GET", "/sessions/alpha", "", nil, nil); !strings.Contains(string(rec.body), `"pendingCommands":1`) {
		// A build before the prompt in the create body ignores it:
		// the first prompt is a command sent once the sandbox is there.
		first = d.command(alpha, "", map[string]any{"type": "prompt", "text": "first prompt"})
	}
	a1.await(first)
	a1.post(first,
		ev("agent_started", "agent", map[string]any{"name": "fixture-agent", "protocol": "native"}, "model", "m1"),
		ev("turn_started", "turnId", "t1", "source", "user", "promptId", "1"),
		ev("user_message", "text", "first prompt", "promptId", "1"),
		ev("text_delta", "delta", "Hello"),
		ev("text_delta", "delta", " world"),
		ev("text_end"),
		ev("tool_call_start", "id", "tc1", "name", "bash", "kind", "execute", "title", "ls", "input", map[string]any{"cmd": "ls"}),
		ev("tool_output_delta", "id", "tc1", "delta", "a\n"),
		ev("tool_output_delta", "id", "tc1", "delta", "b\n", "stream", "stdout"),
		ev("tool_call_end", "id", "tc1", "status", "completed", "exitCode", 0),
		ev("usage_updated", "inputTokens", 120, "outputTokens", 30, "costUsd", 0.25),
		ev("notice", "level", "info", "message", "fixture notice"),
		ev("session_info", "summary", "Alpha summary"),
		ev("turn_completed", "turnId", "t1", "stopReason", "end_turn"),
	)
	second := d.command(alpha, "fixture-key-alpha-2", map[string]any{"type": "prompt", "text": "second"})
	a1.await(second)
	// One event a request, as agentd's outbox sends a quiet agent's.
	a1.post(second, ev("turn_started", "turnId", "t2", "source", "user", "promptId", strconv.FormatInt(second, 10)))
	a1.post(0, ev("user_message", "text", "second"))
	a1.post(0, ev("tool_call_start", "id", "tc2", "name", "write", "input", map[string]any{"path": "x"}))
	a1.post(0, ev("permission_requested", "id", "p1", "toolCallId", "tc2", "title", "Write x?", "options", options))
	answer := d.command(alpha, "", map[string]any{"type": "permission_response", "requestId": "p1", "optionId": "allow"})
	a1.await(answer)
	a1.post(answer, ev("permission_resolved", "id", "p1", "outcome", "selected", "optionId", "allow"))
	a1.post(0, ev("tool_call_end", "id", "tc2", "status", "completed", "output", "written"))
	a1.post(0, ev("turn_completed", "turnId", "t2", "stopReason", "end_turn"))
	third := d.command(alpha, "", map[string]any{"type": "prompt", "text": "third"})
	a1.await(third)
	// agentd restarted with a new instance id, its cursor at the answer.
	a2 := &instance{d: d, session: "alpha", name: "alpha-2", token: tok, sessionRecords: alpha}
	a2.open(answer)
	a2.await(third)
	a1.close()
	a2.post(0, ev("agent_started", "agent", map[string]any{"name": "fixture-agent", "protocol": "native"}))
	a2.post(third,
		ev("turn_started", "turnId", "t3", "source", "user", "promptId", strconv.FormatInt(third, 10)),
		ev("user_message", "text", "third"),
		ev("reasoning_delta", "delta", "thinking"),
		ev("plan_updated", "entries", []map[string]any{{"content": "step one", "status": "in_progress"}, {"content": "step two", "status": "pending"}}),
		ev("text_delta", "delta", "Let me write y"),
		ev("tool_call_start", "id", "tc3", "name", "write", "input", map[string]any{"path": "y"}),
	)
	a2.post(0, ev("permission_requested", "id", "p2", "toolCallId", "tc3", "title", "Write y?", "options", options))
	alpha.PendingPermission = "p2"
	alpha.CurrentInstance = "alpha-2"

	// beta: no project; a failed tool, a prompt with a key and an abort,
	// the token rotated, a new instance on the new token, then a prompt
	// queued while no sandbox holds the stream.
	beta := d.session("beta")
	_, b0 := d.create("beta", nil)
	b1 := &instance{d: d, session: "beta", name: "beta-1", token: b0, sessionRecords: beta}
	b1.open(-1)
	b1.post(0,
		ev("agent_started", "agent", map[string]any{"name": "fixture-agent", "protocol": "native"}),
		ev("turn_started", "turnId", "b1", "source", "agent"),
		ev("tool_call_start", "id", "bt1", "name", "make"),
		ev("tool_output_delta", "id", "bt1", "delta", "boom\n", "stream", "stderr"),
		ev("tool_call_end", "id", "bt1", "status", "failed", "exitCode", 2, "error", "make failed"),
		ev("file_changed", "path", "a.go", "change", "update", "diff", "-a\n+b\n"),
		ev("turn_completed", "turnId", "b1", "stopReason", "error", "error", "gave up"),
	)
	bp := d.command(beta, "fixture-key-beta-1", map[string]any{"type": "prompt", "text": "try again"})
	b1.await(bp)
	b1.post(bp, ev("turn_started", "turnId", "b2", "source", "user"), ev("text_delta", "delta", "Trying"))
	abort := d.command(beta, "", map[string]any{"type": "abort"})
	b1.await(abort)
	b1.post(abort, ev("turn_completed", "turnId", "b2", "stopReason", "cancelled"))
	r := d.must(200, "POST", "/sessions/beta/token", "", nil, nil)
	var rot struct{ SandboxToken string }
	if err := json.Unmarshal(r.body, &rot); err != nil || rot.SandboxToken == "" {
		panic(fmt.Errorf("rotate: %s", r.body))
	}
	b1.close()
	if a, _ := d.do("POST", "/sessions/beta/events", b0, nil, ev("heartbeat")); a.status != 401 {
		panic(fmt.Errorf("the rotated-out token: %d", a.status))
	}
	beta.Token, beta.OldTokens = rot.SandboxToken, []string{b0}
	b2 := &instance{d: d, session: "beta", name: "beta-2", token: rot.SandboxToken, sessionRecords: beta}
	b2.open(abort)
	b2.post(0, ev("agent_started", "agent", map[string]any{"name": "fixture-agent", "protocol": "native"}), ev("notice", "level", "warning", "message", "restarted"))
	b2.close()
	beta.CurrentInstance = "beta-2"
	d.awaitStatus("beta", "disconnected")
	// A build before queued prompts refuses it (no_sandbox).
	d.tryCommand(beta, "fixture-key-beta-queued", map[string]any{"type": "prompt", "text": "queued while away", "queue": true})

	// gamma: deleted.
	_, g := d.create("gamma", map[string]any{"project": "web"})
	gi := &instance{d: d, session: "gamma", name: "gamma-1", token: g, sessionRecords: &e2e.UpgradeSession{Instances: map[string]int64{}}}
	gi.post(0, ev("turn_started", "turnId", "g1", "source", "agent"), ev("text_delta", "delta", "gone soon"))
	d.must(204, "DELETE", "/sessions/gamma", "", nil, nil)
	d.m.Deleted = append(d.m.Deleted, e2e.UpgradeDeleted{ID: "gamma", Token: g})

	// delta: deleted, then created again under the same id.
	oldCreated, d0 := d.create("delta", map[string]any{"project": "old"})
	di := &instance{d: d, session: "delta", name: "delta-old", token: d0, sessionRecords: &e2e.UpgradeSession{Instances: map[string]int64{}}}
	di.post(0, ev("turn_started", "turnId", "d1", "source", "agent"), ev("text_delta", "delta", "the old delta"))
	d.must(204, "DELETE", "/sessions/delta", "", nil, nil)
	delta := d.session("delta")
	newCreated, d1 := d.create("delta", map[string]any{"project": "ops"})
	if newCreated == oldCreated {
		// A build before createdAt was made unique could give both the
		// same millisecond; the fixture needs them told apart.
		panic(fmt.Errorf("delta created again within its old createdAt %d", oldCreated))
	}
	delta.Token, delta.OldTokens, delta.OldCreatedAt = d1, []string{d0}, oldCreated
	dn := &instance{d: d, session: "delta", name: "delta-new", token: d1, sessionRecords: delta}
	dn.open(-1)
	dn.post(0,
		ev("agent_started", "agent", map[string]any{"name": "fixture-agent", "protocol": "native"}),
		ev("turn_started", "turnId", "d1", "source", "agent"),
		ev("text_delta", "delta", "the new delta"),
		ev("turn_completed", "turnId", "d1", "stopReason", "end_turn"),
	)
	dn.close()
	delta.CurrentInstance = "delta-new"

	// What the old build says of each, as it was last told.
	for _, s := range d.m.Sessions {
		s.Record = d.must(200, "GET", "/sessions/"+s.ID, "", nil, nil).body
		s.Artifacts = d.must(200, "GET", "/sessions/"+s.ID+"/artifacts", "", nil, nil).body
	}
	a1.stream = nil
	// alpha-2 still holds alpha's stream when the server stops.
	return nil
}

// stagedThenKill posts single events to session staged from eight
// posters and kills the server while they flow: a build that stages
// single events (when four requests or more wait for the writer) leaves
// some unmaterialised. Each poster's acknowledged count is
// kept: those events must survive.
func (d *driver) stagedThenKill(srv *e2e.Server) error {
	_, tok := d.create("staged", nil)
	st := d.session("staged")
	st.Token = tok
	const posters = 8
	var mu sync.Mutex
	st.Posters = map[string]int64{}
	ctx, stop := context.WithCancel(d.ctx)
	var wg sync.WaitGroup
	for w := range posters {
		name := fmt.Sprint("poster-", w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 10 * time.Second}
			for i := int64(1); ctx.Err() == nil; i++ {
				body, _ := json.Marshal(ev("text_delta", "id", name, "delta", fmt.Sprintf("%s-%d ", name, i), "agentSeq", i))
				req, _ := http.NewRequestWithContext(ctx, "POST", d.base+"/sessions/staged/events", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Rein-Instance", name)
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 202 {
					return
				}
				mu.Lock()
				st.Posters[name] = i
				mu.Unlock()
			}
		}()
	}
	for {
		mu.Lock()
		n := int64(0)
		for _, c := range st.Posters {
			n += c
		}
		mu.Unlock()
		if n >= 120 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	srv.Kill()
	stop()
	wg.Wait()
	return nil
}

// countStaged records how many staged events the database holds, read
// from a copy so the original's WAL is left as the server left it.
func (d *driver) countStaged(dir string) error {
	cp, err := os.MkdirTemp("", "rein-upgrade-count-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cp)
	for _, name := range []string{"rein.db", "rein.db-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(cp, name), b, 0o600); err != nil {
			return err
		}
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(cp, "rein.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT MAX(version) FROM schema_version`).Scan(&d.m.SchemaVersion); err != nil {
		return err
	}
	var digests int
	if err := db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name = 'turn_digests'`).Scan(&digests); err != nil {
		return err
	}
	d.m.NoTurnDigests = digests == 0
	var acks int
	if err := db.QueryRow(`SELECT COUNT(*) FROM pragma_table_info('sessions') WHERE name = 'acked_command_id'`).Scan(&acks); err != nil {
		return err
	}
	d.m.NoCommandAcks = acks == 0
	var n int64
	if err := db.QueryRow(`SELECT COUNT(*) FROM staged_events`).Scan(&n); err == nil {
		d.m.StagedRows = n
	}
	return nil
}

// pgDump dumps the database as SQL a plain Exec can run (no COPY, no
// owners), for the test to restore into a fresh database.
func pgDump(ctx context.Context, dsn string) ([]byte, error) {
	bin := "pg_dump"
	if dir := os.Getenv("REIN_PG_BIN"); dir != "" {
		bin = filepath.Join(dir, "pg_dump")
	}
	out, err := exec.CommandContext(ctx, bin, "--inserts", "--no-owner", "--no-privileges", "--no-comments", dsn).Output()
	if err != nil {
		return nil, fmt.Errorf("pg_dump: %w", err)
	}
	// psql meta-commands (\restrict, which newer pg_dumps write) are not
	// SQL; the dump needs none of them.
	var kept []string
	for line := range strings.SplitSeq(string(out), "\n") {
		if !strings.HasPrefix(line, `\`) {
			kept = append(kept, line)
		}
	}
	return []byte(strings.Join(kept, "\n")), nil
}

func writeTarGz(path string, files map[string][]byte) error {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	for _, name := range []string{"manifest.json", "rein.db", "rein.db-wal", "dump.sql"} {
		b, ok := files[name]
		if !ok {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
