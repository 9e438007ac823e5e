package storetest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/store"
)

// testGroupCommit commits what the writer commits for a group of
// requests from several sessions, in its order: each request's events
// (and change batch, on a ChangeLog), then each session's appends and
// row, with one artifact appended to twice and one row updated twice.
// A store may write such a run by kind rather than op by op; every read
// must find what writing the ops one by one would have stored. The same
// commit with one missing session, or one artifact never stored, stores
// nothing, and the missing session is CodeNotFound.
func testGroupCommit(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, changeLog := s.(store.ChangeLog)
	ids := []string{"a", "b", "c"}
	for _, id := range ids {
		commit(t, s, store.CreateSession{Session: session(id, 1, "")},
			store.PutArtifacts{SessionID: id, Artifacts: []store.Artifact{artifact(t, 1, 1, id+":")}})
		setRev(t, s, id, 1)
	}
	loaded, err := s.LoadSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]store.Session{}
	for _, r := range loaded {
		rows[r.ID] = r
	}
	ev := func(id string, pos int64) store.Event {
		return store.Event{Pos: pos, Instance: "i1", AgentSeq: pos, Body: fmt.Appendf(nil, `{"type":"text_delta","id":"%s%d"}`, id, pos)}
	}
	// group returns the ops of one group commit; missing names a session
	// that does not exist, whose row it updates among the others, and c
	// appends to its artifact seq artifact.
	group := func(pos int64, missing string, artifact int64) []store.Op {
		var ops []store.Op
		for _, id := range ids {
			ops = append(ops, store.AppendEvents{SessionID: id, Events: []store.Event{ev(id, pos)}})
			if changeLog {
				ops = append(ops, store.PutChanges{SessionID: id, Batch: store.ChangeBatch{FromRev: pos, ToRev: pos + 1, At: 1000 + pos, Body: []byte(id)}})
			}
		}
		// a's second request of the group.
		ops = append(ops, store.AppendEvents{SessionID: "a", Events: []store.Event{ev("a", pos+1), ev("a", pos+2)}})
		for _, id := range append(slices.Clone(ids), missing) {
			if id == "" {
				continue
			}
			r := rows[id]
			if id == missing {
				r = store.Session{Session: session(id, 1, "")}
			} else {
				seq := int64(1)
				if id == "c" {
					seq = artifact
				}
				ops = append(ops, store.AppendArtifacts{SessionID: id, Appends: []store.ArtifactAppend{{Seq: seq, Rev: 2, Fields: []store.FieldAppend{{Field: "output", Text: "one"}}}}})
			}
			r.Rev, r.LastCommandID, r.Status = 2, 7, protocol.StatusLive
			ops = append(ops, store.UpdateSession{Session: r})
		}
		// a again: a second append to the same artifact, after the
		// first, and its row written again with what the group ended at.
		ops = append(ops, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 1, Rev: 3, Fields: []store.FieldAppend{{Field: "output", Text: " two"}, {Field: "inputText", Text: "{}"}}}}})
		r := rows["a"]
		sum := "second write wins"
		r.Rev, r.LastCommandID, r.Status, r.Summary = 3, 7, protocol.StatusLive, &sum
		ops = append(ops, store.UpdateSession{Session: r})
		return ops
	}

	// The same group with a missing session, then with an artifact that
	// was never stored: each fails whole.
	err = s.Commit(ctx, group(1, "ghost", 1))
	wantNotFound(t, "group commit naming a missing session", err)
	commitFails(t, s, group(1, "", 9)...)
	for _, id := range ids {
		if evs, err := s.Events(ctx, id); err != nil || len(evs) != 0 {
			t.Fatalf("Events(%s) after the failed commits = %d, %v; want none", id, len(evs), err)
		}
	}
	if r, err := s.Session(ctx, "a"); err != nil || r.Summary != nil {
		t.Fatalf("Session(a) after the failed commits = %+v, %v; want it unchanged", r, err)
	}

	commit(t, s, group(1, "", 1)...)
	for _, id := range ids {
		evs, err := s.Events(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want := []int64{1}
		if id == "a" {
			want = []int64{1, 2, 3}
		}
		var got []int64
		for _, e := range evs {
			got = append(got, e.Pos)
			if w := ev(id, e.Pos); string(e.Body) != string(w.Body) || e.Instance != w.Instance || e.AgentSeq != w.AgentSeq {
				t.Errorf("Events(%s) pos %d = %+v; want %+v", id, e.Pos, e, w)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("Events(%s) positions = %v; want %v", id, got, want)
		}
		arts, err := s.Artifacts(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		appends, rev := []store.FieldAppend{{Field: "output", Text: "one"}}, int64(2)
		if id == "a" {
			appends, rev = append(appends, store.FieldAppend{Field: "output", Text: " two"}, store.FieldAppend{Field: "inputText", Text: "{}"}), 3
		}
		body, err := store.MergeAppends(artifact(t, 1, 1, id+":").Body, rev, appends)
		if err != nil {
			t.Fatal(err)
		}
		if len(arts) != 1 || arts[0].Rev != rev || string(arts[0].Body) != string(body) {
			t.Errorf("Artifacts(%s) = %+v\nwant rev %d, body %s", id, arts, rev, body)
		}
		r, err := s.Session(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != protocol.StatusLive || (id == "a") != (r.Summary != nil && *r.Summary == "second write wins") {
			t.Errorf("Session(%s) = %+v; want live, the summary only on a", id, r)
		}
	}
	loaded, err = s.LoadSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range loaded {
		if want := map[string]int64{"a": 3, "b": 2, "c": 2}[r.ID]; r.Rev != want || r.LastCommandID != 7 {
			t.Errorf("LoadSessions: %s rev %d, last command %d; want rev %d, last command 7", r.ID, r.Rev, r.LastCommandID, want)
		}
	}
	if cl, ok := s.(store.ChangeLog); ok {
		for _, id := range ids {
			got, err := cl.ChangeBatches(ctx, id, 0, math.MaxInt64, 1<<20)
			if err != nil || len(got) != 1 || got[0].FromRev != 1 || got[0].ToRev != 2 || got[0].At != 1001 || string(got[0].Body) != id {
				t.Errorf("ChangeBatches(%s) = %+v, %v; want the group's one", id, got, err)
			}
		}
	}
	// A second group appends after the first's texts, in order.
	commit(t, s, store.AppendArtifacts{SessionID: "a", Appends: []store.ArtifactAppend{{Seq: 1, Rev: 4, Fields: []store.FieldAppend{{Field: "output", Text: "!"}}}}},
		store.AppendArtifacts{SessionID: "b", Appends: []store.ArtifactAppend{{Seq: 1, Rev: 3, Fields: []store.FieldAppend{{Field: "output", Text: "?"}}}}})
	setRev(t, s, "a", 4)
	arts, err := s.Artifacts(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := store.MergeAppends(artifact(t, 1, 1, "a:").Body, 4, []store.FieldAppend{{Field: "output", Text: "one"}, {Field: "output", Text: " two"}, {Field: "inputText", Text: "{}"}, {Field: "output", Text: "!"}})
	if len(arts) != 1 || string(arts[0].Body) != string(body) {
		t.Errorf("Artifacts(a) after a second group = %+v\nwant body %s", arts, body)
	}
}
