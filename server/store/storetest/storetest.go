package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/store"
)

// Run runs every conformance test, each on a fresh store from newStore.
// newStore registers the store's cleanup itself (t.Cleanup).
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"SessionsOrder", testSessionsOrder},
		{"NotFound", testNotFound},
		{"CommitIsAtomic", testCommitIsAtomic},
		{"EventsInOrder", testEventsInOrder},
		{"EventsOfEverySize", testEventsOfEverySize},
		{"ArtifactsSinceIsExact", testArtifactsSinceIsExact},
		{"ArtifactPages", testArtifactPages},
		{"ArtifactPagesByBytes", testArtifactPagesByBytes},
		{"AppendsMergedOnRead", testAppendsMergedOnRead},
		{"AppendsHoldingNUL", testAppendsHoldingNUL},
		{"HeadsKeepAppends", testHeadsKeepAppends},
		{"Commands", testCommands},
		{"CommandKeys", testCommandKeys},
		{"SessionState", testSessionState},
		{"InstancesIdempotent", testInstancesIdempotent},
		{"SandboxTokens", testSandboxTokens},
		{"CascadeDelete", testCascadeDelete},
		{"Ping", testPing},
		{"TurnDigests", testTurnDigests},
		{"EventPages", testEventPages},
		{"EventPagesByBytes", testEventPagesByBytes},
		{"PendingPermissions", testPendingPermissions},
		{"Versions", testVersions},
		{"ChangeBatches", testChangeBatches},
		{"Staging", testStaging},
		{"GroupCommit", testGroupCommit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

func session(id string, createdAt int64, project string) protocol.Session {
	s := protocol.Session{ID: id, Status: protocol.StatusBootstrapping, CreatedAt: createdAt}
	if project != "" {
		s.Project = &project
	}
	return s
}

func commit(t *testing.T, s store.Store, ops ...store.Op) {
	t.Helper()
	if err := s.Commit(context.Background(), ops); err != nil {
		t.Fatalf("Commit(%s): %v", opNames(ops), err)
	}
}

func commitFails(t *testing.T, s store.Store, ops ...store.Op) {
	t.Helper()
	if err := s.Commit(context.Background(), ops); err == nil {
		t.Fatalf("Commit(%s) succeeded; want an error", opNames(ops))
	}
}

func opNames(ops []store.Op) string {
	out := ""
	for i, op := range ops {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%T", op)
	}
	return out
}

func ids(list []protocol.Session) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = s.ID
	}
	return out
}

// artifact returns the body the server stores for an artifact: what
// protocol.Artifact.MarshalJSON writes.
func artifact(t *testing.T, seq, rev int64, output string) store.Artifact {
	t.Helper()
	a := protocol.Artifact{Seq: seq, ID: fmt.Sprintf("a%d", seq), Type: protocol.ArtifactToolCall, TurnID: "t1", CreatedAt: 1, Rev: rev,
		Fields: map[string]any{"output": output, "status": "running"}}
	body, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return store.Artifact{Seq: seq, Rev: rev, Body: body}
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if protocol.CodeOf(err) != protocol.CodeNotFound {
		t.Errorf("%s: error %v (code %q); want code %q", what, err, protocol.CodeOf(err), protocol.CodeNotFound)
	}
}

// Sessions lists oldest first, ties in creation order, and filters by
// project.
func testSessionsOrder(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: session("late", 3000, "p")})
	commit(t, s, store.CreateSession{Session: session("tie-first", 1000, "")}, store.CreateSession{Session: session("tie-second", 1000, "p")})
	commit(t, s, store.CreateSession{Session: session("tie-third", 1000, "q")})
	all, err := s.Sessions(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(all), []string{"tie-first", "tie-second", "tie-third", "late"}; !slices.Equal(got, want) {
		t.Errorf("Sessions() = %v; want %v", got, want)
	}
	p, err := s.Sessions(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(p), []string{"tie-second", "late"}; !slices.Equal(got, want) {
		t.Errorf("Sessions(p) = %v; want %v", got, want)
	}
	none, err := s.Sessions(ctx, "nobody")
	if err != nil || len(none) != 0 {
		t.Errorf("Sessions(nobody) = %v, %v; want none", ids(none), err)
	}
	loaded, err := s.LoadSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(loaded))
	for i, l := range loaded {
		got[i] = l.ID
	}
	if want := []string{"tie-first", "tie-second", "tie-third", "late"}; !slices.Equal(got, want) {
		t.Errorf("LoadSessions() = %v; want %v", got, want)
	}
	rec, err := s.Session(ctx, "late")
	if err != nil {
		t.Fatal(err)
	}
	if rec.ID != "late" || rec.CreatedAt != 3000 || rec.Status != protocol.StatusBootstrapping || rec.Project == nil || *rec.Project != "p" || rec.Summary != nil || rec.LastHeartbeat != nil {
		t.Errorf("Session(late) = %+v", rec)
	}
}

