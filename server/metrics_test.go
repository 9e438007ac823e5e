package server_test

import (
	"bufio"
	"github.com/rein-ai/rein/server/app"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// scrape GETs a /metrics URL and returns every sample by its series as
// printed ("name" or `name{label="v",...}`, labels sorted by name).
func scrape(t *testing.T, url string, hdr ...string) map[string]float64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: status %d: %s", url, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("scrape %s: Content-Type %q; want the text exposition format", url, ct)
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
			t.Fatalf("scrape %s: sample %q: %v", url, line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// wantSamples fails the test for every series whose value differs.
func wantSamples(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("series %s missing", k)
			continue
		}
		if g != w {
			t.Errorf("%s = %v; want %v", k, g, w)
		}
	}
}

// /metrics on the real handler, after real traffic, counts what happened:
// events ingested are the events posted (not heartbeats, not retries),
// the subscriber gauges go up and down with streams, sessions move between
// status gauges, connects and supersedes are counted, requests are counted
// by route pattern, and the Go and process collectors are there. The API
// address wants the client token; the --metrics-addr listener does not.
func TestMetricsAfterTraffic(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	s := start(t, app.Options{APIToken: testAPIToken, MetricsAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c := newClient(t, s)
	admin := bearerHdr(testAPIToken)
	open := "http://" + s.MetricsAddr() + "/metrics"

	if st, e, _ := c.status("GET", "/metrics", ""); st != http.StatusUnauthorized || e.Code != protocol.CodeUnauthorized {
		t.Fatalf("GET /metrics without a token = %d %+v; want 401", st, e)
	}
	sandboxTok := c.create("a", admin...)
	if st, _, _ := c.status("GET", "/metrics", "", bearerHdr(sandboxTok)...); st != http.StatusForbidden {
		t.Fatalf("GET /metrics with a sandbox token = %d; want 403", st)
	}
	got := scrape(t, c.base+"/metrics", admin...)
	wantSamples(t, got, map[string]float64{
		`rein_sessions{status="bootstrapping"}`:                            1,
		`rein_sessions{status="live"}`:                                     0,
		`rein_sessions_created_total`:                                      1,
		`rein_events_ingested_total`:                                       0,
		`rein_stream_subscribers{stream="artifacts"}`:                      0,
		`rein_http_requests_total{code="201",route="POST /sessions/{id}"}`: 1,
		`rein_http_requests_total{code="401",route="GET /metrics"}`:        1,
	})
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "rein_commit_duration_seconds_count", "rein_commit_group_size_count"} {
		if _, ok := got[name]; !ok {
			t.Errorf("series %s missing", name)
		}
	}

	cmds := c.stream("/sessions/a/commands", append(bearerHdr(sandboxTok), protocol.HeaderInstance, "i1")...)
	arts := c.stream("/sessions/a/stream", admin...)
	sess := c.stream("/sessions/stream", admin...)
	sess.next() // the snapshot of a, then snapshot_complete: subscribed
	apprs := c.stream("/approvals/stream", admin...)
	apprs.next() // its snapshot: subscribed
	// Three events, a heartbeat, then a retry of the last two (duplicates).
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events",
		`[{"type":"turn_started","turnId":"t1","source":"user","agentSeq":1},{"type":"text_delta","delta":"hi","agentSeq":2},{"type":"heartbeat"},{"type":"text_delta","delta":" there","agentSeq":3}]`,
		append(bearerHdr(sandboxTok), protocol.HeaderInstance, "i1")...)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events",
		`[{"type":"text_delta","delta":"hi","agentSeq":2},{"type":"text_delta","delta":" there","agentSeq":3}]`,
		append(bearerHdr(sandboxTok), protocol.HeaderInstance, "i1")...)
	// The streams' handlers count themselves before their first write;
	// each client has read from its stream, so each is counted.
	arts.next()
	got = scrape(t, open) // no token on the metrics listener
	wantSamples(t, got, map[string]float64{
		`rein_events_ingested_total`:                                              3,
		`rein_stream_subscribers{stream="artifacts"}`:                             1,
		`rein_stream_subscribers{stream="sessions"}`:                              1,
		`rein_stream_subscribers{stream="commands"}`:                              1,
		`rein_stream_subscribers{stream="approvals"}`:                             1,
		`rein_sessions{status="bootstrapping"}`:                                   0,
		`rein_sessions{status="live"}`:                                            1,
		`rein_sandbox_connects_total`:                                             1,
		`rein_sandbox_supersedes_total`:                                           0,
		`rein_http_requests_total{code="202",route="POST /sessions/{id}/events"}`: 2,
	})
	if got["rein_commit_group_size_sum"] < 1 || got["rein_commit_duration_seconds_count"] < 3 {
		t.Errorf("commit histograms: group size sum %v, commits %v; want the commits counted", got["rein_commit_group_size_sum"], got["rein_commit_duration_seconds_count"])
	}
	for k := range got {
		if strings.Contains(k, "/sessions/a") {
			t.Errorf("series %s carries a raw path; want the route pattern", k)
		}
	}

	// A command, a resend of it with its key, and a new command: the
	// resend is counted as replayed, and logged.
	for _, key := range []string{"k1", "k1", "k2"} {
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/commands", `{"type":"abort"}`, append(admin, protocol.HeaderIdempotencyKey, key)...)
	}
	wantSamples(t, scrape(t, open), map[string]float64{
		`rein_commands_total{result="stored"}`:   2,
		`rein_commands_total{result="replayed"}`: 1,
	})
	if want := `msg="command resent: answered with the stored one" session=a command=1 type=abort`; !strings.Contains(logs.String(), want) {
		t.Errorf("log has no %q:\n%s", want, logs.String())
	}

	// Another instance takes the session over: a supersede.
	cmds2 := c.stream("/sessions/a/commands", append(bearerHdr(sandboxTok), protocol.HeaderInstance, "i2")...)
	cmds.expectEnd()
	wantSamples(t, scrape(t, open), map[string]float64{
		`rein_sandbox_connects_total`:   2,
		`rein_sandbox_supersedes_total`: 1,
	})

	// Deleting the session ends its streams; the client hangs up the
	// session stream. The gauges come down once the handlers have returned.
	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/a", nil, admin...)
	arts.expectEnd()
	cmds2.expectEnd()
	sess.close()
	apprs.close()
	eventually(t, "every subscriber gauge is back to 0", func() bool {
		got := scrape(t, open)
		return got[`rein_stream_subscribers{stream="artifacts"}`] == 0 && got[`rein_stream_subscribers{stream="sessions"}`] == 0 &&
			got[`rein_stream_subscribers{stream="commands"}`] == 0 && got[`rein_stream_subscribers{stream="approvals"}`] == 0
	})
	wantSamples(t, scrape(t, open), map[string]float64{
		`rein_sessions{status="live"}`:         0,
		`rein_sessions{status="disconnected"}`: 0,
		`rein_sessions_removed_total`:          1,
		`rein_write_failures_total`:            0,
	})
}

