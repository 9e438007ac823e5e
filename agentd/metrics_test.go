package agentd_test

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

// scrape GETs a /metrics URL and returns every sample by its series as
// printed; nil when the request fails.
func scrape(tb testing.TB, url string) map[string]float64 {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("scrape %s: status %d", url, resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			tb.Fatalf("scrape %s: sample %q: %v", url, line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// --metrics-addr serves agentd's metrics while it runs: POSTs by outcome
// (a 503 then a success), events accepted as the server counted them, the
// queue drained to 0, the outbox size, and a reconnect after the server
// dropped the command stream.
func TestMetrics(t *testing.T) {
	srv := fakeserver.New(t, "s1")
	srv.EventsFault = func(attempt int) (int, bool) {
		if attempt == 1 {
			return http.StatusServiceUnavailable, false
		}
		return 0, true
	}
	addr := freeAddr(t)
	url := "http://" + addr + "/metrics"
	start(t, srv, agentd.Options{MetricsAddr: addr, StateDir: t.TempDir()})
	waitStarted(t, srv, 1)
	srv.Prompt("hello")
	srv.Wait(t, "turn t1 to end", func(evs []protocol.Event) bool { return fakeserver.Has(evs, turnCompleted("t1", protocol.StopEndTurn)) })

	m := waitMetrics(t, url, "every stored event counted and none left queued", func(m map[string]float64) bool {
		return m["rein_agentd_events_accepted_total"] == float64(len(srv.Events())) && m["rein_agentd_queue_depth"] == 0
	})
	if n := m[`rein_agentd_post_duration_seconds_count{outcome="error"}`]; n != 1 {
		t.Errorf("POSTs that failed = %v; want 1 (the injected 503)", n)
	}
	if n := m[`rein_agentd_post_duration_seconds_count{outcome="ok"}`]; n < 1 {
		t.Errorf("POSTs that succeeded = %v; want at least 1", n)
	}
	if n, ok := m["rein_agentd_outbox_bytes"]; !ok || n <= 0 {
		t.Errorf("rein_agentd_outbox_bytes = %v (present %v); want the outbox's size", n, ok)
	}
	if n, ok := m["rein_agentd_outbox_blocked"]; !ok || n != 0 {
		t.Errorf("rein_agentd_outbox_blocked = %v (present %v); want 0", n, ok)
	}
	if m["rein_agentd_stream_connects_total"] != 1 || m["rein_agentd_stream_reconnects_total"] != 0 {
		t.Errorf("connects %v, reconnects %v; want 1 and 0", m["rein_agentd_stream_connects_total"], m["rein_agentd_stream_reconnects_total"])
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Error("the Go collector is missing")
	}

	srv.DropStreams()
	// One scrape reads the two counters one after the other, so it may
	// hold the reconnect and not yet its connect: wait for both.
	waitMetrics(t, url, "a reconnect counted, and its connect", func(m map[string]float64) bool {
		return m["rein_agentd_stream_reconnects_total"] == 1 && m["rein_agentd_stream_connects_total"] == 2
	})
}

// waitMetrics scrapes url until cond holds for the samples, and returns
// them; it fails the test after fakeserver.WaitTimeout. It polls: agentd
// counts a POST's answer or a stream's opening after the fake server
// has seen the request, so waiting on the fake server's changes
// (WaitState) can miss the last update for good.
func waitMetrics(tb testing.TB, url, what string, cond func(map[string]float64) bool) map[string]float64 {
	tb.Helper()
	deadline := time.Now().Add(fakeserver.WaitTimeout)
	for {
		m := scrape(tb, url)
		if cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s; last scrape: accepted %v, queued %v, connects %v, reconnects %v", what,
				m["rein_agentd_events_accepted_total"], m["rein_agentd_queue_depth"], m["rein_agentd_stream_connects_total"], m["rein_agentd_stream_reconnects_total"])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