// A missing session is CodeNotFound wherever one is named.
func testNotFound(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, err := s.Session(ctx, "ghost")
	wantNotFound(t, "Session", err)
	_, err = s.Artifacts(ctx, "ghost")
	wantNotFound(t, "Artifacts", err)
	_, err = s.ArtifactsSince(ctx, "ghost", 0)
	wantNotFound(t, "ArtifactsSince", err)
	_, err = s.ArtifactsPage(ctx, "ghost", 0, 10, 0)
	wantNotFound(t, "ArtifactsPage", err)
	_, _, err = s.ArtifactsBySeq(ctx, "ghost", 0, 10, 0)
	wantNotFound(t, "ArtifactsBySeq", err)
	err = s.Commit(ctx, []store.Op{store.UpdateSession{Session: store.Session{Session: session("ghost", 1, "")}}})
	wantNotFound(t, "Commit(UpdateSession)", err)
	// Reads of a session's children answer empty, not an error: the
	// writer folds a new session's (empty) log.
	if evs, err := s.Events(ctx, "ghost"); err != nil || len(evs) != 0 {
		t.Errorf("Events(ghost) = %v, %v; want none", evs, err)
	}
	if cmds, err := s.Commands(ctx, "ghost", 0, 100); err != nil || len(cmds) != 0 {
		t.Errorf("Commands(ghost) = %v, %v; want none", cmds, err)
	}
}

// A commit with a failing op stores nothing of itself.
func testCommitIsAtomic(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: session("a", 1, "")})
	commitFails(t, s,
		store.CreateSession{Session: session("b", 2, "")},
		store.AppendEvents{SessionID: "a", Events: []store.Event{{Pos: 1, Body: []byte(`{"type":"x"}`)}}},
		store.CreateSession{Session: session("a", 3, "")}, // exists
	)
	if _, err := s.Session(ctx, "b"); protocol.CodeOf(err) != protocol.CodeNotFound {
		t.Errorf("session b of the failed commit: %v; want not found", err)
	}
	if evs, _ := s.Events(ctx, "a"); len(evs) != 0 {
		t.Errorf("events of the failed commit were stored: %d", len(evs))
	}
	// The store still works after a failed commit.
	commit(t, s, store.CreateSession{Session: session("b", 2, "")})
}

// The event log comes back in pos order, bodies byte for byte; a pos
// stored twice fails the commit.
func testEventsInOrder(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: session("a", 1, "")}, store.CreateSession{Session: session("b", 1, "")})
	var want []store.Event
	for pos := int64(1); pos <= 150; pos++ { // more than one insert chunk
		want = append(want, store.Event{Pos: pos, Instance: "i1", AgentSeq: pos * 2, Body: fmt.Appendf(nil, `{"type":"message","n":%d, "odd spacing" : "é\u00e9"}`, pos)})
	}
	commit(t, s, store.AppendEvents{SessionID: "a", Events: want[:70]}, store.AppendEvents{SessionID: "b", Events: want[:1]})
	commit(t, s, store.AppendEvents{SessionID: "a", Events: want[70:]})
	got, err := s.Events(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Events(a) has %d entries; want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Pos != want[i].Pos || got[i].Instance != want[i].Instance || got[i].AgentSeq != want[i].AgentSeq || string(got[i].Body) != string(want[i].Body) {
			t.Fatalf("Events(a)[%d] = %+v; want %+v", i, got[i], want[i])
		}
	}
	commitFails(t, s, store.AppendEvents{SessionID: "a", Events: []store.Event{{Pos: 151, Body: []byte(`{}`)}, {Pos: 3, Body: []byte(`{}`)}}})
	if got, _ := s.Events(ctx, "a"); len(got) != 150 {
		t.Errorf("after a failed append: %d events; want 150", len(got))
	}
	if got, _ := s.Events(ctx, "b"); len(got) != 1 {
		t.Errorf("Events(b): %d; want 1", len(got))
	}
}

