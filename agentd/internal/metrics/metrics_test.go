package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape serves m once and parses the answer with Prometheus's own text
// parser, which refuses what a Prometheus server would.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("Content-Type %q; want the text format 0.0.4", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(io.NopCloser(rec.Body))
	if err != nil {
		t.Fatalf("the exposition does not parse: %v\n%s", err, rec.Body.String())
	}
	return fams
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, typ dto.MetricType) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("%s missing", name)
	}
	if f.GetType() != typ || len(f.GetMetric()) != 1 {
		t.Fatalf("%s: type %v with %d samples; want %v with one", name, f.GetType(), len(f.GetMetric()), typ)
	}
	m := f.GetMetric()[0]
	switch typ {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	}
	t.Fatalf("value of a %v", typ)
	return 0
}

// Every series parses with its type and value: gauges read at scrape
// time, counters, the POST histogram by outcome with cumulative buckets,
// and the runtime's and process's figures.
func TestExposition(t *testing.T) {
	queue := 7
	m := New(Gauges{
		Queue:         func() int { return queue },
		OutboxBytes:   func() int64 { return 4096 },
		OutboxBlocked: func() bool { return true },
		Accepted:      func() int { return 120 },
		Duplicates:    func() int { return 3 },
		Dropped:       func() int { return 1 },
		Cut:           func() int { return 4 },
		Refused:       func() int { return 6 },
	})
	m.Connected()
	m.Connected()
	m.Connected()
	for _, d := range []time.Duration{500 * time.Microsecond, time.Millisecond, 20 * time.Millisecond, 40 * time.Second} {
		m.Posted(d, nil)
	}
	m.Posted(3*time.Second, errors.New("503"))
	queue = 2
	fams := scrape(t, m)

	for name, want := range map[string]float64{"rein_agentd_queue_depth": 2, "rein_agentd_outbox_bytes": 4096, "rein_agentd_outbox_blocked": 1} {
		if got := value(t, fams, name, dto.MetricType_GAUGE); got != want {
			t.Errorf("%s = %v; want %v", name, got, want)
		}
	}
	for name, want := range map[string]float64{
		"rein_agentd_events_accepted_total": 120, "rein_agentd_events_duplicates_total": 3,
		"rein_agentd_events_dropped_total": 1, "rein_agentd_events_cut_total": 4,
		"rein_agentd_requests_refused_total": 6, "rein_agentd_stream_connects_total": 3,
		"rein_agentd_stream_reconnects_total": 2,
	} {
		if got := value(t, fams, name, dto.MetricType_COUNTER); got != want {
			t.Errorf("%s = %v; want %v", name, got, want)
		}
	}

	post := fams["rein_agentd_post_duration_seconds"]
	if post.GetType() != dto.MetricType_HISTOGRAM || len(post.GetMetric()) != 2 {
		t.Fatalf("post histogram: %v", post)
	}
	for _, s := range post.GetMetric() {
		h := s.GetHistogram()
		le := map[float64]uint64{}
		for _, b := range h.GetBucket() {
			le[b.GetUpperBound()] = b.GetCumulativeCount()
		}
		switch outcome := s.GetLabel()[0].GetValue(); outcome {
		case "ok":
			// 0.5 ms and 1 ms fall in le=0.001 (bounds are inclusive),
			// 20 ms in 0.025, 40 s above every bound.
			if h.GetSampleCount() != 4 || le[0.001] != 2 || le[0.01] != 2 || le[0.025] != 3 || le[30] != 3 {
				t.Errorf("ok: count %d, buckets %v", h.GetSampleCount(), le)
			}
			if want := 0.0005 + 0.001 + 0.02 + 40; h.GetSampleSum() < want-1e-9 || h.GetSampleSum() > want+1e-9 {
				t.Errorf("ok: sum %v; want %v", h.GetSampleSum(), want)
			}
		case "error":
			if h.GetSampleCount() != 1 || le[2.5] != 0 || le[5] != 1 || h.GetSampleSum() != 3 {
				t.Errorf("error: count %d, sum %v, buckets %v", h.GetSampleCount(), h.GetSampleSum(), le)
			}
		default:
			t.Errorf("outcome %q", outcome)
		}
	}

	if n := value(t, fams, "go_goroutines", dto.MetricType_GAUGE); n < 1 {
		t.Errorf("go_goroutines = %v", n)
	}
	if fams["go_info"].GetMetric()[0].GetLabel()[0].GetValue() != runtime.Version() {
		t.Errorf("go_info: %v", fams["go_info"])
	}
	if n := value(t, fams, "go_memstats_heap_alloc_bytes", dto.MetricType_GAUGE); n <= 0 {
		t.Errorf("go_memstats_heap_alloc_bytes = %v", n)
	}
	if start := value(t, fams, "process_start_time_seconds", dto.MetricType_GAUGE); time.Since(time.Unix(int64(start), 0)) > time.Hour {
		t.Errorf("process_start_time_seconds = %v", start)
	}
	if runtime.GOOS == "linux" {
		if rss := value(t, fams, "process_resident_memory_bytes", dto.MetricType_GAUGE); rss < 1<<20 {
			t.Errorf("process_resident_memory_bytes = %v; want this test's RSS", rss)
		}
		if fds := value(t, fams, "process_open_fds", dto.MetricType_GAUGE); fds < 3 {
			t.Errorf("process_open_fds = %v", fds)
		}
		value(t, fams, "process_cpu_seconds_total", dto.MetricType_COUNTER)
		value(t, fams, "process_max_fds", dto.MetricType_GAUGE)
	}
}

// Without an outbox the outbox series is absent, not 0.
func TestNoOutboxNoSeries(t *testing.T) {
	m := New(Gauges{Queue: func() int { return 0 }, Accepted: func() int { return 0 }, Duplicates: func() int { return 0 }, Dropped: func() int { return 0 }, Cut: func() int { return 0 }, Refused: func() int { return 0 }})
	for _, name := range []string{"rein_agentd_outbox_bytes", "rein_agentd_outbox_blocked"} {
		if f, ok := scrape(t, m)[name]; ok {
			t.Errorf("%s without an outbox: %v", name, f)
		}
	}
}

// HELP text and label values are escaped as the format asks.
func TestEscapes(t *testing.T) {
	if got := escapeHelp("a\\b\nc"); got != `a\\b\nc` {
		t.Errorf("escapeHelp: %q", got)
	}
	if got := escapeLabel("go\"1\\\n"); got != `go\"1\\\n` {
		t.Errorf("escapeLabel: %q", got)
	}
}
