package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/client"
)

// TestTranscriptAppendCostsTheAppend: a tool's output streams live into a
// followed session, one append at a time. The Transcript made each append
// a new string of the whole field so far, so that folding N appends cost
// N²/2 of them: a tool printing 20 MiB in 4 KiB pieces took rein watch 19
// s of CPU to fold, and the cost grows with the square of the output. An
// append must cost about its own length: here 1,000 appends of 8 KiB
// (8 MiB of output) must not allocate gigabytes (they allocated 4.4 GiB,
// the server's work included).
func TestTranscriptAppendCostsTheAppend(t *testing.T) {
	s, tok := sessionS(t)
	postAs(t, s.URL(), tok, `{"type":"tool_call_start","id":"build","name":"shell","title":"make"}`)

	const n, size = 1000, 8 << 10
	chunk := strings.Repeat("o", size-1) + "\n"
	model := client.NewTranscript()
	ready := make(chan struct{})
	var before, after runtime.MemStats
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		ready := ready
		done <- clientOf(t, s.URL()).StreamArtifacts(ctx, "s", client.StreamOptions{}, func(ev client.ArtifactEvent) error {
			a, err := model.Apply(ev)
			if err != nil {
				return err
			}
			if ev.Name == protocol.SSESnapshotComplete && ready != nil {
				close(ready)
				ready = nil
			}
			if a != nil && len(a.String("output")) == n*size {
				runtime.ReadMemStats(&after)
				return client.ErrStop
			}
			return nil
		})
	}()
	<-ready
	runtime.ReadMemStats(&before)
	for range n {
		postAs(t, s.URL(), tok, fmt.Sprintf(`{"type":"tool_output_delta","id":"build","delta":%q}`, chunk))
	}
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if after.TotalAlloc == 0 {
		t.Fatalf("the stream ended before the output was in: %d bytes of it", len(model.Get(1).String("output")))
	}
	// The server runs in this process: its own work on the posts was
	// about 430 MiB here. Appends that copy the field add n*n*size/2,
	// 4 GiB, to that; appends that cost their length, 8 MiB and change.
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<30 {
		t.Errorf("folding %d appends of %d bytes allocated %d MiB; want it about linear in the output (%d MiB)", n, size, got>>20, n*size>>20)
	}
}

// TestTranscriptTurns: Turns, the counts rein watch --until-idle judges
// by after every event, kept as events come rather than counted over the
// whole transcript, must be what counting would give after every event:
// across replays, reconnects (a resume, a replay cut before its end, a
// full replay that drops what went away, another session under the id
// at the same seqs), turns started and ended live, a turn ended while
// the client was away.
func TestTranscriptTurns(t *testing.T) {
	turn := func(seq, rev int64, id string, status protocol.TurnStatus, ended bool) client.ArtifactEvent {
		f := map[string]any{"status": string(status)}
		if ended {
			f["endedAt"] = float64(1000 + seq)
		}
		return client.ArtifactEvent{Name: protocol.SSEArtifactSnapshot, Rev: rev,
			Artifact: &protocol.Artifact{Seq: seq, Rev: rev, Type: protocol.ArtifactTurn, ID: id, Fields: f}}
	}
	other := func(seq, rev int64, typ protocol.ArtifactType) client.ArtifactEvent {
		return client.ArtifactEvent{Name: protocol.SSEArtifactSnapshot, Rev: rev,
			Artifact: &protocol.Artifact{Seq: seq, Rev: rev, Type: typ, ID: fmt.Sprint("x", seq), Fields: map[string]any{"text": ""}}}
	}
	created := func(ev client.ArtifactEvent) client.ArtifactEvent { ev.Name = protocol.SSEArtifactCreated; return ev }
	set := func(seq, rev int64, field, value string) client.ArtifactEvent {
		return client.ArtifactEvent{Name: protocol.SSEArtifactUpdated, Rev: rev,
			Update: &protocol.ArtifactUpdate{Seq: seq, Field: field, Set: json.RawMessage(value)}}
	}
	appendTo := func(seq, rev int64, field, text string) client.ArtifactEvent {
		return client.ArtifactEvent{Name: protocol.SSEArtifactUpdated, Rev: rev,
			Update: &protocol.ArtifactUpdate{Seq: seq, Field: field, Append: &text}}
	}
	connected := client.ArtifactEvent{Name: client.EventConnected}
	complete := func(rev int64, full bool) client.ArtifactEvent {
		return client.ArtifactEvent{Name: protocol.SSESnapshotComplete, Rev: rev, Full: full}
	}
	type step = turnStep
	steps := []step{
		// The first connection's replay: t1 ended, t2 running.
		{connected, 0, 0},
		{turn(1, 3, "t1", protocol.TurnCompleted, true), 1, 0},
		{other(2, 4, protocol.ArtifactUserMessage), 1, 0},
		{turn(3, 6, "t2", protocol.TurnRunning, false), 2, 1},
		{other(4, 7, protocol.ArtifactAssistantText), 2, 1},
		{complete(7, true), 2, 1},
		// Live: text streams, t2 ends (running until its endedAt).
		{appendTo(4, 8, "text", "hello"), 2, 1},
		{set(3, 9, "status", `"completed"`), 2, 1},
		{set(3, 10, "stopReason", `"end_turn"`), 2, 1},
		{set(3, 11, "endedAt", `1234`), 2, 0},
		// t3 starts live.
		{created(turn(5, 12, "t3", protocol.TurnRunning, false)), 3, 1},
		// Away: t3 ended and t4 started; the resume sends both.
		{connected, 3, 1},
		{turn(5, 15, "t3", protocol.TurnFailed, true), 3, 0},
		{turn(6, 16, "t4", protocol.TurnRunning, false), 4, 1},
		{complete(16, false), 4, 1},
		// The history went back (a restore): a full replay, cut, then
		// another that sends t1 and t2 only (t2 running again).
		{connected, 4, 1},
		{turn(1, 3, "t1", protocol.TurnCompleted, true), 4, 1},
		{connected, 4, 1},
		{turn(1, 3, "t1", protocol.TurnCompleted, true), 4, 1},
		{turn(3, 6, "t2", protocol.TurnRunning, false), 4, 2},
		{complete(6, true), 2, 1},
		// The session was deleted and created again under its id: its
		// full replay has a message at t2's seq, and no turn running.
		{connected, 2, 1},
		{turn(1, 2, "t1", protocol.TurnCancelled, true), 2, 1},
		{other(3, 3, protocol.ArtifactUserMessage), 1, 0},
		{complete(3, true), 1, 0},
		// A set on a turn that does not end it, and one that reopens
		// nothing but a field.
		{set(1, 4, "usage", `{"inputTokens":3}`), 1, 0},
	}
	// rein watch --json keeps the turns only (NewTranscriptOf): the
	// counts must be the same.
	for name, model := range map[string]*client.Transcript{"all": client.NewTranscript(), "turns only": client.NewTranscriptOf(protocol.ArtifactTurn)} {
		t.Run(name, func(t *testing.T) { checkTurns(t, model, steps) })
	}
}

