package server_test

import (
	"bytes"
	"fmt"
	"github.com/rein-ai/rein/server/app"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
)

// BenchmarkIngest posts single events from 32 concurrent clients over HTTP
// to a server on a real SQLite file: the group commit's throughput.
// Run: go test -run '^$' -bench Ingest -benchtime 20000x
func BenchmarkIngest(b *testing.B) {
	s := start(b, app.Options{})
	c := newClient(b, s)
	const sessions = 8
	for i := range sessions {
		c.must(http.StatusCreated, nil, "POST", fmt.Sprintf("/sessions/s%d", i), nil)
	}
	var n atomic.Int64
	b.SetParallelism(16) // x GOMAXPROCS goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			body := fmt.Sprintf(`{"type":"text_delta","delta":"token %d ","agentSeq":%d}`, i, i)
			resp, err := http.Post(fmt.Sprintf("%s/sessions/s%d/events", s.URL(), i%sessions), "application/json", bytes.NewBufferString(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkIngestBatch posts batches of 500 text deltas (a new block per
// batch) from 2 clients: the path agentd takes under load. One op is one
// batch. Run: go test -run '^$' -bench IngestBatch -benchtime 400x
func BenchmarkIngestBatch(b *testing.B) {
	s := start(b, app.Options{})
	c := newClient(b, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/b0", nil)
	c.must(http.StatusCreated, nil, "POST", "/sessions/b1", nil)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	var n atomic.Int64
	b.SetParallelism(1)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			var body bytes.Buffer
			body.WriteByte('[')
			for k := range 500 {
				if k > 0 {
					body.WriteByte(',')
				}
				fmt.Fprintf(&body, `{"type":"text_delta","id":"m%d","delta":"word%d "}`, i, k)
			}
			body.WriteByte(']')
			resp, err := hc.Post(fmt.Sprintf("%s/sessions/b%d/events", s.URL(), i%2), "application/json", &body)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "events/s")
}
