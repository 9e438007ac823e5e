package e2e

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrapeMetrics GETs a /metrics URL (with the client token when token is
// set) and returns its samples by series as printed.
func scrapeMetrics(t *testing.T, url, token string) map[string]float64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: status %d", url, resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestMetrics: the real binaries serve their metrics. rein-server on
// --metrics-addr without a token and on the API address with the client
// token only; agentd on its --metrics-addr. After one turn both count it.
func TestMetrics(t *testing.T) {
	srvMetrics := freeAddr(t)
	e := newEnv(t, "--metrics-addr", srvMetrics)
	agentdMetrics := freeAddr(t)
	e.create("m1", "")
	e.agentd(e.srv.URL, "m1", nil, []string{"--metrics-addr", agentdMetrics})
	e.waitIdle("m1")
	f := Follow(e.ctx, e.c, "m1")
	t.Cleanup(f.Close)
	e.prompt("m1", "hello")
	waitTurns(t, e.ctx, f, 1)
	e.waitIdle("m1")

	// The writer counts right after it publishes what the watchers saw:
	// poll briefly rather than race it.
	var m map[string]float64
	ok := func() bool {
		m = scrapeMetrics(t, "http://"+srvMetrics+"/metrics", "")
		return m[`rein_sessions{status="idle"}`] == 1 && m["rein_sandbox_connects_total"] == 1 && m["rein_events_ingested_total"] >= 3 &&
			m[`rein_stream_subscribers{stream="commands"}`] == 1 && m[`rein_http_requests_total{code="201",route="POST /sessions/{id}"}`] == 1
	}
	for end := time.Now().Add(10 * time.Second); !ok() && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
	}
	if !ok() {
		t.Errorf("rein-server metrics after one turn: %v", m)
	}
	if _, ok := m["process_resident_memory_bytes"]; !ok {
		t.Error("rein-server: no process collector")
	}
	scrapeMetrics(t, e.srv.URL+"/metrics", clientToken)
	resp, err := http.Get(e.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /metrics on the API address without a token: %d; want 401", resp.StatusCode)
	}

	// agentd counts a POST when its 202 arrives, after the server
	// published: poll too.
	var a map[string]float64
	agentdOK := func() bool {
		a = scrapeMetrics(t, "http://"+agentdMetrics+"/metrics", "")
		return a["rein_agentd_events_accepted_total"] >= 3 && a["rein_agentd_stream_connects_total"] == 1 && a[`rein_agentd_post_duration_seconds_count{outcome="ok"}`] >= 1
	}
	for end := time.Now().Add(10 * time.Second); !agentdOK() && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
	}
	if !agentdOK() {
		t.Errorf("agentd metrics after one turn: %v", a)
	}
}
