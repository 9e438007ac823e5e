package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
	"github.com/rein-ai/rein/server/client"
	"github.com/rein-ai/rein/server/pgtest"
)

// The current rein-server opens each database an older build wrote
// (testdata/upgrade, made by cmd/rein-upgrade-fixture: see the README
// there) and serves all of it: every session's record as the old build
// last gave it, artifacts that are the current fold of the stored log,
// turn digests that verify, a stream that replays and resumes exactly,
// the command stream from the stored cursor, the old build's
// Idempotency-Keys, its token rotation, its pending permission (answered
// now), its sandbox instances' agentSeqs, and its deleted sessions gone.
// Stopped and started again on the migrated database, it serves the
// same. PostgreSQL fixtures (a pg_dump) are restored into a fresh
// database of the test cluster; they skip where PostgreSQL cannot start.
func TestUpgrade(t *testing.T) {
	fixtures, err := filepath.Glob("testdata/upgrade/*.tar.gz")
	if err != nil || len(fixtures) == 0 {
		t.Fatalf("no fixtures in testdata/upgrade: %v", err)
	}
	for _, f := range fixtures {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".tar.gz"), func(t *testing.T) {
			t.Parallel()
			testUpgrade(t, f)
		})
	}
}

func testUpgrade(t *testing.T, fixture string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	m, err := ExtractUpgradeFixture(fixture, dir)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "api-token")
	if err := os.WriteFile(tokenFile, []byte(m.ClientToken), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := ServerConfig{Bin: bins.Server, Dir: dir, Args: []string{"--api-token-file", tokenFile}}
	if m.Backend == "postgres" {
		cfg.DB = restoreDump(t, ctx, filepath.Join(dir, "dump.sql"))
	}
	srv, err := StartServer(ctx, t.Logf, cfg)
	if err != nil {
		t.Fatalf("the current build on %s's database: %v", m.Commit, err)
	}
	t.Cleanup(func() { srv.Stop(15 * time.Second) })
	c, err := client.New(srv.URL, m.ClientToken)
	if err != nil {
		t.Fatal(err)
	}
	u := &upgrade{t: t, ctx: ctx, c: c, m: m, base: srv.URL}

	// As the old build left it.
	for _, s := range m.Sessions {
		if s.Record != nil {
			u.sameRecord(s)
		}
	}
	before := u.served()
	for _, s := range m.Sessions {
		if s.Artifacts != nil {
			var old []*protocol.Artifact
			if err := json.Unmarshal(s.Artifacts, &old); err != nil {
				t.Fatal(err)
			}
			if got, want := jsonOf(t, before[s.ID].Artifacts), jsonOf(t, old); got != want {
				t.Errorf("%s: the artifacts are not those the old build served:\n%s\nwant\n%s", s.ID, got, want)
			}
		}
	}
	u.deletedStayDeleted()

	// Written to by the current build.
	for _, s := range m.Sessions {
		u.continueSession(s)
	}
	after := u.served()

	// The database migrated once, opened again.
	srv.Stop(15 * time.Second)
	if err := srv.Restart(ctx); err != nil {
		t.Fatalf("the second start: %v", err)
	}
	again := u.served()
	for _, s := range m.Sessions {
		if got, want := jsonOf(t, again[s.ID]), jsonOf(t, after[s.ID]); got != want {
			t.Errorf("%s after the second start:\n%s\nbefore it\n%s", s.ID, got, want)
		}
	}
	u.deletedStayDeleted()
}

type upgrade struct {
	t    *testing.T
	ctx  context.Context
	c    *client.Client
	m    UpgradeManifest
	base string
}

// servedSession is what a server serves of one session, the record
// without what a restart changes (status, lastHeartbeat).
type servedSession struct {
	Record    protocol.Session
	Artifacts []*protocol.Artifact
	Log       []protocol.LoggedEvent
	Turns     []protocol.Turn
}

