package server_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/internal/postgres"
	"github.com/rein-ai/rein/server/internal/sqlite"
	"github.com/rein-ai/rein/server/pgtest"
	"github.com/rein-ai/rein/server/store"
)

// streamer posts streamed deltas, one POST (one commit group) at a time,
// with strings that exercise JSON escaping: quotes, backslashes, HTML
// characters, control characters, U+2028 and multi-byte runes.
type streamer struct {
	c   *client
	id  string
	seq int
}

var tricky = []string{
	"plain line\n", `quote " and \ backslash` + "\n", "<html> & </html>\n",
	"tab\tcr\r\x01\x1f\n", "sep\u2028para\u2029\n", "héllo wörld ✓ 🙂\n",
}

func (s *streamer) post(events ...map[string]any) {
	s.c.t.Helper()
	for _, e := range events {
		s.seq++
		e["agentSeq"] = s.seq
	}
	s.c.must(http.StatusAccepted, nil, "POST", "/sessions/"+s.id+"/events", events, protocol.HeaderInstance, "i1")
}

// deltas posts n groups, each appending to the text block and the tool's
// output (and, now and then, its input).
func (s *streamer) deltas(n int) {
	s.c.t.Helper()
	for i := range n {
		line := fmt.Sprintf("%d %s", i, tricky[i%len(tricky)])
		evs := []map[string]any{
			ev("text_delta", "id", "m1", "delta", line),
			ev("tool_output_delta", "id", "x", "delta", strings.Repeat(line, 1+i%5)),
			ev("tool_output_delta", "id", "x", "delta", "+"),
		}
		if i%7 == 0 {
			evs = append(evs, ev("tool_input_delta", "id", "x", "delta", line))
		}
		s.post(evs...)
	}
}

// wantArtifacts folds the session's stored event log with the reducer and
// encodes each artifact: exactly what every read must return.
func wantArtifacts(t testing.TB, s *app.App, id string) map[int64][]byte {
	t.Helper()
	log, err := s.Store().Events(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	st := reducer.New()
	for _, le := range log {
		var e protocol.Event
		if err := json.Unmarshal(le.Body, &e); err != nil {
			t.Fatal(err)
		}
		st.Apply(e)
	}
	want := map[int64][]byte{}
	for _, a := range st.Artifacts() {
		want[a.Seq] = mustJSON(t, a)
	}
	return want
}

// checkArtifacts compares GET /artifacts with want byte for byte.
func checkArtifacts(t testing.TB, c *client, id string, want map[int64][]byte) {
	t.Helper()
	var got []json.RawMessage
	c.must(http.StatusOK, &got, "GET", "/sessions/"+id+"/artifacts", nil)
	if len(got) != len(want) {
		t.Fatalf("GET /artifacts: %d artifacts; want %d", len(got), len(want))
	}
	for i, b := range got {
		if w := want[int64(i+1)]; !bytes.Equal(b, w) {
			t.Fatalf("GET /artifacts seq %d differs from the reducer's\ngot  %.300s\nwant %.300s", i+1, b, w)
		}
	}
}

// checkSnapshot opens a stream (resuming after lastID when not "") and
// compares every artifact_snapshot with want byte for byte; it returns
// the number of snapshots and the stream.
func checkSnapshot(t testing.TB, c *client, id, lastID string, want map[int64][]byte) (int, *sseStream) {
	t.Helper()
	var st *sseStream
	if lastID == "" {
		st = c.stream("/sessions/" + id + "/stream")
	} else {
		st = c.stream("/sessions/"+id+"/stream", "Last-Event-ID", lastID)
	}
	n := 0
	for e := st.next(); e.Event != protocol.SSESnapshotComplete; e = st.next() {
		var p protocol.ArtifactPayload
		if err := json.Unmarshal([]byte(e.Data), &p); err != nil {
			t.Fatal(err)
		}
		a := p.Artifact
		if w := want[a.Seq]; e.Data != `{"artifact":`+string(w)+`}` {
			t.Fatalf("snapshot (Last-Event-ID %q) seq %d differs from the reducer's\ngot  %.300s\nwant %.300s", lastID, a.Seq, e.Data, w)
		}
		if e.ID != itoa(a.Rev) {
			t.Fatalf("snapshot id %s for rev %d", e.ID, a.Rev)
		}
		n++
	}
	return n, st
}

// checkModel compares a client model with want byte for byte.
func checkModel(t testing.TB, m *model, want map[int64][]byte) {
	t.Helper()
	if len(m.arts) != len(want) {
		t.Fatalf("client model has %d artifacts; want %d", len(m.arts), len(want))
	}
	for seq, w := range want {
		if got := mustJSON(t, m.arts[seq]); !bytes.Equal(got, w) {
			t.Fatalf("client model seq %d differs from the reducer's\ngot  %.300s\nwant %.300s", seq, got, w)
		}
	}
}

// pendingAppends counts the rows of artifact_appends of a session and the
// artifacts that have any, reading the database file directly.
func pendingAppends(t testing.TB, path, id string) (rows, arts int) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT COUNT(*) FROM artifact_appends WHERE session_id = ?`, id).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT COUNT(*) FROM artifacts WHERE session_id = ? AND appended > 0`, id).Scan(&arts); err != nil {
		t.Fatal(err)
	}
	return rows, arts
}

