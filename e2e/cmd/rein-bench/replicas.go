package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rein-ai/rein/e2e"
)

// replicaCount is how many rein-server replicas the replicas figure runs.
const replicaCount = 3

// 9. Several replicas on one PostgreSQL database: the latency from a POST
// on one replica to the subscribers of the session on the other replicas
// (the change travels through the database and its notification), with
// 1,000 subscribers of one session spread evenly over the 3 replicas and
// 100 events/s POSTed to replica 0. The subscribers on replica 0 itself
// are measured beside them, for comparison (the note).
func (b *bench) replicas() ([]Figure, error) {
	db, ok, err := b.pgFor("replicas")
	if !ok {
		return nil, err
	}
	dir, err := os.MkdirTemp(b.tmp, "replicas-")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reps, err := e2e.StartReplicas(ctx, b.logf, e2e.ReplicasConfig{Bin: filepath.Join(b.bin, "rein-server"), Dir: dir, DB: db,
		N: replicaCount, Args: []string{"--log-level", "error"}})
	if err != nil {
		return nil, err
	}
	defer reps.Stop()
	for _, s := range reps.Servers {
		b.track(s.Proc)
	}
	if err := createSessions(reps.Servers[0].URL, "lat"); err != nil {
		return nil, err
	}
	n := b.count(1000)
	urls := make([]string, replicaCount)
	for i, s := range reps.Servers {
		urls[i] = s.URL + "/sessions/lat/stream"
	}
	lat, err := b.spreadLatency(reps.Servers[0].URL+"/sessions/lat/events", urls, n)
	if err != nil {
		return nil, err
	}
	reps.Stop()
	var cross []time.Duration
	for _, l := range lat[1:] {
		cross = append(cross, l...)
	}
	// The minimal go-sse hub under the same load, as for figure 4: on a
	// busy machine it says how much of the latency is the machine's.
	h50, h99, err := b.hubLatency(n)
	if err != nil {
		return nil, err
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	note := fmt.Sprintf("%d replicas on one PostgreSQL database, %d subscribers of one session spread over them, 100 events/s POSTed to replica 0; "+
		"subscribers on the other replicas (%d deliveries); on replica 0 itself: p50 %.1f ms, p99 %.1f ms; minimal go-sse hub (one process) under the same load: p50 %.1f ms, p99 %.1f ms",
		replicaCount, n, len(cross), ms(percentile(lat[0], 0.50)), ms(percentile(lat[0], 0.99)), h50, h99)
	return []Figure{
		{Name: "replicas_latency_p50", Unit: "ms", Value: ms(percentile(cross, 0.50)), Target: 50, Note: note},
		{Name: "replicas_latency_p99", Unit: "ms", Value: ms(percentile(cross, 0.99)), Target: 50, Note: note},
	}, nil
}

// spreadLatency posts 100 events/s for 5 s (scaled) to postURL while n
// subscribers, spread evenly over streamURLs, follow them; it returns the
// POST-to-receipt latencies of each URL's subscribers. Every delivery must
// arrive.
func (b *bench) spreadLatency(postURL string, streamURLs []string, n int) ([][]time.Duration, error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	c := newHTTPClient(n + 8)
	groups := make([][]*subscriber, len(streamURLs))
	var all []*subscriber
	for i, u := range streamURLs {
		k := n / len(streamURLs)
		if i < n%len(streamURLs) {
			k++
		}
		subs, err := subscribeMany(ctx, c, u, k, true, &wg)
		if err != nil {
			return nil, fmt.Errorf("subscribe to %s: %w", u, err)
		}
		groups[i] = subs
		all = append(all, subs...)
	}
	posted := int(b.dur(5*time.Second) / (10 * time.Millisecond))
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for range posted {
		<-tick.C
		body := fmt.Sprintf(`{"type":"text_delta","id":"m1","delta":"%d "}`, time.Now().UnixNano())
		if err := post(ctx, c, postURL, []byte(body)); err != nil {
			return nil, err
		}
	}
	drain(all, int64(posted*n))
	out := make([][]time.Duration, len(groups))
	got := 0
	for i, subs := range groups {
		for _, s := range subs {
			out[i] = append(out[i], s.takeLatencies()...)
		}
		got += len(out[i])
	}
	if got < posted*n {
		return nil, fmt.Errorf("replicas latency: %d of %d deliveries arrived", got, posted*n)
	}
	return out, nil
}
