package uploader

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// fakeServer is an in-memory events endpoint for synctest bubbles (real
// sockets are not durably blocking, so httptest servers cannot be used).
type fakeServer struct {
	mu      sync.Mutex
	bodies  [][]byte
	times   []time.Time
	stored  []protocol.Event
	seen    map[int64]bool
	handler func(attempt int, body []byte) (status int, store bool, delay time.Duration)
	// page, when set, is the body of every error answer instead of the
	// server's JSON: what a proxy in front of the server answers.
	page string
	// scope is the scope of every error answer's JSON body.
	scope protocol.Scope
}

func (f *fakeServer) RoundTrip(req *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(req.Body)
	f.mu.Lock()
	f.bodies = append(f.bodies, body)
	f.times = append(f.times, time.Now())
	attempt := len(f.bodies)
	f.mu.Unlock()
	status, store, delay := http.StatusAccepted, true, time.Duration(0)
	if f.handler != nil {
		status, store, delay = f.handler(attempt, body)
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	rec := httptest.NewRecorder()
	var acc protocol.EventsAccepted
	if store {
		evs, err := protocol.DecodeEvents(body)
		if err != nil {
			rec.WriteHeader(400)
			json.NewEncoder(rec).Encode(protocol.ErrorBody{Code: protocol.CodeInvalid, Message: err.Error()})
			return rec.Result(), nil
		}
		f.mu.Lock()
		if f.seen == nil {
			f.seen = map[int64]bool{}
		}
		for _, ev := range evs {
			if f.seen[ev.AgentSeq] {
				acc.Duplicates++
				continue
			}
			f.seen[ev.AgentSeq] = true
			f.stored = append(f.stored, ev)
			acc.Accepted++
		}
		f.mu.Unlock()
	}
	rec.WriteHeader(status)
	if status == http.StatusAccepted {
		json.NewEncoder(rec).Encode(acc)
	} else if f.page != "" {
		io.WriteString(rec, f.page)
	} else {
		code := map[int]protocol.Code{400: protocol.CodeInvalid, 404: protocol.CodeNotFound, 409: protocol.CodeSuperseded, 500: protocol.CodeInternal, 503: protocol.CodeUnavailable}[status]
		json.NewEncoder(rec).Encode(protocol.ErrorBody{Code: code, Message: "injected", Scope: f.scope})
	}
	return rec.Result(), nil
}

func (f *fakeServer) snapshot() (bodies [][]byte, stored []protocol.Event, times []time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.bodies...), append([]protocol.Event(nil), f.stored...), append([]time.Time(nil), f.times...)
}

// storedSeqs returns the stored events and their agentSeqs, in order.
func (f *fakeServer) storedSeqs() ([]protocol.Event, []int64) {
	_, stored, _ := f.snapshot()
	var seqs []int64
	for _, ev := range stored {
		seqs = append(seqs, ev.AgentSeq)
	}
	return stored, seqs
}

func newTest(f *fakeServer, opts Options) *Uploader {
	opts.Server, opts.Session, opts.Instance = "http://rein.test", "s1", "i1"
	opts.Client = &http.Client{Transport: f}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = -1
	}
	return New(opts)
}

func notice(i int) protocol.Event {
	return protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelInfo, Message: "n" + strings.Repeat("x", i%3)}
}

// run starts u.Run and returns a func that closes u and returns Run's error.
func run(u *Uploader) func() error {
	done := make(chan error, 1)
	go func() { done <- u.Run(context.Background()) }()
	return func() error {
		u.Close()
		return <-done
	}
}

func TestOrderAndBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeServer{}
		u := newTest(f, Options{BatchMax: 200, BatchWait: 5 * time.Millisecond})
		stop := run(u)
		const n = 450
		for i := range n {
			if err := u.Enqueue(t.Context(), notice(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		bodies, stored, _ := f.snapshot()
		if len(stored) != n {
			t.Fatalf("stored %d events, want %d", len(stored), n)
		}
		for i, ev := range stored {
			if ev.AgentSeq != int64(i+1) || ev.Ts == 0 {
				t.Fatalf("event %d: agentSeq=%d ts=%d, want agentSeq %d and a ts", i, ev.AgentSeq, ev.Ts, i+1)
			}
		}
		for i, b := range bodies {
			var arr []json.RawMessage
			if err := json.Unmarshal(b, &arr); err != nil || len(arr) == 0 || len(arr) > 200 {
				t.Errorf("POST %d: %d events (err %v), want a JSON array of 1..200", i, len(arr), err)
			}
		}
	})
}

func TestBatchWaitsAtMostBatchWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeServer{}
		u := newTest(f, Options{BatchMax: 200, BatchWait: 50 * time.Millisecond})
		stop := run(u)
		start := time.Now()
		u.Enqueue(t.Context(), notice(0))
		synctest.Wait()
		time.Sleep(49 * time.Millisecond)
		synctest.Wait()
		if b, _, _ := f.snapshot(); len(b) != 0 {
			t.Fatalf("posted before BatchWait elapsed")
		}
		u.Enqueue(t.Context(), notice(1))
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		bodies, stored, times := f.snapshot()
		if len(bodies) != 1 || len(stored) != 2 || times[0].Sub(start) != 50*time.Millisecond {
			t.Fatalf("got %d POSTs with %d events at %v, want one POST of 2 at 50ms", len(bodies), len(stored), times)
		}
		stop()
	})
}

// With the default BatchWait of 0 a lone event is posted at once, and
// events that arrive while a POST is in flight go together in the next one.
func TestNoLingerYetBatchesUnderLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeServer{handler: func(int, []byte) (int, bool, time.Duration) {
			return 202, true, 10 * time.Millisecond // every POST takes 10ms
		}}
		u := newTest(f, Options{BatchMax: 200})
		stop := run(u)
		start := time.Now()
		u.Enqueue(t.Context(), notice(0))
		synctest.Wait()
		for i := 1; i <= 50; i++ { // while the first POST is in flight
			u.Enqueue(t.Context(), notice(i))
		}
		time.Sleep(25 * time.Millisecond)
		synctest.Wait()
		bodies, stored, times := f.snapshot()
		if len(stored) != 51 || len(bodies) != 2 {
			t.Fatalf("got %d POSTs with %d events, want 2 POSTs with 51", len(bodies), len(stored))
		}
		if times[0].Sub(start) != 0 {
			t.Fatalf("the lone first event waited %v before its POST", times[0].Sub(start))
		}
		var second []json.RawMessage
		if err := json.Unmarshal(bodies[1], &second); err != nil || len(second) != 50 {
			t.Fatalf("second POST had %d events (%v), want the 50 queued during the first", len(second), err)
		}
		stop()
	})
}

func TestRetryAfterStored5xxIsIdempotent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeServer{handler: func(attempt int, _ []byte) (int, bool, time.Duration) {
			if attempt == 1 {
				return 500, true, 0 // stored, but the answer says otherwise
			}
			return 202, true, 0
		}}
		u := newTest(f, Options{InitialBackoff: time.Second})
		// Queued before Run starts, so they make one batch: with Run
		// already waiting, it could take the first alone.
		for i := range 3 {
			u.Enqueue(t.Context(), notice(i))
		}
		stop := run(u)
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		bodies, stored, times := f.snapshot()
		if len(bodies) != 2 || !bytes.Equal(bodies[0], bodies[1]) {
			t.Fatalf("%d POSTs; a retry must resend the same body:\n%s\n%s", len(bodies), bodies[0], bodies[len(bodies)-1])
		}
		if len(stored) != 3 {
			t.Errorf("stored %d events, want 3 exactly once", len(stored))
		}
		if st := u.Stats(); st.Duplicates != 3 || st.Accepted != 0 || st.Batches != 1 {
			t.Errorf("stats = %+v, want the retry to count 3 duplicates", st)
		}
		if d := times[1].Sub(times[0]); d < 500*time.Millisecond || d > 1500*time.Millisecond {
			t.Errorf("retried after %v, want the initial backoff 1s ±50%%", d)
		}
	})
}

func TestSlowResponseIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeServer{handler: func(attempt int, _ []byte) (int, bool, time.Duration) {
			if attempt == 1 {
				return 202, false, time.Hour // never answers in time
			}
			return 202, true, 0
		}}
		u := newTest(f, Options{RequestTimeout: 5 * time.Second})
		stop := run(u)
		u.Enqueue(t.Context(), notice(0))
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		bodies, stored, times := f.snapshot()
		if len(bodies) != 2 || len(stored) != 1 || times[1].Sub(times[0]) < 5*time.Second {
			t.Fatalf("%d POSTs, %d stored, at %v: want a retry after the 5s request timeout", len(bodies), len(stored), times)
		}
	})
}

func TestBackpressureBlocksAndDropsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		f := &fakeServer{handler: func(int, []byte) (int, bool, time.Duration) {
			<-gate
			return 202, true, 0
		}}
		u := newTest(f, Options{BatchMax: 1, QueueSize: 2})
		stop := run(u)
		var mu sync.Mutex
		enqueued := 0
		producer := make(chan struct{})
		go func() {
			defer close(producer)
			for i := range 10 {
				if err := u.Enqueue(context.Background(), notice(i)); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				enqueued++
				mu.Unlock()
			}
		}()
		synctest.Wait()
		mu.Lock()
		// One event in the POST held at the gate, two in the queue; the
		// producer is blocked on the fourth.
		if enqueued != 3 {
			t.Errorf("enqueued %d while the server is stuck, want 3 (1 in flight + queue of 2)", enqueued)
		}
		mu.Unlock()
		if u.Len() != 2 {
			t.Errorf("queue length %d, want 2", u.Len())
		}
		close(gate)
		<-producer
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		_, stored, _ := f.snapshot()
		if len(stored) != 10 {
			t.Errorf("stored %d, want all 10", len(stored))
		}
	})
}

func TestHeartbeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeServer{}
		u := newTest(f, Options{HeartbeatInterval: 10 * time.Second})
		stop := run(u)
		start := time.Now()
		time.Sleep(35 * time.Second)
		synctest.Wait()
		stop()
		_, stored, times := f.snapshot()
		if len(stored) != 3 {
			t.Fatalf("%d events in 35s, want 3 heartbeats", len(stored))
		}
		for i, ev := range stored {
			// A heartbeat opens a batch like any event: posted BatchWait later.
			want := time.Duration(i+1)*10*time.Second + DefaultBatchWait
			if ev.Type != protocol.EventHeartbeat || times[i].Sub(start) != want {
				t.Errorf("event %d: %s at %v, want heartbeat at %v", i, ev.Type, times[i].Sub(start), want)
			}
		}
	})
}

func TestFinalAnswers(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   protocol.Code
	}{{404, protocol.CodeNotFound}, {409, protocol.CodeSuperseded}} {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeServer{handler: func(int, []byte) (int, bool, time.Duration) { return tc.status, false, 0 }}
			u := newTest(f, Options{})
			done := make(chan error, 1)
			go func() { done <- u.Run(context.Background()) }()
			u.Enqueue(t.Context(), notice(0))
			err := <-done
			if protocol.CodeOf(err) != tc.code {
				t.Errorf("status %d: Run = %v, want code %s", tc.status, err, tc.code)
			}
			if bodies, _, _ := f.snapshot(); len(bodies) != 1 {
				t.Errorf("status %d: %d POSTs, want no retry", tc.status, len(bodies))
			}
		})
	}
}

// enqueueFive queues five notices, agentSeqs 1 to 5, the third saying
// third.
func enqueueFive(t *testing.T, u *Uploader, third string) {
	for i := range 5 {
		ev := notice(i)
		if i == 2 {
			ev.Message = third
		}
		u.Enqueue(t.Context(), ev)
	}
}

