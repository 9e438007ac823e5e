package server_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/pgtest"
)

// A session whose stored artifacts an older reducer folded into more
// artifacts than the current one folds its log into keeps every one of
// them: the next artifact goes after the stored ones, not over one.
//
// testdata/upgrade/notice-split-a7be227.db.gz is a database rein-server
// a7be227 wrote (the commit before 43f7d0a, "a notice does not split the
// open id-less text block"), stopped with SIGTERM:
//
//	rein-server --port 0 --db rein.db
//	curl -XPOST $URL/sessions/s1 -d '{}'
//	curl -XPOST $URL/sessions/s1/events -H 'Rein-Instance: i1' -d '[
//	  {"type":"turn_started","turnId":"t1","source":"user","agentSeq":1},
//	  {"type":"text_delta","delta":"Hello, ","agentSeq":2},
//	  {"type":"notice","level":"warning","message":"agentd: no space left","code":"outbox_no_space","agentSeq":3},
//	  {"type":"text_delta","delta":"world","agentSeq":4},
//	  {"type":"turn_completed","turnId":"t1","stopReason":"end_turn","agentSeq":5}]'
//	gzip -9 rein.db
//
// That build stored four artifacts (the turn, "Hello, ", the notice,
// "world"), the current reducer folds the same log into three (the
// turn, "Hello, world", the notice), and the first artifact of the next
// turn was written at seq 4, over "world": the transcript lost the
// agent's words, and a client holding seq 4 had it replaced.
func TestRefoldWithFewerArtifactsKeepsTheStoredOnes(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "rein.db")
	gunzipFile(t, "testdata/upgrade/notice-split-a7be227.db.gz", db)
	s := start(t, app.Options{DBPath: db})
	c := newClient(t, s)

	var before []protocol.Artifact
	c.must(http.StatusOK, &before, "GET", "/sessions/s1/artifacts", nil)
	if len(before) != 4 {
		t.Fatalf("the old build's database holds %d artifacts; want 4", len(before))
	}
	var rec protocol.Session
	c.must(http.StatusOK, &rec, "GET", "/sessions/s1", nil)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/s1/events", `[
		{"type":"turn_started","turnId":"t2","source":"user","agentSeq":6},
		{"type":"text_delta","delta":"Next","agentSeq":7}]`, "Rein-Instance", "i1")

	var after []protocol.Artifact
	c.must(http.StatusOK, &after, "GET", "/sessions/s1/artifacts", nil)
	for i, old := range before {
		if i >= len(after) || !sameArtifact(t, &after[i], &old) {
			t.Errorf("stored artifact %d was %s before the next turn; now %s", old.Seq, jsonString(t, old), jsonAt(t, after, i))
		}
	}
	if len(after) != 6 || after[4].Type != protocol.ArtifactTurn || after[5].Type != protocol.ArtifactAssistantText {
		t.Fatalf("after the next turn's events: %s\nwant the four stored artifacts, then the turn t2 and its text", jsonString(t, after))
	}
}

func sameArtifact(t *testing.T, a, b *protocol.Artifact) bool {
	t.Helper()
	return jsonString(t, a) == jsonString(t, b)
}

func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func jsonAt(t *testing.T, list []protocol.Artifact, i int) string {
	t.Helper()
	if i >= len(list) {
		return "gone"
	}
	return jsonString(t, list[i])
}

// gunzipFile writes the gunzipped content of src to dst.
func gunzipFile(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.WriteFile(dst, gunzip(t, src), 0o600); err != nil {
		t.Fatal(err)
	}
}

// gunzip returns the gunzipped content of src.
func gunzip(t *testing.T, src string) []byte {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("gunzip %s: %v", src, err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip %s: %v", src, err)
	}
	return out
}

// On PostgreSQL too, a refold that ends below the stored revision goes on
// above it (TestFoldBehindTheStoredRevisionGoesOnAboveIt on SQLite): a
// server of the current build started on a database an older one wrote
// (stop the old, start the new, or a rolling upgrade) numbered the next
// change at the stored revision, which clients already held.
//
// testdata/upgrade/notice-split-a7be227.pg.sql.gz holds the traffic of
// TestRefoldWithFewerArtifactsKeepsTheStoredOnes, written by rein-server
// a7be227 on a PostgreSQL database (--db postgres://...), stopped with
// SIGTERM and dumped with pg_dump --inserts --no-owner --no-privileges
// --no-comments (its psql meta-commands, lines starting with a
// backslash, removed), then gzip -9. That build stored revision 9; the
// current reducer folds the log to 8, and the next turn's artifact was
// stored at revision 9: a follower resuming from 9 never got it.
func TestRefoldBelowTheStoredRevisionOnPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	dump := gunzip(t, "testdata/upgrade/notice-split-a7be227.pg.sql.gz")
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	// A dump is many statements: the simple protocol runs them in one go.
	if _, err := conn.Exec(t.Context(), string(dump), pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("restore the dump: %v", err)
	}
	conn.Close(t.Context())

	s := start(t, app.Options{DBPath: dsn})
	c := newClient(t, s)
	var before []protocol.Artifact
	c.must(http.StatusOK, &before, "GET", "/sessions/s1/artifacts", nil)
	var stored int64
	for _, a := range before {
		stored = max(stored, a.Rev)
	}
	st := c.stream("/sessions/s1/stream", "Last-Event-ID", itoa(stored))
	for st.next().Event != protocol.SSESnapshotComplete {
	}
	c.must(http.StatusAccepted, nil, "POST", "/sessions/s1/events", `[
		{"type":"turn_started","turnId":"t2","source":"user","agentSeq":6},
		{"type":"text_delta","delta":"Next","agentSeq":7}]`, "Rein-Instance", "i1")
	ev := st.next()
	var got protocol.ArtifactPayload
	if err := json.Unmarshal([]byte(ev.Data), &got); err != nil {
		t.Fatalf("%s %s: %v", ev.Event, ev.Data, err)
	}
	if rev, _ := strconv.ParseInt(ev.ID, 10, 64); rev <= stored || got.Artifact == nil || got.Artifact.Type != protocol.ArtifactTurn {
		t.Fatalf("after a resume from the stored revision %d the stream sent %s %s %s; want the turn t2 above it", stored, ev.ID, ev.Event, ev.Data)
	}
	var after []protocol.Artifact
	c.must(http.StatusOK, &after, "GET", "/sessions/s1/artifacts", nil)
	for _, a := range after[len(before):] {
		if a.Rev <= stored {
			t.Errorf("new artifact %s has revision %d, at or below the stored %d", jsonString(t, a), a.Rev, stored)
		}
	}
}