// Events of every size, from a byte to protocol.MaxEventBytes, read back
// exactly and sized exactly for pages, in the log or staged, before and
// after an Unstage, with the longest ids and the shortest; deleting a
// session leaves another's whole, and its namesake starts empty. (A store
// may keep bodies of different sizes in different places: SQLite keeps
// those too big for a leaf of its log apart.)
func testEventsOfEverySize(t *testing.T, s store.Store) {
	ctx := context.Background()
	long, inst := strings.Repeat("s", protocol.MaxIDLen), strings.Repeat("i", protocol.MaxIDLen)
	sizes := []int{2, 300, 700, 714, 715, 716, 900, 969, 970, 971, 1002, 1134, 2000, 4000, 4061, 4062, 4096, 8192, 70000, protocol.MaxEventBytes}
	body := func(n int, tag string) []byte {
		if n < 2 {
			panic(n)
		}
		b := []byte(`"` + tag)
		for len(b) < n-1 {
			b = append(b, byte('a'+len(b)%26))
		}
		return append(b[:n-1], '"')
	}
	events := func(id, instance string, from int64, tag string) []store.Event {
		out := make([]store.Event, len(sizes))
		for i, n := range sizes {
			pos := from + int64(i)
			out[i] = store.Event{Pos: pos, Instance: instance, AgentSeq: pos, Body: body(n, fmt.Sprintf("%s%d.", tag, pos))}
		}
		return out
	}
	sg, stages := s.(store.Stager)
	want := map[string][]store.Event{}
	check := func(when string) {
		t.Helper()
		for id, w := range want {
			got, err := s.Events(ctx, id)
			if err != nil {
				t.Fatalf("%s: Events(%.8s…): %v", when, id, err)
			}
			if len(got) != len(w) {
				t.Fatalf("%s: Events(%.8s…) has %d entries; want %d", when, id, len(got), len(w))
			}
			for i := range w {
				if got[i].Pos != w[i].Pos || got[i].Instance != w[i].Instance || got[i].AgentSeq != w[i].AgentSeq || string(got[i].Body) != string(w[i].Body) {
					t.Fatalf("%s: Events(%.8s…)[%d] = pos %d, %d bytes; want pos %d, %d bytes", when, id, i, got[i].Pos, len(got[i].Body), w[i].Pos, len(w[i].Body))
				}
			}
			pg, ok := s.(store.EventPager)
			if !ok {
				continue
			}
			// Cut by bytes at every size: a page is cut at the event
			// whose size would take it over, so a size read wrong
			// shows as a page too large or cut early.
			for _, maxBytes := range []int{1, 1200, 5000, 100000} {
				paged := pageEvents(t, pg, id, len(w), maxBytes)
				if len(paged) != len(w) {
					t.Fatalf("%s: pages of %d bytes of %.8s… hold %d entries; want %d", when, maxBytes, id, len(paged), len(w))
				}
			}
			for i := range w {
				page, _, err := pg.EventsAfter(ctx, id, w[i].Pos-1, len(w), len(w[i].Body))
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 || string(page[0].Body) != string(w[i].Body) {
					t.Fatalf("%s: EventsAfter(%.8s…, %d) does not start with its event", when, id, w[i].Pos-1)
				}
				if i+1 < len(w) && len(page) != 1 {
					t.Fatalf("%s: a page of %d bytes after pos %d held %d events; want the one of that size", when, len(w[i].Body), w[i].Pos-1, len(page))
				}
			}
		}
	}
	commit(t, s, store.CreateSession{Session: session(long, 1, "")}, store.CreateSession{Session: session("b", 1, "")})
	a1 := events(long, inst, 1, "a")
	b1 := events("b", "i", 1, "b")
	want[long], want["b"] = a1, b1
	commit(t, s, store.AppendEvents{SessionID: long, Events: a1}, store.AppendEvents{SessionID: "b", Events: b1, Stage: true})
	check("first commit")
	a2 := events(long, "i", int64(len(sizes))+1, "A")
	b2 := events("b", inst, int64(len(sizes))+1, "B")
	want[long], want["b"] = append(want[long], a2...), append(want["b"], b2...)
	commit(t, s, store.AppendEvents{SessionID: long, Events: a2, Stage: true}, store.AppendEvents{SessionID: "b", Events: b2})
	check("second commit")
	if stages {
		commit(t, s, store.Unstage{})
		check("after Unstage")
		if ids, err := sg.StagedSessions(ctx); err != nil || len(ids) != 0 {
			t.Fatalf("StagedSessions after Unstage = %v, %v", ids, err)
		}
		b3 := events("b", "i", int64(2*len(sizes))+1, "c")
		want["b"] = append(want["b"], b3...)
		commit(t, s, store.AppendEvents{SessionID: "b", Events: b3, Stage: true})
		check("staged after Unstage")
	}
	commit(t, s, store.DeleteSession{ID: long})
	delete(want, long)
	check("after deleting the other session")
	if evs, err := s.Events(ctx, long); err != nil || len(evs) != 0 {
		t.Fatalf("Events of the deleted session = %d, %v", len(evs), err)
	}
	commit(t, s, store.CreateSession{Session: session(long, 2, "")})
	a3 := events(long, inst, 1, "n")
	want[long] = a3
	commit(t, s, store.AppendEvents{SessionID: long, Events: a3, Stage: true})
	check("the namesake")
	commit(t, s, store.DeleteSession{ID: "b"}, store.DeleteSession{ID: long})
	for _, id := range []string{"b", long} {
		if evs, err := s.Events(ctx, id); err != nil || len(evs) != 0 {
			t.Fatalf("Events of a deleted session = %d, %v", len(evs), err)
		}
	}
}

func setRev(t *testing.T, s store.Store, id string, rev int64) {
	t.Helper()
	l, err := s.LoadSessions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range l {
		if r.ID == id {
			r.Rev = rev
			commit(t, s, store.UpdateSession{Session: r})
			return
		}
	}
	t.Fatalf("session %s not loaded", id)
}

func revs(list []store.Artifact) [][2]int64 {
	out := make([][2]int64, len(list))
	for i, a := range list {
		out[i] = [2]int64{a.Seq, a.Rev}
	}
	return out
}