func TestRefusedEventIsIsolated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeServer{handler: func(_ int, body []byte) (int, bool, time.Duration) {
			if bytes.Contains(body, []byte("poison")) {
				return 400, false, 0
			}
			return 202, true, 0
		}}
		u := newTest(f, Options{BatchWait: time.Second})
		stop := run(u)
		enqueueFive(t, u, "poison")
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		stored, seqs := f.storedSeqs()
		if len(stored) != 4 || seqs[0] != 1 || seqs[3] != 5 || u.Stats().Dropped != 1 {
			t.Errorf("stored agentSeqs %v, dropped %d; want 1 2 4 5 and 1 dropped", seqs, u.Stats().Dropped)
		}
	})
}

// TestProxyRefusalDropsNothing: a 413 that is not the server's (a
// proxy's page, as nginx answers a body over client_max_body_size) still
// splits a batch, as the server's would, but a single event so refused is
// sent again rather than dropped: the server never said it cannot store
// it. Once the proxy lets it through (its limit raised), every event is
// stored, in order.
func TestProxyRefusalDropsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var fixed atomic.Bool
		f := &fakeServer{page: "<html><head><title>413 Request Entity Too Large</title></head></html>", handler: func(_ int, body []byte) (int, bool, time.Duration) {
			if bytes.Contains(body, []byte("big")) && !fixed.Load() {
				return 413, false, 0
			}
			return 202, true, 0
		}}
		u := newTest(f, Options{BatchWait: time.Second})
		stop := run(u)
		enqueueFive(t, u, "big")
		// Wait (fake time) until the lone event has been refused three
		// times on its own.
		for range 120 {
			time.Sleep(time.Second)
			bodies, _, _ := f.snapshot()
			alone := 0
			for _, b := range bodies {
				if evs, err := protocol.DecodeEvents(b); err == nil && len(evs) == 1 && evs[0].Message == "big" {
					alone++
				}
			}
			if alone >= 3 {
				break
			}
		}
		if n := u.Stats().Dropped; n != 0 {
			t.Errorf("dropped %d events on a proxy's refusal", n)
		}
		fixed.Store(true)
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		stored, seqs := f.storedSeqs()
		if len(seqs) != 5 || seqs[0] != 1 || seqs[2] != 3 || seqs[4] != 5 || stored[2].Message != "big" || u.Stats().Dropped != 0 {
			t.Errorf("stored agentSeqs %v, dropped %d; want 1 to 5 in order, none dropped", seqs, u.Stats().Dropped)
		}
	})
}

// TestRequestRefusalDropsNothing: a 400 in the server's words that says
// it refuses the request itself (scope "request": a header agentd sent),
// not its events, splits nothing and drops nothing. The same batch is
// sent again with back-off, each refusal counted, and once the request
// is put right every event is stored once, in order.
func TestRequestRefusalDropsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const refusals = 4
		f := &fakeServer{scope: protocol.ScopeRequest, handler: func(attempt int, _ []byte) (int, bool, time.Duration) {
			if attempt <= refusals {
				return 400, false, 0
			}
			return 202, true, 0
		}}
		u := newTest(f, Options{BatchWait: time.Second})
		stop := run(u)
		enqueueFive(t, u, "third")
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		bodies, _, _ := f.snapshot()
		if len(bodies) != refusals+1 {
			t.Fatalf("%d POSTs; want %d refused and one stored", len(bodies), refusals)
		}
		for i, b := range bodies {
			if !bytes.Equal(b, bodies[0]) {
				t.Errorf("POST %d sent %s; want the batch of the first, %s, unsplit", i+1, b, bodies[0])
			}
		}
		stored, seqs := f.storedSeqs()
		if len(seqs) != 5 || seqs[0] != 1 || seqs[4] != 5 || stored[2].Message != "third" {
			t.Errorf("stored agentSeqs %v; want 1 to 5 in order", seqs)
		}
		if st := u.Stats(); st.Dropped != 0 || st.Refused != refusals || st.Accepted != 5 {
			t.Errorf("stats %+v; want none dropped, %d refused, 5 accepted", st, refusals)
		}
	})
}

func TestEnqueueAfterClose(t *testing.T) {
	u := New(Options{Server: "http://x", Session: "s", Instance: "i"})
	u.Close()
	if err := u.Enqueue(context.Background(), notice(0)); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Close = %v, want ErrClosed", err)
	}
}
