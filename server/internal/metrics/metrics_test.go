package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// Sessions move between the status gauges; a removed session leaves
// them; the exposition lists every status and stream kind from the
// start (a 0 is a value, an absent series is a question).
func TestSessionGaugesAndExposition(t *testing.T) {
	m := New()
	m.SessionStatus("", protocol.StatusBootstrapping)
	m.SessionStatus(protocol.StatusBootstrapping, protocol.StatusLive)
	m.SessionStatus("", protocol.StatusLive)
	m.SessionStatus(protocol.StatusLive, "")
	m.StreamOpened("commands")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	out := string(b)
	for _, want := range []string{
		`rein_sessions{status="bootstrapping"} 0`, `rein_sessions{status="live"} 1`,
		`rein_sessions{status="idle"} 0`, `rein_sessions{status="disconnected"} 0`,
		`rein_stream_subscribers{stream="commands"} 1`, `rein_stream_subscribers{stream="artifacts"} 0`,
		`rein_stream_clients_dropped_total{reason="overflow",stream="sessions"} 0`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("exposition lacks %q", want)
		}
	}
}

// The calls the hot paths make cost an atomic add and allocate nothing.
func BenchmarkObserver(b *testing.B) {
	m := New()
	for _, bc := range []struct {
		name string
		f    func()
	}{
		{"EventsIngested", func() { m.EventsIngested(3) }},
		{"Committed", func() { m.Committed(time.Millisecond, 7) }},
		{"SessionStatus", func() { m.SessionStatus(protocol.StatusLive, protocol.StatusIdle) }},
		{"Stream", func() { m.StreamOpened("artifacts"); m.StreamClosed("artifacts") }},
		{"Request", func() { m.Request("POST /sessions/{id}/events", 202) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bc.f()
			}
		})
	}
}
