package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rein-ai/rein/e2e/internal/loadgen"
)

// The load helpers rein-soak shares live in loadgen; these names keep the
// figures reading as before.
func newHTTPClient(conns int) *http.Client { return loadgen.NewHTTPClient(conns) }

func post(ctx context.Context, c *http.Client, url string, body []byte) error {
	return loadgen.Post(ctx, c, url, body)
}

func cpuSeconds(pid int) float64         { return loadgen.CPUSeconds(pid) }
func memKiB(pid int, field string) int64 { return loadgen.MemKiB(pid, field) }

// hammer runs workers that call fn until d has passed and returns how many
// calls succeeded in total. The first error stops everything.
func hammer(d time.Duration, workers int, fn func(ctx context.Context, worker, i int) error) (int64, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var n atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				if err := fn(ctx, w, i); err != nil {
					if ctx.Err() == nil {
						once.Do(func() { firstErr = err; cancel() })
					}
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return n.Load(), time.Since(start), firstErr
}

// eachOf calls fn(0) … fn(n-1), each once, from workers goroutines at a
// time; a worker stops at its first error, and the errors are joined.
func eachOf(n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(n) && errs[w] == nil; i = next.Add(1) - 1 {
				errs[w] = fn(int(i))
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// subscriber holds one SSE stream open and counts the events it carries.
// With latency set it also parses each delta as a send time (UnixNano).
type subscriber struct {
	ready     chan struct{} // closed on snapshot_complete
	events    atomic.Int64
	latencyMu sync.Mutex
	latencies []time.Duration
}

func subscribe(ctx context.Context, c *http.Client, url string, latency bool, wg *sync.WaitGroup) (*subscriber, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	s := &subscriber{ready: make(chan struct{})}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer resp.Body.Close()
		s.read(resp.Body, latency)
	}()
	return s, nil
}

var (
	appendKey       = []byte(`"append":"`)
	textKey         = []byte(`"text":"`)
	createdTextType = []byte(`"type":"assistant_text"`)
)

func (s *subscriber) read(r io.Reader, latency bool) {
	br := bufio.NewReaderSize(r, 32<<10)
	readySent := false
	// seen is how many tokens of the text the subscriber has: a replica
	// that learns of a change from another one may send the whole text
	// again (artifact_snapshot), and only its new tokens are deliveries.
	seen := 0
	var long []byte
	for {
		line, err := br.ReadSlice('\n')
		for err == bufio.ErrBufferFull { // a line longer than the buffer
			long = append(long[:0], line...)
			line, err = br.ReadSlice('\n')
			line = append(long, line...)
		}
		if err != nil {
			if !readySent {
				close(s.ready)
			}
			return
		}
		switch {
		case bytes.HasPrefix(line, []byte("event: artifact_created")):
			// A new text block: its tokens are all new (seen counts the
			// block being streamed; the bench streams one at a time).
			seen = 0
		case bytes.HasPrefix(line, []byte("event: snapshot_complete")):
			if !readySent {
				close(s.ready)
				readySent = true
			}
		case bytes.HasPrefix(line, []byte("data: ")):
			// Each token of an append is one delivered event (the server may
			// coalesce several deltas into one append); with latency on, a
			// token is the time it was sent (UnixNano).
			// The first delta of a block arrives inside artifact_created,
			// the whole text in an artifact_snapshot.
			key, whole := appendKey, false
			if !bytes.Contains(line, appendKey) && bytes.Contains(line, createdTextType) {
				key, whole = textKey, true
			}
			i := bytes.Index(line, key)
			if i < 0 {
				continue
			}
			rest := line[i+len(key):]
			j := bytes.IndexByte(rest, '"')
			if j < 0 {
				continue
			}
			toks := strings.Fields(string(rest[:j]))
			if whole {
				toks, seen = toks[min(seen, len(toks)):], len(toks)
			} else {
				seen += len(toks)
			}
			if !readySent {
				continue // the snapshot: what was there before
			}
			s.events.Add(int64(len(toks)))
			if latency {
				now := time.Now().UnixNano()
				s.latencyMu.Lock()
				for _, f := range toks {
					if t, err := strconv.ParseInt(f, 10, 64); err == nil {
						s.latencies = append(s.latencies, time.Duration(now-t))
					}
				}
				s.latencyMu.Unlock()
			}
		}
	}
}

func (s *subscriber) takeLatencies() []time.Duration {
	s.latencyMu.Lock()
	defer s.latencyMu.Unlock()
	l := s.latencies
	s.latencies = nil
	return l
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(p * float64(len(ds)-1))
	return ds[i]
}
