package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/store"
)

// tools returns events starting n tool calls x<from>.. with some output.
func tools(from, n int) []any {
	var out []any
	for i := from; i < from+n; i++ {
		id := fmt.Sprint("x", i)
		out = append(out, ev("tool_call_start", "id", id, "name", "sh"), ev("tool_output_delta", "id", id, "delta", "out "+id))
	}
	return out
}

// A replay read two artifacts at a time while the session changes between
// its pages: an artifact already replayed is appended to, one not replayed
// yet is appended to, and a new one is created. The client's model built
// from the pages, snapshot_complete's revision and the live records above
// it equals the stored artifacts: every change arrives exactly once
// (model.apply fails on an update applied twice or to an artifact the
// client lacks).
func TestPagedReplayIsExact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		after int64
	}{{"full", 0}, {"resume", 3}, {"after the head", 1000}} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, app.Options{ReplayPage: 2})
			c := newClient(t, s)
			c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
			c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", tools(1, 5))
			ctx := context.Background()
			m := newModel(t)
			if tc.after > 0 && tc.after < storedRev(t, s, "a") {
				// A resuming client holds what the stream gave it up
				// to after.
				arts, err := s.Store().Artifacts(ctx, "a")
				if err != nil {
					t.Fatal(err)
				}
				for _, a := range arts {
					if a.Rev <= tc.after {
						m.apply(snapshotEvent(a))
					}
				}
			}
			f, err := s.Server.WatchArtifacts(ctx, "a", tc.after)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Live.Close()
			pages := 0
			rev, err := f.Replay(ctx, func(page []store.Artifact) error {
				if len(page) > 2 {
					t.Fatalf("a page of %d artifacts; the limit is 2", len(page))
				}
				for _, a := range page {
					m.apply(snapshotEvent(a))
				}
				pages++
				if pages == 1 {
					// Committed before the next page is read.
					c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", append([]any{
						ev("tool_output_delta", "id", "x1", "delta", " more x1"),
						ev("tool_output_delta", "id", "x5", "delta", " more x5"),
					}, tools(6, 1)...))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if pages < 3 {
				t.Fatalf("%d pages; the replay was not paged", pages)
			}
			m.apply(sseEvent{ID: fmt.Sprint(rev), HasID: true, Event: protocol.SSESnapshotComplete, Data: fmt.Sprintf(`{"rev":%d}`, rev)})
			// One more change after the replay arrives live.
			c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("tool_output_delta", "id", "x2", "delta", " live")})
			head := storedRev(t, s, "a")
			for m.lastID == "" || atoi(t, m.lastID) < head {
				<-f.Live.Ready()
				for _, msg := range f.Live.Take() {
					if msg.Seq <= rev {
						continue // in the replay
					}
					m.apply(sseEvent{ID: fmt.Sprint(msg.Seq), HasID: true, Event: msg.Event, Data: string(msg.Data)})
				}
			}
			m.equal(c, "a")
			for _, want := range []string{"out x1 more x1", "out x5 more x5", "out x2 live", "out x6"} {
				if !strings.Contains(string(mustJSON(t, m.arts)), want) {
					t.Fatalf("model lacks %q: %s", want, mustJSON(t, m.arts))
				}
			}
		})
	}
}

func snapshotEvent(a store.Artifact) sseEvent {
	return sseEvent{ID: fmt.Sprint(a.Rev), HasID: true, Event: protocol.SSEArtifactSnapshot, Data: `{"artifact":` + string(a.Body) + `}`}
}

// GET /artifacts without parameters is still the whole list in seq order,
// byte for byte what encoding/json gives, though read a page at a time;
// with after and limit it pages by revision with a cursor.
func TestArtifactsListPaged(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{ReplayPage: 2})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.must(http.StatusCreated, nil, "POST", "/sessions/empty", nil)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", append(tools(1, 4), ev("text_delta", "delta", "<b>&</b>")))
	// x1 changes last, so revision order differs from seq order.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", []any{ev("tool_output_delta", "id", "x1", "delta", "!")})
	stored, err := s.Store().Artifacts(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	bodies := make([]json.RawMessage, len(stored))
	for i, a := range stored {
		bodies[i] = a.Body
	}
	want, _ := json.Marshal(bodies)
	for _, id := range []string{"a", "empty"} {
		code, got := c.do("GET", "/sessions/"+id+"/artifacts", nil)
		if id == "empty" {
			want = []byte("[]")
		}
		if code != http.StatusOK || string(got) != string(want)+"\n" {
			t.Fatalf("GET %s/artifacts: %d\n%s\nwant\n%s", id, code, got, want)
		}
	}

	type page struct {
		Artifacts []protocol.Artifact `json:"artifacts"`
		Rev       int64               `json:"rev"`
		Next      *int64              `json:"next"`
	}
	head := storedRev(t, s, "a")
	var revs []int64
	seen := map[int64]bool{}
	after := "0"
	for n := 0; ; n++ {
		if n > len(stored) {
			t.Fatal("the pages do not end")
		}
		var p page
		c.must(http.StatusOK, &p, "GET", "/sessions/a/artifacts?limit=2&after="+after, nil)
		if len(p.Artifacts) > 2 || p.Rev != head {
			t.Fatalf("page after %s: %d artifacts, rev %d (head %d)", after, len(p.Artifacts), p.Rev, head)
		}
		for _, a := range p.Artifacts {
			revs = append(revs, a.Rev)
			seen[a.Seq] = true
		}
		if p.Next == nil {
			break
		}
		after = fmt.Sprint(*p.Next)
	}
	if len(seen) != len(stored) || len(revs) != len(stored) {
		t.Fatalf("pages held seqs %v, revs %v; want each of %d artifacts once", seen, revs, len(stored))
	}
	for i := 1; i < len(revs); i++ {
		if revs[i] <= revs[i-1] {
			t.Fatalf("revisions out of order: %v", revs)
		}
	}
	var p page
	c.must(http.StatusOK, &p, "GET", fmt.Sprintf("/sessions/a/artifacts?after=%d", revs[len(revs)-2]), nil)
	if len(p.Artifacts) != 1 || p.Artifacts[0].Seq != 1 || p.Next != nil {
		t.Fatalf("the last change: %+v", p)
	}
	for _, q := range []string{"limit=0", "limit=5001", "limit=x", "after=-1", "after=1.5"} {
		e := c.wantError(http.StatusBadRequest, protocol.CodeInvalid, "GET", "/sessions/a/artifacts?"+q, nil)
		if name, _, _ := strings.Cut(q, "="); !strings.Contains(e.Message, name) {
			t.Fatalf("%s: %q does not name %s", q, e.Message, name)
		}
	}
	c.wantError(http.StatusNotFound, protocol.CodeNotFound, "GET", "/sessions/ghost/artifacts", nil)
	c.wantError(http.StatusNotFound, protocol.CodeNotFound, "GET", "/sessions/ghost/artifacts?limit=1", nil)
}
