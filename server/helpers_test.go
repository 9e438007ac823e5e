package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/rein-ai/rein/server/pgtest"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/internal/sqlite"
)

// streamDeadline only keeps a broken test from hanging until go test's own
// timeout; nothing is asserted about time. A stream gets it per wait (for
// its headers, for each event), not for its whole life: a stream a test
// follows from its start to its end lives as long as the test, which
// under load passed two minutes in tests that never waited long for any
// one event (TestReplicasRelayMoreThanAQueueAtOnce, 10 MiB relayed under
// the race detector).
const streamDeadline = 2 * time.Minute

// testWriter sends server logs to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Parallel tests: a test calls t.Parallel, since each has its own server,
// database (a SQLite file in its own directory, or its own PostgreSQL
// database), ports and registry of metrics, and most keep one core busy
// (one writer goroutine, megabytes folded under the race detector) or wait
// on the disk or the database. Run one at a time, the package left the
// second core idle about half the time: under -race it took 476 s, two at
// a time 323 s, and 299 s once TestStateSizeEstimate skipped under -race
// (2-core VM, 2026-12-07). A test stays sequential when it sets one of
// export_test.go's knobs (they refuse a parallel test) or measures the
// heap or the goroutines; go test runs every sequential test before the
// parallel ones start.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// start runs a server on a fresh SQLite file (or dbPath when set in
// opts). With REIN_TEST_DB=postgres the fresh database is a PostgreSQL
// one instead, so the same tests run on both backends.
func start(t testing.TB, opts app.Options) *app.App {
	t.Helper()
	if opts.DBPath == "" && opts.Store == nil {
		if os.Getenv("REIN_TEST_DB") == "postgres" {
			opts.DBPath = pgtest.NewDatabase(t)
		} else {
			opts.DBPath = filepath.Join(t.TempDir(), "rein.db")
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	s, err := app.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// openSQLite opens the SQLite store at path for a test that wraps it (a
// store that fails or waits on demand) and closes it when the test ends.
func openSQLite(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	db, err := sqlite.Open(t.Context(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

type client struct {
	t    testing.TB
	base string
}

func newClient(t testing.TB, s *app.App) *client { return &client{t: t, base: s.URL()} }

// do sends a request and returns the status and body. body may be a
// string (sent as is), nil, or anything else (sent as JSON).
func (c *client) do(method, path string, body any, hdr ...string) (int, []byte) {
	c.t.Helper()
	status, out, _ := c.exchange(method, path, body, hdr...)
	return status, out
}

// exchange is do that returns the answer's headers too.
func (c *client) exchange(method, path string, body any, hdr ...string) (int, []byte, http.Header) {
	c.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, out, resp.Header
}

// must sends a request and fails the test unless the status is want; it
// decodes the body into out when out is not nil.
func (c *client) must(want int, out any, method, path string, body any, hdr ...string) {
	c.t.Helper()
	status, b := c.do(method, path, body, hdr...)
	if status != want {
		c.t.Fatalf("%s %s: status %d, body %s; want %d", method, path, status, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

// wantError checks an error response: status and code.
func (c *client) wantError(status int, code protocol.Code, method, path string, body any, hdr ...string) protocol.ErrorBody {
	c.t.Helper()
	var e protocol.ErrorBody
	c.must(status, &e, method, path, body, hdr...)
	if e.Code != code || e.Message == "" {
		c.t.Fatalf("%s %s: error body %+v; want code %s and a message", method, path, e, code)
	}
	return e
}

// sseEvent is one parsed SSE event.
type sseEvent struct {
	ID, Event, Data string
	HasID           bool
}

// sseStream is a small SSE client: it parses event:, id: and data: lines,
// skips comments and counts pings.
type sseStream struct {
	t      testing.TB
	resp   *http.Response
	r      *bufio.Reader
	cancel context.CancelFunc
	pings  int
	// stuck: a wait passed streamDeadline and cancelled the stream.
	stuck atomic.Bool
}

func (c *client) stream(path string, hdr ...string) *sseStream {
	c.t.Helper()
	st, status := c.tryStream(path, hdr...)
	if status != http.StatusOK {
		c.t.Fatalf("GET %s: status %d; want 200", path, status)
	}
	return st
}

func (c *client) tryStream(path string, hdr ...string) (*sseStream, int) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	headers := time.AfterFunc(streamDeadline, cancel)
	resp, err := http.DefaultClient.Do(req)
	headers.Stop()
	if err != nil {
		cancel()
		c.t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		c.t.Fatalf("GET %s: Content-Type %q", path, ct)
	}
	st := &sseStream{t: c.t, resp: resp, r: bufio.NewReaderSize(resp.Body, 1<<20), cancel: cancel}
	c.t.Cleanup(st.close)
	return st, resp.StatusCode
}

func (s *sseStream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// read returns the next event, or an error (io.EOF when the server ended
// the stream).
func (s *sseStream) read() (sseEvent, error) {
	wait := time.AfterFunc(streamDeadline, func() {
		s.stuck.Store(true)
		s.cancel()
	})
	defer wait.Stop()
	var ev sseEvent
	var data []string
	seen := false
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			if s.stuck.Load() {
				// Not the server's end of the stream (io.EOF, which
				// expectEnd takes for one).
				return ev, fmt.Errorf("no event within %v", streamDeadline)
			}
			if err == io.ErrUnexpectedEOF || errors.Is(err, context.Canceled) {
				err = io.EOF
			}
			return ev, err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if !seen {
				continue
			}
			ev.Data = strings.Join(data, "\n")
			return ev, nil
		}
		if strings.HasPrefix(line, ":") {
			if strings.TrimSpace(line[1:]) == "ping" {
				s.pings++
			}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		seen = true
		switch field {
		case "event":
			ev.Event = value
		case "id":
			ev.ID, ev.HasID = value, true
		case "data":
			data = append(data, value)
		}
	}
}

// next returns the next event and fails the test if the stream ended.
func (s *sseStream) next() sseEvent {
	s.t.Helper()
	ev, err := s.read()
	if err != nil {
		s.t.Fatalf("stream ended: %v", err)
	}
	return ev
}

// expectEnd reads until the server ends the stream.
func (s *sseStream) expectEnd() {
	s.t.Helper()
	for {
		if _, err := s.read(); err != nil {
			if !errors.Is(err, io.EOF) {
				s.t.Fatalf("stream failed instead of ending: %v", err)
			}
			return
		}
	}
}

// model is a client-side view of a session's artifacts built from the
// artifact stream the way a real client builds it.
type model struct {
	t      testing.TB
	arts   map[int64]*protocol.Artifact
	lastID string
	rev    int64 // snapshot_complete's rev
	full   bool  // snapshot_complete's full
	// replayed: the seqs of the replay readSnapshot is reading.
	replayed map[int64]bool
}

func newModel(t testing.TB) *model { return &model{t: t, arts: map[int64]*protocol.Artifact{}} }

// apply folds one artifact stream event in; it reports whether it was
// snapshot_complete.
func (m *model) apply(ev sseEvent) bool {
	m.t.Helper()
	if ev.HasID {
		m.lastID = ev.ID
	}
	switch ev.Event {
	case protocol.SSEArtifactSnapshot, protocol.SSEArtifactCreated:
		var p protocol.ArtifactPayload
		if err := json.Unmarshal([]byte(ev.Data), &p); err != nil {
			m.t.Fatalf("%s: %v", ev.Event, err)
		}
		if ev.ID != itoa(p.Artifact.Rev) {
			m.t.Fatalf("%s id %s but artifact rev %d", ev.Event, ev.ID, p.Artifact.Rev)
		}
		if ev.Event == protocol.SSEArtifactCreated && m.arts[p.Artifact.Seq] != nil {
			m.t.Fatalf("artifact_created for seq %d the client already has", p.Artifact.Seq)
		}
		m.arts[p.Artifact.Seq] = p.Artifact
		if m.replayed != nil {
			m.replayed[p.Artifact.Seq] = true
		}
	case protocol.SSEArtifactUpdated:
		var u protocol.ArtifactUpdate
		if err := json.Unmarshal([]byte(ev.Data), &u); err != nil {
			m.t.Fatalf("artifact_updated: %v", err)
		}
		a := m.arts[u.Seq]
		if a == nil {
			m.t.Fatalf("artifact_updated for unknown seq %d", u.Seq)
		}
		rev := atoi(m.t, ev.ID)
		if rev <= a.Rev {
			m.t.Fatalf("artifact_updated rev %d applied twice (artifact at rev %d)", rev, a.Rev)
		}
		if err := u.Apply(a, rev); err != nil {
			m.t.Fatal(err)
		}
	case protocol.SSESnapshotComplete:
		var c protocol.SnapshotComplete
		if err := json.Unmarshal([]byte(ev.Data), &c); err != nil {
			m.t.Fatal(err)
		}
		m.rev, m.full = c.Rev, c.Full
		if c.Full && m.replayed != nil {
			// What the client held that a full replay did not send is
			// no longer the session's.
			for seq := range m.arts {
				if !m.replayed[seq] {
					delete(m.arts, seq)
				}
			}
		}
		m.replayed = nil
		return true
	default:
		m.t.Fatalf("unexpected artifact stream event %q", ev.Event)
	}
	return false
}

// readSnapshot applies events up to and including snapshot_complete.
func (m *model) readSnapshot(s *sseStream) {
	m.t.Helper()
	m.replayed = map[int64]bool{}
	for !m.apply(s.next()) {
	}
}

// readUntilRev applies live events until the model holds revision rev.
func (m *model) readUntilRev(s *sseStream, rev int64) {
	m.t.Helper()
	for m.lastID == "" || atoi(m.t, m.lastID) < rev {
		m.apply(s.next())
	}
}

// equal compares the model with GET /sessions/:id/artifacts.
func (m *model) equal(c *client, id string) {
	m.t.Helper()
	var server []json.RawMessage
	c.must(http.StatusOK, &server, http.MethodGet, "/sessions/"+id+"/artifacts", nil)
	seqs := make([]int64, 0, len(m.arts))
	for seq := range m.arts {
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	var mine []json.RawMessage
	for _, seq := range seqs {
		b, err := json.Marshal(m.arts[seq])
		if err != nil {
			m.t.Fatal(err)
		}
		mine = append(mine, b)
	}
	if !reflect.DeepEqual(normalize(m.t, mine), normalize(m.t, server)) {
		m.t.Fatalf("client model differs from GET /artifacts\nmodel:  %s\nserver: %s", mine, server)
	}
}

func normalize(t testing.TB, list []json.RawMessage) []any {
	t.Helper()
	out := make([]any, len(list))
	for i, b := range list {
		if err := json.Unmarshal(b, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func atoi(t testing.TB, s string) int64 {
	t.Helper()
	var n int64
	if err := json.Unmarshal([]byte(s), &n); err != nil {
		t.Fatalf("id %q is not an integer", s)
	}
	return n
}

// ev builds an event JSON object.
func ev(typ string, kv ...any) map[string]any {
	m := map[string]any{"type": typ}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// nowAndDeferred runs f twice: with each group writing its artifacts
// ("now"), and with every group leaving them to a later settle, so that
// sessions lag ("deferred", materialise.go).
func nowAndDeferred(t *testing.T, f func(t *testing.T)) {
	t.Run("now", f)
	t.Run("deferred", func(t *testing.T) {
		server.DeferEveryGroup(t)
		f(t)
	})
}