// ArtifactsSince returns exactly rev > after, in rev order, with the
// session's rev; Artifacts is in seq order.
func testArtifactsSinceIsExact(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: session("a", 1, "")}, store.CreateSession{Session: session("other", 1, "")})
	commit(t, s, store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{artifact(t, 1, 1, "x"), artifact(t, 2, 2, "y"), artifact(t, 3, 3, "z")}},
		store.PutArtifacts{SessionID: "other", Artifacts: []store.Artifact{artifact(t, 1, 9, "o")}})
	setRev(t, s, "a", 3)
	// Seq 1 changes again: it moves after 2 and 3 in rev order.
	a1 := artifact(t, 1, 4, "x2")
	commit(t, s, store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{a1}})
	setRev(t, s, "a", 4)

	for _, tt := range []struct {
		after int64
		want  [][2]int64
	}{
		{0, [][2]int64{{2, 2}, {3, 3}, {1, 4}}},
		{1, [][2]int64{{2, 2}, {3, 3}, {1, 4}}},
		{2, [][2]int64{{3, 3}, {1, 4}}},
		{3, [][2]int64{{1, 4}}},
		{4, [][2]int64{}},
		{99, [][2]int64{}}, // above the head: none, the server decides
	} {
		snap, err := s.ArtifactsSince(ctx, "a", tt.after)
		if err != nil {
			t.Fatal(err)
		}
		if snap.Rev != 4 || !slices.Equal(revs(snap.Artifacts), tt.want) {
			t.Errorf("ArtifactsSince(a, %d) = rev %d %v; want rev 4 %v", tt.after, snap.Rev, revs(snap.Artifacts), tt.want)
		}
	}
	snap, _ := s.ArtifactsSince(ctx, "a", 3)
	if len(snap.Artifacts) == 1 && string(snap.Artifacts[0].Body) != string(a1.Body) {
		t.Errorf("body = %s; want %s", snap.Artifacts[0].Body, a1.Body)
	}
	all, err := s.Artifacts(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := revs(all), [][2]int64{{1, 4}, {2, 2}, {3, 3}}; !slices.Equal(got, want) {
		t.Errorf("Artifacts(a) = %v; want %v", got, want)
	}
	if empty, err := s.Artifacts(ctx, "other"); err != nil || len(empty) != 1 {
		t.Errorf("Artifacts(other) = %v, %v; want its one artifact", revs(empty), err)
	}
}