func checkTurns(t *testing.T, model *client.Transcript, steps []turnStep) {
	for i, s := range steps {
		if _, err := model.Apply(s.ev); err != nil {
			t.Fatalf("step %d (%s): %v", i, s.ev.Name, err)
		}
		turns, running := model.Turns()
		// What counting gives, as rein watch did after every event.
		var countTurns, countRunning int
		for _, a := range model.Artifacts() {
			if a.Type == protocol.ArtifactTurn {
				countTurns++
				if !client.TurnEnded(a) {
					countRunning++
				}
			}
		}
		if turns != countTurns || running != countRunning {
			t.Fatalf("step %d (%s rev %d): Turns() = %d, %d; counting gives %d, %d", i, s.ev.Name, s.ev.Rev, turns, running, countTurns, countRunning)
		}
		if turns != s.turns || running != s.running {
			t.Fatalf("step %d (%s rev %d): Turns() = %d, %d; want %d, %d", i, s.ev.Name, s.ev.Rev, turns, running, s.turns, s.running)
		}
	}
}

type turnStep struct {
	ev             client.ArtifactEvent
	turns, running int
}

// TestTranscriptOf: a transcript of turns only holds no other artifact,
// takes their updates in without error while they are the session's,
// and, once a full replay dropped one, refuses an update to it as the
// whole transcript would.
func TestTranscriptOf(t *testing.T) {
	text := "hello"
	model := client.NewTranscriptOf(protocol.ArtifactTurn)
	for i, ev := range []client.ArtifactEvent{
		{Name: client.EventConnected},
		{Name: protocol.SSEArtifactSnapshot, Rev: 1, Artifact: &protocol.Artifact{Seq: 1, Rev: 1, Type: protocol.ArtifactTurn, ID: "t1", Fields: map[string]any{"status": "running"}}},
		{Name: protocol.SSEArtifactSnapshot, Rev: 2, Artifact: &protocol.Artifact{Seq: 2, Rev: 2, Type: protocol.ArtifactAssistantText, ID: "m1", Fields: map[string]any{"text": ""}}},
		{Name: protocol.SSESnapshotComplete, Rev: 2, Full: true},
		{Name: protocol.SSEArtifactUpdated, Rev: 3, Update: &protocol.ArtifactUpdate{Seq: 2, Field: "text", Append: &text}},
		{Name: client.EventConnected},
		{Name: protocol.SSEArtifactSnapshot, Rev: 1, Artifact: &protocol.Artifact{Seq: 1, Rev: 1, Type: protocol.ArtifactTurn, ID: "t1", Fields: map[string]any{"status": "running"}}},
		{Name: protocol.SSESnapshotComplete, Rev: 1, Full: true},
	} {
		a, err := model.Apply(ev)
		if err != nil {
			t.Fatalf("event %d (%s): %v", i, ev.Name, err)
		}
		if a != nil && a.Type != protocol.ArtifactTurn {
			t.Errorf("event %d (%s) returned a %s", i, ev.Name, a.Type)
		}
	}
	if list := model.Artifacts(); len(list) != 1 || list[0].ID != "t1" {
		t.Errorf("holds %+v, want t1 alone", list)
	}
	_, err := model.Apply(client.ArtifactEvent{Name: protocol.SSEArtifactUpdated, Rev: 4, Update: &protocol.ArtifactUpdate{Seq: 2, Field: "text", Append: &text}})
	if err == nil {
		t.Errorf("an update to seq 2, which the last full replay did not send, was taken in")
	}
}