// toolAppends counts the pending append rows of one artifact, reading the
// database file directly.
func toolAppends(t testing.TB, path, id string, seq int64) (rows int) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT COUNT(*) FROM artifact_appends WHERE session_id = ? AND seq = ?`, id, seq).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

// A long streamed text and tool output, over many commit groups, are
// stored as appends, and every read returns exactly the reducer's
// artifacts: GET /artifacts, a fresh snapshot, a resume mid-stream, a live
// client, across a restart; a set writes the whole body and drops the
// appends; delete removes them.
func TestStreamedArtifactsReadBack(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rein.db")
	s1, err := app.New(app.Options{DBPath: path})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s1)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	live := newModel(t)
	liveSt := c.stream("/sessions/a/stream")
	live.readSnapshot(liveSt)

	sa := &streamer{c: c, id: "a"}
	sa.post(
		ev("turn_started", "turnId", "t1", "source", "user"),
		ev("user_message", "text", "stream please"),
		ev("tool_call_start", "id", "x", "name", "sh", "input", map[string]any{"cmd": "make", "a": []any{1, 2.5}}),
	)
	sa.deltas(150)
	mid := itoa(storedRev(t, s1, "a"))
	sa.deltas(150)

	want := wantArtifacts(t, s1, "a")
	if rows, arts := pendingAppends(t, path, "a"); rows == 0 || arts != 2 {
		t.Fatalf("%d pending append rows over %d artifacts; want some, on the text and the tool", rows, arts)
	}
	checkArtifacts(t, c, "a", want)
	if n, _ := checkSnapshot(t, c, "a", "", want); n != len(want) {
		t.Fatalf("fresh snapshot: %d artifacts; want %d", n, len(want))
	}
	if n, _ := checkSnapshot(t, c, "a", mid, want); n != 2 {
		t.Fatalf("resume from %s: %d snapshots; want the text and the tool", mid, n)
	}
	live.readUntilRev(liveSt, storedRev(t, s1, "a"))
	checkModel(t, live, want)

	// Restart: the pending appends are read back as they were, and the
	// re-folded writer goes on appending.
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	liveSt.expectEnd()
	s2 := start(t, app.Options{DBPath: path})
	c = newClient(t, s2)
	sa.c = c
	checkArtifacts(t, c, "a", want)
	checkSnapshot(t, c, "a", mid, want)
	liveSt = c.stream("/sessions/a/stream", "Last-Event-ID", live.lastID)
	live.readSnapshot(liveSt)
	sa.deltas(100)
	want = wantArtifacts(t, s2, "a")
	if rows, _ := pendingAppends(t, path, "a"); rows == 0 {
		t.Fatal("no pending appends after the restart")
	}
	checkArtifacts(t, c, "a", want)
	checkSnapshot(t, c, "a", "", want)
	checkSnapshot(t, c, "a", mid, want)
	live.readUntilRev(liveSt, storedRev(t, s2, "a"))
	checkModel(t, live, want)

	// Sets write whole bodies: a final text that differs from the deltas,
	// the tool's end. No appends are left.
	sa.post(
		ev("text_end", "id", "m1", "text", "the final text, not the deltas"),
		ev("tool_call_end", "id", "x", "status", "completed", "exitCode", 0),
	)
	want = wantArtifacts(t, s2, "a")
	if rows, arts := pendingAppends(t, path, "a"); rows != 0 || arts != 0 {
		t.Fatalf("after the sets: %d pending append rows over %d artifacts; want none", rows, arts)
	}
	checkArtifacts(t, c, "a", want)
	checkSnapshot(t, c, "a", mid, want)
	live.readUntilRev(liveSt, storedRev(t, s2, "a"))
	checkModel(t, live, want)

	// Delete cascades to the appends.
	c.must(http.StatusCreated, nil, "POST", "/sessions/b", nil)
	sb := &streamer{c: c, id: "b"}
	sb.post(ev("tool_call_start", "id", "x", "name", "sh"))
	sb.deltas(20)
	if rows, _ := pendingAppends(t, path, "b"); rows == 0 {
		t.Fatal("no pending appends in session b")
	}
	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/b", nil)
	if rows, arts := pendingAppends(t, path, "b"); rows != 0 || arts != 0 {
		t.Fatalf("after delete: %d append rows, %d artifacts; want none", rows, arts)
	}
}

// failingStore fails Commit while fail is set.
type failingStore struct {
	server.Store
	fail atomic.Bool
}

func (f *failingStore) Commit(ctx context.Context, ops []server.StoreOp) error {
	if f.fail.Load() {
		return errors.New("injected commit failure")
	}
	return f.Store.Commit(ctx, ops)
}

// A failed commit in the middle of a stream leaves nothing half done: the
// events are not stored, the writer forgets what it believed stored, and
// the retried events end in exactly the reducer's artifacts.
func TestStreamedArtifactsCommitFailure(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "rein.db")
	db, err := sqlite.Open(t.Context(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	fs := &failingStore{Store: db}
	s := start(t, app.Options{Store: fs})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	sa := &streamer{c: c, id: "a"}
	sa.post(ev("tool_call_start", "id", "x", "name", "sh"))
	sa.deltas(30)
	if rows, _ := pendingAppends(t, path, "a"); rows == 0 {
		t.Fatal("no pending appends before the failure")
	}

	fs.fail.Store(true)
	failed := []map[string]any{
		ev("text_delta", "id", "m1", "delta", "lost? "),
		ev("tool_output_delta", "id", "x", "delta", "retried\n"),
	}
	for i, e := range failed {
		e["agentSeq"] = sa.seq + 1 + i
	}
	c.wantError(http.StatusServiceUnavailable, protocol.CodeUnavailable, "POST", "/sessions/a/events", failed, protocol.HeaderInstance, "i1")
	fs.fail.Store(false)
	checkArtifacts(t, c, "a", wantArtifacts(t, s, "a"))

	// agentd retries the same events; they are new to the store.
	var res protocol.EventsAccepted
	c.must(http.StatusAccepted, &res, "POST", "/sessions/a/events", failed, protocol.HeaderInstance, "i1")
	if res.Duplicates != 0 {
		t.Fatalf("retry after a failed commit: %+v", res)
	}
	sa.seq += len(failed)
	sa.deltas(30)
	want := wantArtifacts(t, s, "a")
	checkArtifacts(t, c, "a", want)
	checkSnapshot(t, c, "a", "", want)
	if !bytes.Contains(want[1], []byte(`+retried\n0 plain line\n`)) {
		t.Fatalf("the retried delta is not where it belongs: %.200s", want[1])
	}
}

// Streamed text holding NUL (U+0000, "\u0000" in JSON: a tool's output
// of a binary file) is stored, on either backend. PostgreSQL's text type
// cannot hold NUL, so appended as it came, it failed the commit: every
// retry of the batch got 503 again, the session took nothing more, and
// the other sessions in the same group commits failed with it.
func TestStreamedNULCharacters(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/n", nil)
	live := newModel(t)
	liveSt := c.stream("/sessions/n/stream")
	live.readSnapshot(liveSt)
	sn := &streamer{c: c, id: "n"}
	sn.post(
		ev("tool_call_start", "id", "x", "name", "sh"),
		ev("text_delta", "id", "m1", "delta", "text "),
		ev("tool_output_delta", "id", "x", "delta", "output "),
	)
	sn.deltas(3) // stored as appends from here on
	sn.post(ev("text_delta", "id", "m1", "delta", "a\x00b"))
	sn.post(ev("tool_output_delta", "id", "x", "delta", "\x7fELF\x02\x01\x01\x00\x00\x00"))
	sn.deltas(3)
	want := wantArtifacts(t, s, "n")
	checkArtifacts(t, c, "n", want)
	checkSnapshot(t, c, "n", "", want)
	live.readUntilRev(liveSt, storedRev(t, s, "n"))
	checkModel(t, live, want)
}

// opsStore is the SQLite store counting what its committed groups wrote
// to artifacts (artifactWrites). It embeds the store itself, so the
// writer sees every optional interface SQLite implements.
type opsStore struct {
	*sqlite.Store
	artifactWrites
}

func (s *opsStore) Commit(ctx context.Context, ops []store.Op) error {
	if err := s.Store.Commit(ctx, ops); err != nil {
		return err
	}
	s.count(ops)
	return nil
}

// pgOpsStore is opsStore on PostgreSQL.
type pgOpsStore struct {
	*postgres.Store
	artifactWrites
}

func (s *pgOpsStore) Commit(ctx context.Context, ops []store.Op) error {
	if err := s.Store.Commit(ctx, ops); err != nil {
		return err
	}
	s.count(ops)
	return nil
}

// artifactWrites counts what committed groups wrote to artifacts: bytes
// of whole bodies, bytes of appended text, and the appended texts that
// held NUL.
type artifactWrites struct {
	mu                          sync.Mutex
	put, heads, appended, nulls int
}

func (s *artifactWrites) count(ops []store.Op) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range ops {
		switch op := op.(type) {
		case store.PutArtifacts:
			for _, a := range op.Artifacts {
				s.put += len(a.Body)
			}
		case store.PutArtifactHeads:
			for _, a := range op.Artifacts {
				s.heads += len(a.Body)
			}
		case store.AppendArtifacts:
			for _, a := range op.Appends {
				for _, f := range a.Fields {
					s.appended += len(f.Text)
					if strings.IndexByte(f.Text, 0) >= 0 {
						s.nulls++
					}
				}
			}
		}
	}
}

func (s *artifactWrites) written() (put, heads, appended, nulls int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.put, s.heads, s.appended, s.nulls
}

// countedServer starts a server on a fresh SQLite file that counts its
// artifact writes (opsStore) and creates session id on it.
func countedServer(t *testing.T, id string) (path string, rs *opsStore, s *app.App, c *client) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "rein.db")
	rs, s, c = countedOn(t, path)
	c.must(http.StatusCreated, nil, "POST", "/sessions/"+id, nil)
	return path, rs, s, c
}

// countedOn starts a server on the SQLite file at path that counts its
// artifact writes.
func countedOn(t *testing.T, path string) (*opsStore, *app.App, *client) {
	t.Helper()
	rs := &opsStore{Store: openSQLite(t, path)}
	s := start(t, app.Options{Store: rs})
	return rs, s, newClient(t, s)
}

// restartCounted closes a counted server and its store and starts another
// on the same file.
func restartCounted(t *testing.T, s *app.App, rs *opsStore, path string) (*opsStore, *app.App, *client) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rs.Close(); err != nil {
		t.Fatal(err)
	}
	return countedOn(t, path)
}

// A tool's binary output (NUL in most deltas: cat of an executable) is
// stored as appends, not by rewriting the whole growing artifact at every
// commit: that made such a stream quadratic in bytes written. On SQLite a
// TEXT value holds NUL; on PostgreSQL, whose text cannot, such an append
// goes in a bytea column (migration 0011), and until it did, every commit
// of a 64 MB binary output wrote all of it again. The whole bodies written
// add up to less than twice the artifact's final size, and every read
// returns exactly the fold of the log, across a restart too.
func TestStreamedBinaryOutputAppends(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		path, rs, s, c := countedServer(t, "b")
		binaryOutputAppends(t, s, c, &rs.artifactWrites,
			func() (int, int) { return pendingAppends(t, path, "b") },
			func() *client { _, _, c := restartCounted(t, s, rs, path); return c })
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.NewDatabase(t)
		rs := &pgOpsStore{Store: openPostgres(t, dsn)}
		s := start(t, app.Options{Store: rs})
		c := newClient(t, s)
		c.must(http.StatusCreated, nil, "POST", "/sessions/b", nil)
		binaryOutputAppends(t, s, c, &rs.artifactWrites,
			func() (int, int) { return pgPendingAppends(t, dsn, "b") },
			func() *client {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				rs.Close()
				return newClient(t, start(t, app.Options{Store: openPostgres(t, dsn)}))
			})
	})
}

// binaryOutputAppends streams a binary tool output into session "b" of s,
// then checks what rs counted, the appends pending in the database, and
// every read, before and after restart.
func binaryOutputAppends(t *testing.T, s *app.App, c *client, rs *artifactWrites, pending func() (rows, arts int), restart func() *client) {
	sb := &streamer{c: c, id: "b"}
	sb.post(ev("tool_call_start", "id", "x", "name", "sh", "input", map[string]any{"cmd": "cat a.out"}))
	elf := "\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00>\x00\x01\x00\x00\x00"
	const n = 300
	for i := range n {
		sb.post(ev("tool_output_delta", "id", "x", "delta", fmt.Sprintf("%s%d\x00é\n", elf, i)))
	}
	want := wantArtifacts(t, s, "b")
	checkArtifacts(t, c, "b", want)
	checkSnapshot(t, c, "b", "", want)

	final := len(want[1])
	put, _, appended, nulls := rs.written()
	if nulls < n/2 {
		t.Errorf("%d appended texts held NUL over %d deltas that all did; want most", nulls, n)
	}
	if put >= 2*final {
		t.Errorf("whole bodies written: %d bytes (%d appended) for a %d-byte artifact; want under twice its size", put, appended, final)
	}
	if rows, arts := pending(); rows == 0 || arts != 1 {
		t.Errorf("%d pending append rows over %d artifacts; want some, on the tool", rows, arts)
	}

	// The appends holding NUL read back from the database as they were.
	c = restart()
	checkArtifacts(t, c, "b", want)
	checkSnapshot(t, c, "b", "", want)
}

// pgPendingAppends is pendingAppends on the PostgreSQL database at dsn.
func pgPendingAppends(t testing.TB, dsn, id string) (rows, arts int) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), `SELECT COUNT(*) FROM artifact_appends WHERE session_id = $1`, id).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(context.Background(), `SELECT COUNT(*) FROM artifacts WHERE session_id = $1 AND appended > 0`, id).Scan(&arts); err != nil {
		t.Fatal(err)
	}
	return rows, arts
}

// A tool output past WholeBodyMax is never written whole again: its text
// goes in as appends, its close writes its head (the body with the text
// the store already held) and keeps them, and every read, live, replayed,
// resumed or after a restart, is still exactly the fold of the log, as is
// a late change that restores it from the store. A whole body written at
// the close handed the database the whole output at once: a 256 MB output
// took the server to 1.2 GiB. So too when every group leaves its
// artifacts to a later settle, which writes what several groups did.
func TestBigOutputClosesWithoutItsText(t *testing.T) { nowAndDeferred(t, bigOutputCloses) }

func bigOutputCloses(t *testing.T) {
	path, rs, s, c := countedServer(t, "g")
	live := newModel(t)
	liveSt := c.stream("/sessions/g/stream")
	live.readSnapshot(liveSt)
	sg := &streamer{c: c, id: "g"}
	sg.post(ev("turn_started", "turnId", "t1", "source", "user"), ev("tool_call_start", "id", "x", "name", "sh", "input", map[string]any{"cmd": "cat big.log"}))
	chunk := strings.Repeat(strings.Join(tricky, ""), 64<<10/len(strings.Join(tricky, "")))
	const groups = 40
	for i := range groups {
		sg.post(ev("tool_output_delta", "id", "x", "delta", fmt.Sprintf("%d:%s", i, chunk)))
		if i == groups/2 {
			sg.post(ev("text_delta", "id", "m1", "delta", "half way\n"))
		}
	}
	mid := itoa(storedRev(t, s, "g"))
	sg.post(ev("tool_call_end", "id", "x", "status", "completed"), ev("text_delta", "id", "m1", "delta", "done"))
	want := wantArtifacts(t, s, "g")
	output := 0
	for _, b := range want {
		output = max(output, len(b))
	}
	if output < groups*len(chunk) || !bytes.Contains(want[2], []byte(`"status":"completed"`)) {
		t.Fatalf("the tool's body is %d bytes, %.80s; want a completed output of %d", output, want[2], groups*len(chunk))
	}
	checkArtifacts(t, c, "g", want)
	checkSnapshot(t, c, "g", "", want)
	if n, _ := checkSnapshot(t, c, "g", mid, want); n != 2 {
		t.Errorf("a resume from rev %s replayed %d artifacts; want the tool and the text", mid, n)
	}
	live.readUntilRev(liveSt, storedRev(t, s, "g"))
	checkModel(t, live, want)

	put, heads, appended, _ := rs.written()
	// Whole bodies: the tool's doublings up to WholeBodyMax and the small
	// artifacts; the close wrote a head of about WholeBodyMax. About: the
	// policy weighs the body it last wrote as JSON and the text since as
	// text, so the last whole body's JSON reaches WholeBodyMax times the
	// text's escaping (1.5 for tricky's quotes, control characters and
	// U+2028), and how near it comes depends on how the groups fell: a
	// settle that took 12 chunks at once, on a busy machine, wrote a
	// whole body and then a head of about 1.19 MB each.
	quoted, _ := json.Marshal(chunk)
	bodyMax := server.WholeBodyMax * len(quoted) / len(chunk)
	if put > 2*bodyMax+64<<10 || heads == 0 || heads > bodyMax+64<<10 {
		t.Errorf("for a %d-byte output: %d bytes of whole bodies, %d of heads, %d appended; want whole bodies under %d and one head under %d",
			output, put, heads, appended, 2*bodyMax+64<<10, bodyMax+64<<10)
	}
	if rows := toolAppends(t, path, "g", 2); rows == 0 {
		t.Errorf("%d pending append rows on the tool after its close; want its appends kept", rows)
	}

	_, s2, c := restartCounted(t, s, rs, path)
	checkArtifacts(t, c, "g", want)
	checkSnapshot(t, c, "g", "", want)
	// A late end changes the released tool: it is restored from the store,
	// appends merged, and written as the fold has it.
	sg = &streamer{c: c, id: "g", seq: sg.seq}
	sg.post(ev("tool_call_end", "id", "x", "status", "failed"))
	want = wantArtifacts(t, s2, "g")
	if !bytes.Contains(want[2], []byte(`"status":"failed"`)) {
		t.Fatalf("the late end left %.80s", want[2])
	}
	checkArtifacts(t, c, "g", want)
	checkSnapshot(t, c, "g", "", want)
}

// A server restarted while a big output streams knows nothing of how the
// store holds it (its state is folded from the log): the output's next
// change writes its body without the text and the text as appends, a
// chunk at a time, rather than the whole text at once, and its close
// writes a small head. Every read is still the fold of the log.
func TestBigOutputAfterRestart(t *testing.T) {
	t.Parallel()
	path, rs, s, c := countedServer(t, "r")
	sr := &streamer{c: c, id: "r"}
	sr.post(ev("turn_started", "turnId", "t1", "source", "user"), ev("tool_call_start", "id", "x", "name", "sh"))
	chunk := strings.Repeat(strings.Join(tricky, ""), 64<<10/len(strings.Join(tricky, "")))
	text := 0 // the output's length
	for i := range 40 {
		d := fmt.Sprintf("%d:%s", i, chunk)
		sr.post(ev("tool_output_delta", "id", "x", "delta", d))
		text += len(d)
	}
	rs, s, c = restartCounted(t, s, rs, path)
	sr = &streamer{c: c, id: "r", seq: sr.seq}
	for i := range 8 {
		d := fmt.Sprintf("after %d:%s", i, chunk)
		sr.post(ev("tool_output_delta", "id", "x", "delta", d))
		text += len(d)
	}
	sr.post(ev("tool_call_end", "id", "x", "status", "completed"))
	want := wantArtifacts(t, s, "r")
	checkArtifacts(t, c, "r", want)
	checkSnapshot(t, c, "r", "", want)
	put, heads, appended, _ := rs.written()
	// All of the text, the part stored before the restart too, is
	// appended again; no body holds any of it.
	if put > 4<<10 || heads > 4<<10 || appended != text {
		t.Errorf("after the restart, for %d bytes of output: %d bytes of whole bodies, %d of heads, %d appended; want the text appended and the bodies small",
			text, put, heads, appended)
	}
	_, _, c = restartCounted(t, s, rs, path)
	checkArtifacts(t, c, "r", want)
	checkSnapshot(t, c, "r", "", want)
}