// ArtifactsPage is ArtifactsSince cut at limit, with the session's rev;
// ArtifactsBySeq is Artifacts cut at limit. Both merge pending appends.
func testArtifactPages(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: session("a", 1, "")}, store.CreateSession{Session: session("other", 1, "")})
	commit(t, s, store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{artifact(t, 1, 1, "x"), artifact(t, 2, 2, "y"), artifact(t, 3, 3, "z"), artifact(t, 4, 4, "w")}},
		store.PutArtifacts{SessionID: "other", Artifacts: []store.Artifact{artifact(t, 1, 9, "o")}})
	// Seq 2 changes by an append and moves last in rev order.
	commit(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 2, Rev: 5, Fields: []store.FieldAppend{{Field: "output", Text: "!"}}}}})
	setRev(t, s, "a", 5)
	merged, err := store.MergeAppends(artifact(t, 2, 2, "y").Body, 5, []store.FieldAppend{{Field: "output", Text: "!"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		after int64
		limit int
		want  [][2]int64
		more  bool
	}{
		{0, 2, [][2]int64{{1, 1}, {3, 3}}, true},
		{3, 2, [][2]int64{{4, 4}, {2, 5}}, false},
		{4, 2, [][2]int64{{2, 5}}, false},
		{0, 10, [][2]int64{{1, 1}, {3, 3}, {4, 4}, {2, 5}}, false},
		{0, 4, [][2]int64{{1, 1}, {3, 3}, {4, 4}, {2, 5}}, false},
		{5, 1, [][2]int64{}, false},
		{99, 1, [][2]int64{}, false},
	} {
		snap, err := s.ArtifactsPage(ctx, "a", tt.after, tt.limit, 0)
		if err != nil {
			t.Fatal(err)
		}
		if snap.Rev != 5 || !slices.Equal(revs(snap.Artifacts), tt.want) || snap.More != tt.more {
			t.Errorf("ArtifactsPage(a, %d, %d) = rev %d %v more %v; want rev 5 %v more %v", tt.after, tt.limit, snap.Rev, revs(snap.Artifacts), snap.More, tt.want, tt.more)
		}
		if snap.Created != 1 {
			t.Errorf("ArtifactsPage(a, %d, %d): Created %d; want the session's createdAt 1", tt.after, tt.limit, snap.Created)
		}
		for _, a := range snap.Artifacts {
			if a.Seq == 2 && string(a.Body) != string(merged) {
				t.Errorf("ArtifactsPage(a, %d, %d): seq 2 body %s; want %s", tt.after, tt.limit, a.Body, merged)
			}
		}
	}
	for _, tt := range []struct {
		after int64
		limit int
		want  [][2]int64
		more  bool
	}{
		{0, 3, [][2]int64{{1, 1}, {2, 5}, {3, 3}}, true},
		{3, 3, [][2]int64{{4, 4}}, false},
		{1, 1, [][2]int64{{2, 5}}, true},
		{0, 4, [][2]int64{{1, 1}, {2, 5}, {3, 3}, {4, 4}}, false},
		{4, 3, [][2]int64{}, false},
	} {
		list, more, err := s.ArtifactsBySeq(ctx, "a", tt.after, tt.limit, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(revs(list), tt.want) || more != tt.more {
			t.Errorf("ArtifactsBySeq(a, %d, %d) = %v more %v; want %v more %v", tt.after, tt.limit, revs(list), more, tt.want, tt.more)
		}
		for _, a := range list {
			if a.Seq == 2 && string(a.Body) != string(merged) {
				t.Errorf("ArtifactsBySeq(a, %d, %d): seq 2 body %s; want %s", tt.after, tt.limit, a.Body, merged)
			}
		}
	}
	if _, err := s.ArtifactsPage(ctx, "a", 0, 0, 0); err == nil {
		t.Error("ArtifactsPage with limit 0 succeeded")
	}
	if _, _, err := s.ArtifactsBySeq(ctx, "a", 0, 0, 0); err == nil {
		t.Error("ArtifactsBySeq with limit 0 succeeded")
	}
}

// A page also stops before the artifact that would take its bodies past
// maxBytes (an artifact's pending appends counted), but holds one
// artifact at least, and says whether it left any: large artifacts (tool
// output of megabytes) cost a page's worth of memory, not limit of them.
func testArtifactPagesByBytes(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: session("a", 1, "")})
	big := strings.Repeat("x", 1000)
	arts := []store.Artifact{artifact(t, 1, 1, big), artifact(t, 2, 2, big), artifact(t, 3, 3, big), artifact(t, 4, 4, big)}
	commit(t, s, store.PutArtifacts{SessionID: "a", Artifacts: arts})
	// Seq 2 grows by 500 bytes and moves last in rev order.
	commit(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 2, Rev: 5, Fields: []store.FieldAppend{{Field: "output", Text: strings.Repeat("y", 500)}}}}})
	setRev(t, s, "a", 5)
	n := len(arts[0].Body) // every body is as long before the append
	for _, tt := range []struct {
		after    int64
		maxBytes int
		want     [][2]int64
		more     bool
	}{
		{0, 2 * n, [][2]int64{{1, 1}, {3, 3}}, true},
		{0, 2*n - 1, [][2]int64{{1, 1}}, true},
		{0, 1, [][2]int64{{1, 1}}, true}, // one at least
		{3, 2*n + 500, [][2]int64{{4, 4}, {2, 5}}, false},
		{3, 2*n + 499, [][2]int64{{4, 4}}, true}, // the append counts
		{4, 1, [][2]int64{{2, 5}}, false},
		{0, 4*n + 500, [][2]int64{{1, 1}, {3, 3}, {4, 4}, {2, 5}}, false},
		{5, 1, [][2]int64{}, false},
	} {
		snap, err := s.ArtifactsPage(ctx, "a", tt.after, 10, tt.maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if snap.Rev != 5 || !slices.Equal(revs(snap.Artifacts), tt.want) || snap.More != tt.more {
			t.Errorf("ArtifactsPage(a, %d, 10, %d) = rev %d %v more %v; want rev 5 %v more %v", tt.after, tt.maxBytes, snap.Rev, revs(snap.Artifacts), snap.More, tt.want, tt.more)
		}
		if sum := bodyBytes(snap.Artifacts); len(snap.Artifacts) > 1 && sum > tt.maxBytes {
			t.Errorf("ArtifactsPage(a, %d, 10, %d): %d bytes of bodies", tt.after, tt.maxBytes, sum)
		}
	}
	for _, tt := range []struct {
		after    int64
		maxBytes int
		want     [][2]int64
		more     bool
	}{
		{0, 2*n + 500, [][2]int64{{1, 1}, {2, 5}}, true},
		{0, 2*n + 499, [][2]int64{{1, 1}}, true},
		{1, 1, [][2]int64{{2, 5}}, true},
		{2, 2 * n, [][2]int64{{3, 3}, {4, 4}}, false},
		{4, 1, [][2]int64{}, false},
	} {
		list, more, err := s.ArtifactsBySeq(ctx, "a", tt.after, 10, tt.maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(revs(list), tt.want) || more != tt.more {
			t.Errorf("ArtifactsBySeq(a, %d, 10, %d) = %v more %v; want %v more %v", tt.after, tt.maxBytes, revs(list), more, tt.want, tt.more)
		}
	}
}

// bodyOf returns the body of the artifact at seq in list, "" without one.
func bodyOf(list []store.Artifact, seq int64) string {
	for _, a := range list {
		if a.Seq == seq {
			return string(a.Body)
		}
	}
	return ""
}

func bodyBytes(list []store.Artifact) int {
	n := 0
	for _, a := range list {
		n += len(a.Body)
	}
	return n
}

// Appends are merged into every read exactly as store.MergeAppends does;
// a full put drops them; appending to an artifact not stored fails.
func testAppendsMergedOnRead(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: session("a", 1, "")})
	base := artifact(t, 1, 1, "he")
	commit(t, s, store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{base, artifact(t, 2, 2, "other")}})
	appends := []store.FieldAppend{{Field: "output", Text: "llo"}, {Field: "inputText", Text: "{\"a\""}}
	commit(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 1, Rev: 3, Fields: appends[:1]}}})
	commit(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 1, Rev: 4, Fields: []store.FieldAppend{{Field: "output", Text: " wörld\n<>"}, appends[1]}}}})
	setRev(t, s, "a", 4)
	want, err := store.MergeAppends(base.Body, 4, []store.FieldAppend{appends[0], {Field: "output", Text: " wörld\n<>"}, appends[1]})
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.Artifacts(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Rev != 4 || string(all[0].Body) != string(want) {
		t.Fatalf("Artifacts(a)[0] = %+v\nwant body %s", all, want)
	}
	snap, err := s.ArtifactsSince(ctx, "a", 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Artifacts) != 1 || snap.Artifacts[0].Seq != 1 || string(snap.Artifacts[0].Body) != string(want) {
		t.Fatalf("ArtifactsSince(a, 3) = %v; want seq 1 with merged body", revs(snap.Artifacts))
	}
	// A full body replaces the artifact and what was appended.
	full := artifact(t, 1, 5, "reset")
	commit(t, s, store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{full}})
	all, _ = s.Artifacts(ctx, "a")
	if string(all[0].Body) != string(full.Body) {
		t.Fatalf("after put: %s; want %s", all[0].Body, full.Body)
	}
	commit(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 1, Rev: 6, Fields: []store.FieldAppend{{Field: "output", Text: "!"}}}}})
	want, _ = store.MergeAppends(full.Body, 6, []store.FieldAppend{{Field: "output", Text: "!"}})
	all, _ = s.Artifacts(ctx, "a")
	if string(all[0].Body) != string(want) {
		t.Fatalf("append after put: %s; want %s", all[0].Body, want)
	}
	commitFails(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 9, Rev: 7, Fields: []store.FieldAppend{{Field: "output", Text: "x"}}}}})
}

