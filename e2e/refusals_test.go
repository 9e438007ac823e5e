package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// TestGarbledHeaderDropsNoEvent: something between agentd and the server
// (here a proxy; as well a garbled state file) spoils a header of
// agentd's event posts, and the server refuses them as invalid. Those are
// refusals of the request, not of its events: agentd drops none, logs
// each refusal, and sends the same events again until the header comes
// through intact; then every event is stored exactly once and the
// transcript has no gap and no notice of dropped events.
func TestGarbledHeaderDropsNoEvent(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	g, err := NewHeaderGarbler(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	id := "garbled"
	e.create(id, "")
	f := Follow(e.ctx, e.c, id)
	t.Cleanup(f.Close)
	d := e.agentd(g.URL(), id, nil, nil)
	e.waitIdle(id)

	// Each header the events route checks, twice: the agentd's events
	// wait behind six refusals.
	garbles := []Garble{
		{protocol.HeaderSessionCreated, "0"},
		{protocol.HeaderCommandCursor, "-1"},
		{protocol.HeaderInstance, "not an id!"},
	}
	g.GarbleNext(append(garbles, garbles...)...)
	e.prompt(id, "slow: 20")
	// The turn's end, or else (a dropped turn_started leaves no turn to
	// end) agentd's notice that it dropped events.
	err = f.WaitFor(e.ctx, "the turn's end or a notice of dropped events", func(arts []*protocol.Artifact) bool {
		for _, a := range arts {
			if a.Type == protocol.ArtifactTurn && a.String("status") != "running" && a.String("status") != "" {
				return true
			}
			if a.Type == protocol.ArtifactNotice && a.String("code") == "agentd_events_dropped" {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("%v\nmodel:\n%s", err, strings.Join(render(f.Artifacts()), "\n"))
	}
	for _, a := range f.Artifacts() {
		if a.Type == protocol.ArtifactNotice && a.String("code") == "agentd_events_dropped" {
			t.Fatalf("agentd dropped events for a garbled header; the transcript:\n%s", strings.Join(render(f.Artifacts()), "\n"))
		}
	}

	garbled := g.Garbled()
	if len(garbled) != 2*len(garbles) || g.Left() != 0 {
		t.Fatalf("%d event posts garbled, %d garbles left; want %d and none", len(garbled), g.Left(), 2*len(garbles))
	}
	for _, gb := range garbled {
		if gb.Status != http.StatusBadRequest {
			t.Fatalf("garbled %s: %s posted %s got %d; want 400", gb.Header, gb.Value, gb.Body, gb.Status)
		}
	}
	var dropped, refused []string
	for _, l := range d.Output() {
		if strings.Contains(l, "dropping it") {
			dropped = append(dropped, l)
		}
		if strings.Contains(l, "refused the request") {
			refused = append(refused, l)
		}
	}
	if len(dropped) > 0 {
		t.Fatalf("agentd dropped events for a garbled header:\n%s", strings.Join(dropped, "\n"))
	}
	if len(refused) != len(garbled) {
		t.Fatalf("agentd logged %d refusals of its request, want %d:\n%s", len(refused), len(garbled), strings.Join(refused, "\n"))
	}
	for i, gb := range garbled {
		if !strings.Contains(refused[i], gb.Header) {
			t.Errorf("refusal %d, of %s, logged as %q: want it to name the header", i+1, gb.Header, refused[i])
		}
	}

	// Every event of every refused post is in the log, once.
	stored := map[int64]int{}
	for after := int64(0); ; {
		page, err := e.c.EventLog(e.ctx, id, after, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, le := range page.Events {
			stored[le.AgentSeq]++
		}
		if page.Next == nil {
			break
		}
		after = *page.Next
	}
	for _, gb := range garbled {
		var evs []protocol.Event
		if err := json.Unmarshal(gb.Body, &evs); err != nil {
			t.Fatalf("garbled post %s: %v", gb.Body, err)
		}
		for _, ev := range evs {
			if ev.Type != protocol.EventHeartbeat && stored[ev.AgentSeq] != 1 {
				t.Errorf("%s agentSeq %d of a refused post is stored %d times; want once", ev.Type, ev.AgentSeq, stored[ev.AgentSeq])
			}
		}
	}

	// The transcript is the agent's turn, whole, and says nothing was
	// dropped because nothing was.
	arts := e.assertModelMatchesServer(f, id)
	wantTranscript(t, "garbled", arts, []string{
		"turn completed end_turn",
		"user: slow: 20",
		"text done: " + words(20),
	})
}