// served reads every session and checks what must hold of each: the
// session list is the manifest's, the artifacts are the current fold of
// the log, GET /artifacts and a full stream replay agree, a resume from
// the middle sends exactly what changed after it, and rein verify
// passes.
func (u *upgrade) served() map[string]servedSession {
	t := u.t
	t.Helper()
	list, err := u.c.Sessions(u.ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var ids, want []string
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	for _, s := range u.m.Sessions {
		want = append(want, s.ID)
	}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("GET /sessions lists %v; want %v", ids, want)
	}
	out := map[string]servedSession{}
	for _, s := range list {
		rec := s
		rec.Status, rec.LastHeartbeat = "", nil
		ss := servedSession{Record: rec, Log: u.exportLog(s.ID)}
		if ss.Artifacts, err = u.c.Artifacts(u.ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		evs := make([]protocol.Event, len(ss.Log))
		for i, le := range ss.Log {
			if err := json.Unmarshal(le.Event, &evs[i]); err != nil {
				t.Fatalf("%s: stored event %d: %v", s.ID, le.Pos, err)
			}
		}
		if got, want := jsonOf(t, ss.Artifacts), jsonOf(t, reducer.Fold(evs).Artifacts()); got != want {
			t.Errorf("%s: GET /artifacts is not the fold of its log:\n%s\nwant\n%s", s.ID, got, want)
		}
		if ss.Turns, err = u.c.Turns(u.ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		v, err := u.c.Verify(u.ctx, s.ID, 7)
		if err != nil || v.FirstMismatch != nil || v.Verified != v.Turns || (v.Recorded != v.Turns && !u.m.NoTurnDigests) || v.Events != len(ss.Log) {
			t.Errorf("%s: rein verify: %+v, %v", s.ID, v, err)
		}
		u.streamMatches(s.ID, ss.Artifacts)
		out[s.ID] = ss
	}
	return out
}

// streamMatches checks the artifact stream: a full replay is arts, and a
// resume from the middle revision sends exactly the artifacts changed
// after it.
func (u *upgrade) streamMatches(id string, arts []*protocol.Artifact) {
	t := u.t
	t.Helper()
	full, complete := u.replay(id, "")
	if got, want := jsonOf(t, full), jsonOf(t, arts); got != want {
		t.Errorf("%s: the stream's full replay:\n%s\nwant GET /artifacts\n%s", id, got, want)
	}
	if !complete.Full {
		t.Errorf("%s: a replay without Last-Event-ID ended %+v; want full", id, complete)
	}
	if len(arts) < 2 {
		return
	}
	revs := make([]int64, len(arts))
	for i, a := range arts {
		revs[i] = a.Rev
	}
	slices.Sort(revs)
	from := revs[len(revs)/2-1]
	var changed []*protocol.Artifact
	for _, a := range arts {
		if a.Rev > from {
			changed = append(changed, a)
		}
	}
	resumed, complete := u.replay(id, strconv.FormatInt(from, 10))
	if got, want := jsonOf(t, resumed), jsonOf(t, changed); got != want || complete.Full {
		t.Errorf("%s: resumed from %d (ended %+v):\n%s\nwant\n%s", id, from, complete, got, want)
	}
}

// replay opens the artifact stream and returns what it sends up to
// snapshot_complete, by seq.
func (u *upgrade) replay(id, lastID string) ([]*protocol.Artifact, protocol.SnapshotComplete) {
	t := u.t
	t.Helper()
	ctx, cancel := context.WithCancel(u.ctx)
	defer cancel()
	body, err := u.c.OpenStream(ctx, "/sessions/"+id+"/stream", lastID)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	r := client.NewEventReader(body)
	got := map[int64]*protocol.Artifact{}
	for {
		ev, err := r.Next()
		if err != nil {
			t.Fatalf("%s: stream: %v", id, err)
		}
		switch ev.Name {
		case protocol.SSEArtifactSnapshot:
			var p protocol.ArtifactPayload
			if err := json.Unmarshal([]byte(ev.Data), &p); err != nil {
				t.Fatal(err)
			}
			got[p.Artifact.Seq] = p.Artifact
		case protocol.SSESnapshotComplete:
			var c protocol.SnapshotComplete
			if err := json.Unmarshal([]byte(ev.Data), &c); err != nil {
				t.Fatal(err)
			}
			out := make([]*protocol.Artifact, 0, len(got))
			for _, seq := range slices.Sorted(mapsKeys(got)) {
				out = append(out, got[seq])
			}
			return out, c
		default:
			t.Fatalf("%s: %s before snapshot_complete", id, ev.Name)
		}
	}
}

func mapsKeys(m map[int64]*protocol.Artifact) func(func(int64) bool) {
	return func(yield func(int64) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (u *upgrade) exportLog(id string) []protocol.LoggedEvent {
	var out []protocol.LoggedEvent
	for after := int64(0); ; {
		page, err := u.c.EventLog(u.ctx, id, after, 5000)
		if err != nil {
			u.t.Fatal(err)
		}
		out = append(out, page.Events...)
		if page.Next == nil {
			return out
		}
		after = *page.Next
	}
}

// sameRecord checks a session's record against the old build's last
// answer: the same but for status (a restart leaves no sandbox
// connected) and lastHeartbeat.
func (u *upgrade) sameRecord(s *UpgradeSession) {
	t := u.t
	t.Helper()
	var old protocol.Session
	if err := json.Unmarshal(s.Record, &old); err != nil {
		t.Fatal(err)
	}
	got, err := u.c.Session(u.ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if old.Status == protocol.StatusLive || old.Status == protocol.StatusIdle {
		// SQLite has one server, so a start marks every session
		// disconnected. On PostgreSQL a start marks none (a sandbox may
		// be connected to another replica): a clean stop did, and after
		// a kill the heartbeat timeout will.
		if u.m.Backend != "postgres" || got.Status == protocol.StatusDisconnected {
			old.Status = protocol.StatusDisconnected
		}
	}
	got.LastHeartbeat, old.LastHeartbeat = nil, nil
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(s.Record, &fields); err != nil {
		t.Fatal(err)
	}
	if u.m.NoCommandAcks {
		// A build before acknowledgements kept no cursor: the
		// migration starts it at the last command, which that build
		// had written to the sandbox. None is pending.
		old.AckedCommandID = got.AckedCommandID
	}
	if _, ok := fields["pendingApprovals"]; !ok {
		// A build before the approvals inbox did not count them; the
		// pending permission is checked in GET /approvals.
		old.PendingApprovals = got.PendingApprovals
	}
	if jsonOf(t, got) != jsonOf(t, old) {
		t.Errorf("%s: the record is\n%s\nwant (the old build's)\n%s", s.ID, jsonOf(t, got), jsonOf(t, old))
	}
	if s.OldCreatedAt != 0 && got.CreatedAt == s.OldCreatedAt {
		t.Errorf("%s: created again, but with the deleted session's createdAt %d", s.ID, s.OldCreatedAt)
	}
}

// deletedStayDeleted: a deleted session is 404 and its token refused.
func (u *upgrade) deletedStayDeleted() {
	t := u.t
	t.Helper()
	for _, d := range u.m.Deleted {
		if _, err := u.c.Session(u.ctx, d.ID); !isCode(err, protocol.CodeNotFound) {
			t.Errorf("deleted session %s: %v; want 404", d.ID, err)
		}
		if st, body := u.post(d.ID, d.Token, nil, `{"type":"heartbeat"}`); st != http.StatusUnauthorized {
			t.Errorf("deleted session %s's token: %d %s; want 401", d.ID, st, body)
		}
	}
}

func isCode(err error, code protocol.Code) bool {
	return err != nil && strings.Contains(err.Error(), string(code))
}

// post sends body to a session's events with token and headers.
func (u *upgrade) post(id, token string, hdr map[string]string, body string) (int, string) {
	u.t.Helper()
	req, err := http.NewRequestWithContext(u.ctx, http.MethodPost, u.base+"/sessions/"+id+"/events", strings.NewReader(body))
	if err != nil {
		u.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, strings.TrimSpace(b.String())
}

// continueSession writes to a session as its sandbox and clients go on
// after the upgrade, checking each answer against what the old build
// stored.
func (u *upgrade) continueSession(s *UpgradeSession) {
	t := u.t
	t.Helper()
	rec, err := u.c.Session(u.ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}

	// Tokens: the current one is accepted, rotated-out and deleted
	// sessions' ones refused.
	if st, body := u.post(s.ID, s.Token, nil, `{"type":"heartbeat"}`); st != http.StatusAccepted {
		t.Errorf("%s: its sandbox token: %d %s", s.ID, st, body)
	}
	for _, old := range s.OldTokens {
		if st, body := u.post(s.ID, old, nil, `{"type":"heartbeat"}`); st != http.StatusUnauthorized {
			t.Errorf("%s: a token it no longer has: %d %s; want 401", s.ID, st, body)
		}
	}
	if s.OldCreatedAt != 0 {
		hdr := map[string]string{protocol.HeaderSessionCreated: strconv.FormatInt(s.OldCreatedAt, 10)}
		if st, body := u.post(s.ID, s.Token, hdr, `{"type":"notice","level":"info","message":"from the deleted one"}`); st != http.StatusConflict {
			t.Errorf("%s: an event for the deleted session under its id: %d %s; want 409", s.ID, st, body)
		}
	}

	// Idempotency-Keys the old build stored replay their command.
	for _, k := range s.Keys {
		var cmd protocol.Command
		if err := json.Unmarshal(k.Command, &cmd); err != nil {
			t.Fatal(err)
		}
		res, err := u.c.CommandOnce(u.ctx, s.ID, k.Key, cmd)
		if err != nil || res.ID != k.ID || !res.Replayed {
			t.Errorf("%s: key %s sent again: %+v, %v; want command %d replayed", s.ID, k.Key, res, err, k.ID)
		}
		other := protocol.Command{Type: protocol.CommandPrompt, Text: "another " + cmd.Text}
		if _, err := u.c.CommandOnce(u.ctx, s.ID, k.Key, other); !isCode(err, protocol.CodeConflict) {
			t.Errorf("%s: key %s with another command: %v; want 409", s.ID, k.Key, err)
		}
	}

	// Events from each instance continue after its stored agentSeq; the
	// one stored last is a duplicate. Instances the current one
	// superseded are refused.
	for inst, seq := range s.Instances {
		body := fmt.Sprintf(`[{"type":"notice","level":"info","message":"again","agentSeq":%d},{"type":"notice","level":"info","message":"after the upgrade","agentSeq":%d}]`, seq, seq+1)
		st, got := u.post(s.ID, s.Token, map[string]string{protocol.HeaderInstance: inst}, body)
		switch {
		case s.CurrentInstance != "" && inst != s.CurrentInstance:
			if st != http.StatusConflict || !strings.Contains(got, "superseded") {
				t.Errorf("%s: superseded instance %s: %d %s; want 409 superseded", s.ID, inst, st, got)
			}
		case st != http.StatusAccepted || got != `{"accepted":1,"duplicates":1}`:
			t.Errorf("%s: instance %s at agentSeq %d and %d: %d %s; want one accepted, one duplicate", s.ID, inst, seq, seq+1, st, got)
		}
	}
	for poster, acked := range s.Posters {
		u.postersLog(s.ID, poster, acked)
	}

	if s.CurrentInstance == "" {
		return
	}
	// The command stream, opened again by its instance from the stored
	// cursor, sends every command after it, then new ones.
	cs := u.openCommands(s, rec.AckedCommandID)
	defer cs.close()
	for id := rec.AckedCommandID + 1; id <= rec.AckedCommandID+rec.PendingCommands; id++ {
		if got := cs.next(t); got != id {
			t.Fatalf("%s: the command stream from cursor %d sent %d; want %d", s.ID, rec.AckedCommandID, got, id)
		}
	}
	last := rec.AckedCommandID + rec.PendingCommands
	if s.PendingPermission != "" {
		approvals, err := u.c.Approvals(u.ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		var seq int64
		for _, a := range approvals {
			if a.SessionID == s.ID && a.RequestID == s.PendingPermission {
				seq = a.Seq
			}
		}
		if seq == 0 {
			t.Fatalf("%s: permission %s is not in GET /approvals: %+v", s.ID, s.PendingPermission, approvals)
		}
		id, err := u.c.AnswerPermissionAt(u.ctx, s.ID, s.PendingPermission, seq, "allow")
		if err != nil || id != last+1 {
			t.Fatalf("%s: the answer to %s: %d, %v; want command %d", s.ID, s.PendingPermission, id, err, last+1)
		}
		last = id
		if got := cs.next(t); got != id {
			t.Fatalf("%s: the command stream sent %d; want the answer %d", s.ID, got, id)
		}
	}
	id, err := u.c.Prompt(u.ctx, s.ID, "after the upgrade")
	if err != nil || id != last+1 {
		t.Fatalf("%s: a prompt after the upgrade: %d, %v; want %d", s.ID, id, err, last+1)
	}
	if got := cs.next(t); got != id {
		t.Fatalf("%s: the command stream sent %d; want the prompt %d", s.ID, got, id)
	}
}

// postersLog checks that a poster's events, posted one a request until
// the kill, are in the log in order with each acknowledged one there
// (the one in flight at the kill may be too), and that the poster goes
// on after its last stored agentSeq.
func (u *upgrade) postersLog(id, poster string, acked int64) {
	t := u.t
	t.Helper()
	var n int64
	for _, le := range u.exportLog(id) {
		if le.Instance != poster {
			continue
		}
		var ev protocol.Event
		if err := json.Unmarshal(le.Event, &ev); err != nil {
			t.Fatal(err)
		}
		n++
		if want := fmt.Sprintf("%s-%d ", poster, n); ev.Delta != want || ev.AgentSeq != n {
			t.Fatalf("%s: %s's event %d is %q at agentSeq %d; want %q", id, poster, n, ev.Delta, ev.AgentSeq, want)
		}
	}
	if n < acked || n > acked+1 {
		t.Fatalf("%s: %s has %d events in the log; %d were acknowledged", id, poster, n, acked)
	}
	body := fmt.Sprintf(`[{"type":"text_delta","id":%q,"delta":"x","agentSeq":%d},{"type":"text_delta","id":%q,"delta":"%s-%d ","agentSeq":%d}]`, poster, n, poster, poster, n+1, n+1)
	if st, got := u.post(id, u.m.ClientToken, map[string]string{protocol.HeaderInstance: poster}, body); st != http.StatusAccepted || got != `{"accepted":1,"duplicates":1}` {
		t.Errorf("%s: %s after the upgrade: %d %s", id, poster, st, got)
	}
}

type commandStream struct {
	cancel context.CancelFunc
	ids    chan int64
}

func (u *upgrade) openCommands(s *UpgradeSession, cursor int64) *commandStream {
	t := u.t
	t.Helper()
	ctx, cancel := context.WithCancel(u.ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.base+"/sessions/"+s.ID+"/commands", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set(protocol.HeaderInstance, s.CurrentInstance)
	req.Header.Set("Last-Event-ID", strconv.FormatInt(cursor, 10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("%s: the command stream: %d", s.ID, resp.StatusCode)
	}
	cs := &commandStream{cancel: cancel, ids: make(chan int64, 64)}
	go func() {
		defer resp.Body.Close()
		defer close(cs.ids)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				cs.ids <- n
			}
		}
	}()
	return cs
}

func (cs *commandStream) next(t *testing.T) int64 {
	t.Helper()
	select {
	case id, ok := <-cs.ids:
		if !ok {
			t.Fatal("the command stream ended")
		}
		return id
	case <-time.After(20 * time.Second):
		t.Fatal("no command on the stream within 20s")
		return 0
	}
}

func (cs *commandStream) close() { cs.cancel() }

// restoreDump loads a fixture's pg_dump into a fresh database of the
// test cluster and returns its URL.
func restoreDump(t *testing.T, ctx context.Context, path string) string {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	dump, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// A dump is many statements: the simple protocol runs them in one go.
	if _, err := conn.Exec(ctx, string(dump), pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("restore %s: %v", path, err)
	}
	return dsn
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