// A head replaces an artifact's body and rev and keeps its appends and
// their length: every read merges them into the new head, pages count
// them, a later append follows them, and a full put still drops them.
// A head for an artifact not stored fails the commit and writes nothing.
func testHeadsKeepAppends(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: session("a", 1, "")})
	head := func(rev int64, output, status string) store.Artifact {
		t.Helper()
		a := artifact(t, 1, rev, output)
		var fields map[string]any
		if err := json.Unmarshal(a.Body, &fields); err != nil {
			t.Fatal(err)
		}
		fields["status"] = status
		body, err := json.Marshal(fields)
		if err != nil {
			t.Fatal(err)
		}
		a.Body = body
		return a
	}
	other := artifact(t, 2, 2, "other")
	commit(t, s, store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{head(1, "he", "running"), other}})
	appends := []store.FieldAppend{{Field: "output", Text: "llo"}, {Field: "output", Text: " wörld\n<>"}, {Field: "inputText", Text: "{\"a\""}}
	commit(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 1, Rev: 3, Fields: appends[:1]}}})
	commit(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 1, Rev: 4, Fields: appends[1:]}}})
	closed := head(5, "he", "completed")
	commit(t, s, store.PutArtifactHeads{SessionID: "a", Artifacts: []store.Artifact{closed}})
	setRev(t, s, "a", 5)
	want, err := store.MergeAppends(closed.Body, 5, appends)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(want), `"status":"completed"`) {
		t.Fatalf("merged body %s holds no new status", want)
	}
	check := func(when string, want []byte, rev int64) {
		t.Helper()
		all, err := s.Artifacts(ctx, "a")
		if err != nil || len(all) != 2 || all[0].Rev != rev || string(all[0].Body) != string(want) {
			t.Fatalf("%s: Artifacts(a) = %v, %v; seq 1 is\n%s\nwant rev %d\n%s", when, revs(all), err, bodyOf(all, 1), rev, want)
		}
		snap, err := s.ArtifactsSince(ctx, "a", 2)
		if err != nil || len(snap.Artifacts) != 1 || snap.Artifacts[0].Rev != rev || string(snap.Artifacts[0].Body) != string(want) {
			t.Fatalf("%s: ArtifactsSince(a, 2) = %v, %v; want seq 1 rev %d", when, revs(snap.Artifacts), err, rev)
		}
		bySeq, _, err := s.ArtifactsBySeq(ctx, "a", 0, 1, 0)
		if err != nil || len(bySeq) != 1 || string(bySeq[0].Body) != string(want) {
			t.Fatalf("%s: ArtifactsBySeq(a, 0, 1) = %v, %v", when, revs(bySeq), err)
		}
	}
	check("after the head", want, 5)
	// The page sizer still counts the appended text: a page whose bytes
	// end one short of the other artifact, the head and the appends
	// leaves the head for the next page.
	appended := 0
	for _, a := range appends {
		appended += len(a.Text)
	}
	page, err := s.ArtifactsPage(ctx, "a", 0, 10, len(other.Body)+len(closed.Body)+appended-1)
	if err != nil || len(page.Artifacts) != 1 || !page.More {
		t.Fatalf("page of %d bytes: %v more=%v, %v; want the other artifact alone", len(other.Body)+len(closed.Body)+appended-1, revs(page.Artifacts), page.More, err)
	}
	// A later append follows the kept ones.
	commit(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 1, Rev: 6, Fields: []store.FieldAppend{{Field: "output", Text: "!"}}}}})
	setRev(t, s, "a", 6)
	want, _ = store.MergeAppends(closed.Body, 6, append(slices.Clone(appends), store.FieldAppend{Field: "output", Text: "!"}))
	check("after an append", want, 6)
	// A head for a missing artifact fails the whole commit.
	commitFails(t, s,
		store.PutArtifactHeads{SessionID: "a", Artifacts: []store.Artifact{head(7, "x", "failed")}},
		store.PutArtifactHeads{SessionID: "a", Artifacts: []store.Artifact{artifact(t, 9, 7, "x")}})
	check("after a failed head", want, 6)
	// A full put drops the appends, kept or not.
	full := artifact(t, 1, 8, "reset")
	commit(t, s, store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{full}})
	setRev(t, s, "a", 8)
	check("after a full put", full.Body, 8)
}

