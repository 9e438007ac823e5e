package e2e

import (
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// TestSessionCapTranscriptStaysTrue: an agent that writes past its
// session's --max-session-bytes. The server refuses its output from the
// cap on and agentd drops it, but the transcript says so (agentd's
// notice, one for the first refusal and one per 100 after it, not one per
// event), and its turns still end: the server's reserve past the cap
// takes them.
func TestSessionCapTranscriptStaysTrue(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t, "--max-session-bytes", "8000")
	id := "capped"
	d, f := e.sessionWith(id, []string{"DEMO_AGENT_DELAY=0"}, nil)
	e.prompt(id, "slow: 400")
	waitTurns(t, e.ctx, f, 1)
	e.prompt(id, "after the cap")
	waitTurns(t, e.ctx, f, 2)
	arts := e.assertModelMatchesServer(f, id)

	var turns []string
	var notices []*protocol.Artifact
	for _, a := range arts {
		switch {
		case a.Type == protocol.ArtifactTurn:
			turns = append(turns, a.String("status"))
		case a.Type == protocol.ArtifactNotice && a.String("code") == "agentd_events_dropped":
			notices = append(notices, a)
		}
	}
	if strings.Join(turns, " ") != "completed completed" {
		t.Fatalf("turns %v; want both completed\n%s", turns, strings.Join(render(arts), "\n"))
	}
	if len(notices) == 0 {
		t.Fatalf("no notice says events were not stored:\n%s", strings.Join(render(arts), "\n"))
	}
	first := notices[0].String("message")
	if !strings.Contains(first, "text_delta") || !strings.Contains(first, "--max-session-bytes") || !strings.Contains(first, "not in the transcript") {
		t.Fatalf("first notice %q: want it to name the refused event's type, the server's reason and that it is not in the transcript", first)
	}
	// agentd dropped some 330 events: a notice for the first and one per
	// 100 after it.
	dropped := 0
	for _, l := range d.Output() {
		if strings.Contains(l, "server refused event; dropping it") {
			dropped++
		}
	}
	if dropped < 100 || len(notices) != 1+(dropped-1)/100 {
		t.Fatalf("agentd dropped %d events and told %d notices; want one and one per 100 more\n%s", dropped, len(notices), strings.Join(render(arts), "\n"))
	}
}