// The operator's log lines are there, each with the session id.
func TestOperatorLogLines(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	s := start(t, app.Options{APIToken: testAPIToken, AccessLog: true,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c := newClient(t, s)
	admin := bearerHdr(testAPIToken)
	tok := c.create("a", admin...)
	cmds := c.stream("/sessions/a/commands", append(bearerHdr(tok), protocol.HeaderInstance, "i1")...)
	cmds2 := c.stream("/sessions/a/commands", append(bearerHdr(tok), protocol.HeaderInstance, "i2")...)
	cmds.expectEnd()
	c.status("POST", "/sessions/a/events", `{"type":"heartbeat"}`, bearerHdr(tok+"x")...)
	// The sandbox hangs up; its stream's end reaches the writer after the
	// handler returned.
	cmds2.close()
	eventually(t, "the disconnect is logged", func() bool { return strings.Contains(logs.String(), "sandbox disconnected") })
	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/a", nil, admin...)

	out := logs.String()
	for _, want := range []string{
		`msg="session created" session=a`,
		`msg="sandbox connected" session=a instance=i1`,
		`msg="sandbox superseded" session=a instance=i1 by=i2`,
		`msg="sandbox connected" session=a instance=i2`,
		`msg="token refused" route="POST /sessions/{id}/events" session=a code=unauthorized`,
		`msg="sandbox disconnected" session=a instance=i2`,
		`msg="session removed" session=a`,
		`msg=access method=POST route="POST /sessions/{id}" status=201`,
		`msg=access method=GET route="GET /sessions/{id}/commands" status=200`,
		`msg=access method=DELETE route="DELETE /sessions/{id}" status=204`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no log line with %s in:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "msg=access") && !strings.Contains(line, "session=a") {
			t.Errorf("access line without the session: %s", line)
		}
	}
}