// Commands come back by id range, bodies byte for byte; an id stored
// twice fails the commit.
func testCommands(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: session("a", 1, "")}, store.CreateSession{Session: session("b", 1, "")})
	for id := int64(1); id <= 5; id++ {
		commit(t, s, store.AddCommand{SessionID: "a", Command: store.Command{ID: id, Body: fmt.Appendf(nil, `{"id":%d,"type":"prompt", "text":"ü"}`, id), CreatedAt: 100 + id}})
	}
	commit(t, s, store.AddCommand{SessionID: "b", Command: store.Command{ID: 1, Body: []byte(`{"id":1}`), CreatedAt: 1}})
	got, err := s.Commands(ctx, "a", 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("Commands(a, 1, 4) = %d commands; want 3", len(got))
	}
	for i, c := range got {
		id := int64(i + 2)
		if c.ID != id || c.CreatedAt != 100+id || string(c.Body) != fmt.Sprintf(`{"id":%d,"type":"prompt", "text":"ü"}`, id) {
			t.Errorf("Commands(a, 1, 4)[%d] = %+v", i, c)
		}
	}
	if got, _ := s.Commands(ctx, "a", 5, 10); len(got) != 0 {
		t.Errorf("Commands(a, 5, 10) = %d; want 0", len(got))
	}
	commitFails(t, s, store.AddCommand{SessionID: "a", Command: store.Command{ID: 3, Body: []byte(`{}`)}})
}

// A command stored with an Idempotency-Key is found by it in its own
// session only; a session holds one command per key (a second fails the
// commit and stores nothing of it); commands without a key are many, and
// a deleted session's keys go with it.
func testCommandKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: session("a", 1, "")}, store.CreateSession{Session: session("b", 1, "")})
	commit(t, s,
		store.AddCommand{SessionID: "a", Command: store.Command{ID: 1, Body: []byte(`{"id":1}`), CreatedAt: 10}},
		store.AddCommand{SessionID: "a", Command: store.Command{ID: 2, Body: []byte(`{"id":2}`), CreatedAt: 11}},
		store.AddCommand{SessionID: "a", Command: store.Command{ID: 3, Body: []byte(`{"id":3,"text":"é"}`), CreatedAt: 12, Key: "k-1"}},
		store.AddCommand{SessionID: "b", Command: store.Command{ID: 1, Body: []byte(`{"id":1,"b":true}`), CreatedAt: 13, Key: "k-1"}},
	)
	got, ok, err := s.CommandByKey(ctx, "a", "k-1")
	if err != nil || !ok || got.ID != 3 || string(got.Body) != `{"id":3,"text":"é"}` || got.CreatedAt != 12 || got.Key != "k-1" {
		t.Fatalf("CommandByKey(a, k-1) = %+v, %v, %v; want command 3", got, ok, err)
	}
	if got, ok, err := s.CommandByKey(ctx, "b", "k-1"); err != nil || !ok || got.ID != 1 || string(got.Body) != `{"id":1,"b":true}` {
		t.Fatalf("CommandByKey(b, k-1) = %+v, %v, %v; want b's command 1", got, ok, err)
	}
	for _, c := range [][2]string{{"a", "k-2"}, {"a", "K-1"}, {"a", ""}, {"nope", "k-1"}} {
		if got, ok, err := s.CommandByKey(ctx, c[0], c[1]); err != nil || ok {
			t.Errorf("CommandByKey(%s, %q) = %+v, %v, %v; want none", c[0], c[1], got, ok, err)
		}
	}
	commitFails(t, s, store.AddCommand{SessionID: "a", Command: store.Command{ID: 4, Body: []byte(`{"id":4}`), Key: "k-1"}})
	if cmds, _ := s.Commands(ctx, "a", 0, 10); len(cmds) != 3 {
		t.Fatalf("after a refused second k-1, session a has %d commands; want 3", len(cmds))
	}
	commit(t, s, store.DeleteSession{ID: "a"}, store.CreateSession{Session: session("a", 2, "")})
	if got, ok, err := s.CommandByKey(ctx, "a", "k-1"); err != nil || ok {
		t.Fatalf("CommandByKey(a, k-1) after a was deleted and created again = %+v, %v, %v; want none", got, ok, err)
	}
	commit(t, s, store.AddCommand{SessionID: "a", Command: store.Command{ID: 1, Body: []byte(`{"id":1}`), Key: "k-1"}})
}

// UpdateSession's columns come back from Session and LoadSessions.
func testSessionState(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: session("a", 1, "proj")})
	loaded, err := s.LoadSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 || loaded[0].Rev != 0 || loaded[0].LastCommandID != 0 || loaded[0].CurrentInstance != "" || len(loaded[0].Instances) != 0 {
		t.Fatalf("new session loads as %+v", loaded)
	}
	r := loaded[0]
	sum, hb := "did things", int64(777)
	r.Status, r.Summary, r.LastHeartbeat = protocol.StatusIdle, &sum, &hb
	r.Rev, r.LastCommandID, r.CurrentInstance, r.AckedCommandID = 12, 3, "inst-2", 1
	commit(t, s, store.UpdateSession{Session: r})
	rec, err := s.Session(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != protocol.StatusIdle || rec.Summary == nil || *rec.Summary != sum || rec.LastHeartbeat == nil || *rec.LastHeartbeat != hb || rec.Project == nil || *rec.Project != "proj" || rec.CreatedAt != 1 ||
		rec.AckedCommandID != 1 || rec.PendingCommands != 2 {
		t.Errorf("Session(a) = %+v; want acked 1 and 2 pending of the 3 commands", rec)
	}
	loaded, _ = s.LoadSessions(ctx)
	if got := loaded[0]; got.Rev != 12 || got.LastCommandID != 3 || got.CurrentInstance != "inst-2" || got.Status != protocol.StatusIdle || got.AckedCommandID != 1 || got.PendingCommands != 2 {
		t.Errorf("LoadSessions()[0] = %+v", got)
	}
	snap, err := s.ArtifactsSince(ctx, "a", 0)
	if err != nil || snap.Rev != 12 {
		t.Errorf("ArtifactsSince rev = %d, %v; want 12", snap.Rev, err)
	}
}

