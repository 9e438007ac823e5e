package server

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// turnOf returns the status of the session's turn artifact with id.
func turnOf(t *testing.T, s Store, session, id string) string {
	t.Helper()
	arts, err := s.Artifacts(context.Background(), session)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range arts {
		var m map[string]any
		if err := json.Unmarshal(a.Body, &m); err != nil {
			t.Fatal(err)
		}
		if m["type"] == "turn" && m["id"] == id {
			s, _ := m["status"].(string)
			return s
		}
	}
	t.Fatalf("no turn %s in session %s", id, session)
	return ""
}

// The heartbeat deadline with a turn open disconnects the session and
// leaves the turn open: the same instance coming back finishes it as the
// agent says; a new instance taking over closes it as interrupted.
func TestHeartbeatMissedLeavesTurnOpen(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		w, st := bubbleWriter(t, filepath.Join(t.TempDir(), "rein.db"), Options{HeartbeatTimeout: 45 * time.Second})
		for _, id := range []string{"back", "replaced"} {
			cr := newReply[protocol.Session]()
			_, h := newSandboxToken()
			mustCall(t, w, &createReq{id: id, sandbox: h, reply: cr}, cr)
			r := newReply[openedStream]()
			o := mustCall(t, w, &openStreamReq{id: id, from: Sandbox{Instance: "i1"}, reply: r}, r)
			defer o.sub.Close()
			er := newReply[protocol.EventsAccepted]()
			mustCall(t, w, &eventsReq{id: id, from: Sandbox{Instance: "i1"}, events: []protocol.Event{
				{Type: protocol.EventTurnStarted, TurnID: "t1", Source: "user", AgentSeq: 1},
				{Type: protocol.EventTextDelta, ID: "m1", Delta: "half", AgentSeq: 2},
			}, reply: er}, er)
		}
		time.Sleep(45 * time.Second)
		synctest.Wait()
		for _, id := range []string{"back", "replaced"} {
			if got := statusOf(t, st, id); got != protocol.StatusDisconnected {
				t.Fatalf("%s after the heartbeat deadline: %s; want disconnected", id, got)
			}
			if got := turnOf(t, st, id, "t1"); got != "running" {
				t.Fatalf("%s's turn after the heartbeat deadline: %s; want still running (its sandbox may come back)", id, got)
			}
		}

		// The same instance comes back and its agent ends the turn.
		r := newReply[openedStream]()
		o := mustCall(t, w, &openStreamReq{id: "back", from: Sandbox{Instance: "i1"}, reply: r}, r)
		defer o.sub.Close()
		er := newReply[protocol.EventsAccepted]()
		mustCall(t, w, &eventsReq{id: "back", from: Sandbox{Instance: "i1"}, events: []protocol.Event{
			{Type: protocol.EventTextDelta, ID: "m1", Delta: " and the rest", AgentSeq: 3},
			{Type: protocol.EventTurnCompleted, TurnID: "t1", StopReason: protocol.StopEndTurn, AgentSeq: 4},
		}, reply: er}, er)
		if got := turnOf(t, st, "back", "t1"); got != "completed" {
			t.Errorf("turn finished by the returning sandbox: %s; want completed", got)
		}

		// A new instance takes over the other: its turn ends interrupted.
		r = newReply[openedStream]()
		o = mustCall(t, w, &openStreamReq{id: "replaced", from: Sandbox{Instance: "i2"}, reply: r}, r)
		defer o.sub.Close()
		if got := turnOf(t, st, "replaced", "t1"); got != "interrupted" {
			t.Errorf("turn after a new instance took over: %s; want interrupted", got)
		}
		if got := statusOf(t, st, "replaced"); got != protocol.StatusLive {
			t.Errorf("session after the takeover: %s; want live", got)
		}
	})
}