// AddInstance keeps first-seen order and ignores a repeat.
func testInstancesIdempotent(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: session("a", 1, "")})
	commit(t, s, store.AddInstance{SessionID: "a", Instance: "first", At: 10})
	commit(t, s, store.AddInstance{SessionID: "a", Instance: "second", At: 20}, store.AddInstance{SessionID: "a", Instance: "first", At: 30})
	commit(t, s, store.AddInstance{SessionID: "a", Instance: "first", At: 40})
	loaded, err := s.LoadSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := loaded[0].Instances, []string{"first", "second"}; !slices.Equal(got, want) {
		t.Errorf("Instances = %v; want %v", got, want)
	}
}

// SetSandboxToken stores and replaces a session's token hash.
func testSandboxTokens(t *testing.T, s store.Store) {
	ctx := context.Background()
	commit(t, s, store.CreateSession{Session: session("a", 1, "")}, store.CreateSession{Session: session("b", 1, "")}, store.CreateSession{Session: session("none", 1, "")})
	h1, h2, h3 := [32]byte{1}, [32]byte{2, 0, 0, 9}, [32]byte{3}
	commit(t, s, store.SetSandboxToken{SessionID: "a", Hash: h1, At: 1}, store.SetSandboxToken{SessionID: "b", Hash: h2, At: 1})
	commit(t, s, store.SetSandboxToken{SessionID: "a", Hash: h3, At: 2})
	got, err := s.SandboxTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["a"] != h3 || got["b"] != h2 {
		t.Errorf("SandboxTokens() = %v; want a=%x b=%x", got, h3, h2)
	}
}

// Deleting a session removes everything it owns; a new session with the
// same id starts empty and may reuse positions and ids.
func testCascadeDelete(t *testing.T, s store.Store) {
	ctx := context.Background()
	fill := func() {
		commit(t, s,
			store.CreateSession{Session: session("a", 1, "")},
			store.AppendEvents{SessionID: "a", Events: []store.Event{{Pos: 1, Instance: "i", AgentSeq: 1, Body: []byte(`{"type":"message"}`)}}},
			store.PutArtifacts{SessionID: "a", Artifacts: []store.Artifact{artifact(t, 1, 1, "x")}},
			store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 1, Rev: 2, Fields: []store.FieldAppend{{Field: "output", Text: "y"}}}}},
			store.AddCommand{SessionID: "a", Command: store.Command{ID: 1, Body: []byte(`{"id":1}`), CreatedAt: 1}},
			store.AddInstance{SessionID: "a", Instance: "i", At: 1},
			store.SetSandboxToken{SessionID: "a", Hash: [32]byte{7}, At: 1},
		)
	}
	commit(t, s, store.CreateSession{Session: session("keep", 1, "")}, store.AddCommand{SessionID: "keep", Command: store.Command{ID: 1, Body: []byte(`{}`)}}, store.SetSandboxToken{SessionID: "keep", Hash: [32]byte{8}})
	fill()
	commit(t, s, store.DeleteSession{ID: "a"})
	_, err := s.Session(ctx, "a")
	wantNotFound(t, "Session after delete", err)
	if evs, _ := s.Events(ctx, "a"); len(evs) != 0 {
		t.Errorf("events survived the delete: %d", len(evs))
	}
	if cmds, _ := s.Commands(ctx, "a", 0, 100); len(cmds) != 0 {
		t.Errorf("commands survived the delete: %d", len(cmds))
	}
	toks, _ := s.SandboxTokens(ctx)
	if _, ok := toks["a"]; ok || len(toks) != 1 {
		t.Errorf("tokens after delete: %v; want only keep's", toks)
	}
	// Created again: empty, and pos 1, command 1, seq 1 are free.
	commit(t, s, store.CreateSession{Session: session("a", 2, "")})
	if arts, err := s.Artifacts(ctx, "a"); err != nil || len(arts) != 0 {
		t.Errorf("Artifacts of the new namesake = %v, %v; want none", revs(arts), err)
	}
	loaded, _ := s.LoadSessions(ctx)
	for _, l := range loaded {
		if l.ID == "a" && (len(l.Instances) != 0 || l.Rev != 0 || l.LastCommandID != 0) {
			t.Errorf("new namesake loads as %+v", l)
		}
	}
	commit(t, s, store.DeleteSession{ID: "a"})
	fill() // fails if anything of the first "a" was left
	if cmds, _ := s.Commands(ctx, "keep", 0, 100); len(cmds) != 1 {
		t.Errorf("another session's commands were deleted")
	}
	// Delete and create in one commit, as the writer does when a session
	// is removed and created again in one group.
	commit(t, s, store.DeleteSession{ID: "a"}, store.CreateSession{Session: session("a", 3, "")})
	if evs, _ := s.Events(ctx, "a"); len(evs) != 0 {
		t.Errorf("events survived delete+create in one commit: %d", len(evs))
	}
	if err := s.Commit(ctx, []store.Op{store.DeleteSession{ID: "never"}}); err != nil && !errors.Is(err, context.Canceled) {
		// Deleting what is not there is allowed: the writer checks first.
		t.Logf("deleting a missing session: %v", err)
	}
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
