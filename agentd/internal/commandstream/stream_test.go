package commandstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

// transport answers stream requests in memory, for synctest bubbles.
type transport struct {
	mu       sync.Mutex
	times    []time.Time
	headers  []http.Header
	response func(attempt int, req *http.Request) (*http.Response, error)
}

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	tr.mu.Lock()
	tr.times = append(tr.times, time.Now())
	tr.headers = append(tr.headers, req.Header.Clone())
	attempt := len(tr.times)
	tr.mu.Unlock()
	return tr.response(attempt, req)
}

func (tr *transport) attempts() ([]time.Time, []http.Header) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]time.Time(nil), tr.times...), append([]http.Header(nil), tr.headers...)
}

func status(code int) *http.Response {
	return &http.Response{StatusCode: code, Body: io.NopCloser(strings.NewReader(`{"code":"unavailable","message":"x"}`)), Header: http.Header{}}
}

// streamBody is an open SSE body the test writes to; reads end when the
// request is cancelled, as with a real connection.
func streamBody(req *http.Request) (*http.Response, *io.PipeWriter) {
	pr, pw := io.Pipe()
	context.AfterFunc(req.Context(), func() { pw.CloseWithError(req.Context().Err()) })
	return &http.Response{StatusCode: 200, Body: pr, Header: http.Header{"Content-Type": {"text/event-stream"}}}, pw
}

func newStream(tr *transport, opts Options) *Stream {
	opts.Server, opts.Session, opts.Instance = "http://rein.test", "s1", "i1"
	opts.Client = &http.Client{Transport: tr}
	if opts.OnCommand == nil {
		opts.OnCommand = func(context.Context, protocol.Command) error { return nil }
	}
	return New(opts)
}

func TestBackoffGrowsCapsAndNeverGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &transport{response: func(int, *http.Request) (*http.Response, error) { return status(503), nil }}
		s := newStream(tr, Options{InitialBackoff: 500 * time.Millisecond, MaxBackoff: 10 * time.Second})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		time.Sleep(time.Hour) // far beyond backoff/v4's default 15 min give-up
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run after cancel = %v, want nil", err)
		}
		times, _ := tr.attempts()
		// Every gap is at most 15s (10s cap + 50% jitter, checked below), so
		// an hour holds at least 240 attempts whatever the jitter draws;
		// fewer means the loop gave up. (360 is only the mean: as a bound
		// it failed by chance.)
		if len(times) < 240 {
			t.Fatalf("%d attempts in an hour: the loop gave up or waited too long", len(times))
		}
		var gaps []time.Duration
		for i := 1; i < len(times); i++ {
			gaps = append(gaps, times[i].Sub(times[i-1]))
		}
		if gaps[0] < 250*time.Millisecond || gaps[0] > 750*time.Millisecond {
			t.Errorf("first retry after %v, want 500ms ±50%%", gaps[0])
		}
		for i, g := range gaps {
			if g > 15*time.Second {
				t.Fatalf("gap %d = %v, above the 10s cap plus jitter", i, g)
			}
		}
		if late := gaps[len(gaps)-1]; late < 5*time.Second {
			t.Errorf("late gap %v, want near the 10s cap", late)
		}
	})
}

func TestBackoffResetsAfterHealthyConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &transport{}
		tr.response = func(attempt int, req *http.Request) (*http.Response, error) {
			switch {
			case attempt <= 6:
				return nil, fmt.Errorf("connection refused")
			case attempt == 7:
				resp, pw := streamBody(req)
				go func() {
					// Healthy for a minute (pinging), then the server restarts.
					for range 4 {
						time.Sleep(15 * time.Second)
						io.WriteString(pw, ": ping\n\n")
					}
					pw.Close()
				}()
				return resp, nil
			}
			return nil, fmt.Errorf("connection refused")
		}
		s := newStream(tr, Options{InitialBackoff: time.Second, MaxBackoff: 30 * time.Second, HealthyAfter: 10 * time.Second})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		for {
			times, _ := tr.attempts()
			if len(times) >= 8 {
				break
			}
			time.Sleep(time.Second)
		}
		cancel()
		<-done
		times, _ := tr.attempts()
		before := times[6].Sub(times[5])
		after := times[7].Sub(times[6].Add(time.Minute))
		if before < 3*time.Second {
			t.Errorf("6th gap %v: backoff did not grow", before)
		}
		if after > 1500*time.Millisecond {
			t.Errorf("first reconnect after a healthy connection took %v, want the reset initial 1s ±50%%", after)
		}
	})
}

func TestSilentStreamIsDead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &transport{}
		var pinger sync.WaitGroup
		tr.response = func(attempt int, req *http.Request) (*http.Response, error) {
			resp, pw := streamBody(req)
			if attempt == 1 {
				// Pings keep the first connection alive for 2 minutes,
				// then the server goes silent without closing.
				pinger.Go(func() {
					for range 8 {
						time.Sleep(15 * time.Second)
						if _, err := io.WriteString(pw, ": ping\n\n"); err != nil {
							return
						}
					}
				})
			}
			return resp, nil
		}
		connects := 0
		s := newStream(tr, Options{IdleTimeout: 45 * time.Second, OnConnect: func() { connects++ }})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		start := time.Now()
		time.Sleep(165*time.Second - time.Millisecond)
		synctest.Wait()
		if times, _ := tr.attempts(); len(times) != 1 {
			t.Fatalf("reconnected at %v although pings kept arriving until 120s (+45s idle)", times[1].Sub(start))
		}
		time.Sleep(2 * time.Second) // idle timeout fires at 165s, then ≤750ms backoff
		synctest.Wait()
		times, _ := tr.attempts()
		if len(times) != 2 {
			t.Fatalf("%d attempts, want a reconnect once the stream was silent for 45s", len(times))
		}
		cancel()
		<-done
		pinger.Wait()
		if connects != 2 {
			t.Errorf("OnConnect called %d times, want 2", connects)
		}
	})
}

func TestFinalStatusStops(t *testing.T) {
	for _, code := range []int{401, 403, 404} {
		synctest.Test(t, func(t *testing.T) {
			tr := &transport{response: func(int, *http.Request) (*http.Response, error) { return status(code), nil }}
			err := newStream(tr, Options{}).Run(t.Context())
			if !strings.Contains(err.Error(), fmt.Sprint(code)) || protocol.CodeOf(err) == protocol.CodeInternal {
				t.Errorf("status %d: Run = %v, want a final wire error", code, err)
			}
			if times, _ := tr.attempts(); len(times) != 1 {
				t.Errorf("status %d: %d attempts, want 1", code, len(times))
			}
		})
	}
}

// Against a real HTTP server: commands arrive once, in order, across a
// dropped connection with duplicate redeliveries, and every attempt
// carries Rein-Instance and Last-Event-ID.
func TestResumeOverHTTP(t *testing.T) {
	srv := fakeserver.New(t, "s1")
	srv.Redeliver = 3
	var mu sync.Mutex
	var got []int64
	cmds := make(chan struct{}, 16)
	s := New(Options{
		Server: srv.URL, Session: "s1", Instance: "i1", Token: "tok",
		InitialBackoff: 10 * time.Millisecond,
		OnCommand: func(_ context.Context, c protocol.Command) error {
			mu.Lock()
			got = append(got, c.ID)
			mu.Unlock()
			cmds <- struct{}{}
			return nil
		},
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	srv.WaitState(t, "stream open", func() bool { return srv.OpenStreams() == 1 })
	for i := range 3 {
		srv.Prompt(fmt.Sprint("p", i))
		<-cmds
	}
	srv.DropStreams()
	srv.WaitState(t, "stream reopened", func() bool { return len(srv.StreamRequests()) == 2 && srv.OpenStreams() == 1 })
	srv.Prompt("p3")
	<-cmds
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != "[1 2 3 4]" {
		t.Errorf("delivered ids %v, want [1 2 3 4] (each once)", got)
	}
	reqs := srv.StreamRequests()
	if h := reqs[1].Header.Get("Last-Event-ID"); h != "3" {
		t.Errorf("resume Last-Event-ID = %q, want 3", h)
	}
	for _, r := range reqs {
		if r.Header.Get(protocol.HeaderInstance) != "i1" || r.Header.Get("Authorization") != "Bearer tok" {
			t.Errorf("headers %v", r.Header)
		}
	}
}

// TestResumeFromCursor: a restarted agentd's first connection asks for the
// commands after its persisted cursor, even when that cursor is 0.
func TestResumeFromCursor(t *testing.T) {
	for _, tc := range []struct {
		name   string
		resume bool
		after  int64
		want   string
	}{
		{"fresh", false, 0, ""},
		{"cursor 0", true, 0, "0"},
		{"cursor 7", true, 7, "7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := &transport{response: func(int, *http.Request) (*http.Response, error) { return status(503), nil }}
				ctx, cancel := context.WithCancel(t.Context())
				s := newStream(tr, Options{Resume: tc.resume, After: tc.after})
				done := make(chan error)
				go func() { done <- s.Run(ctx) }()
				synctest.Wait()
				cancel()
				<-done
				_, hdrs := tr.attempts()
				if len(hdrs) == 0 {
					t.Fatal("no request")
				}
				if got := hdrs[0].Get("Last-Event-ID"); got != tc.want {
					t.Fatalf("Last-Event-ID = %q, want %q", got, tc.want)
				}
			})
		})
	}
}

// TestProbe: Probe retries a 503, then reads the session's createdAt from
// a stream opened without Last-Event-ID (so the server takes no cursor
// from it) even when the stream has a cursor; a 404 is final; an answer
// without the header is not known.
func TestProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &transport{response: func(attempt int, req *http.Request) (*http.Response, error) {
			if attempt == 1 {
				return status(503), nil
			}
			resp, _ := streamBody(req)
			resp.Header.Set(protocol.HeaderSessionCreated, "1700000000123")
			return resp, nil
		}}
		s := newStream(tr, Options{Resume: true, After: 7})
		at, ok, err := s.Probe(t.Context())
		if err != nil || !ok || at != 1700000000123 {
			t.Fatalf("Probe = %d, %v, %v; want 1700000000123, true, nil", at, ok, err)
		}
		_, headers := tr.attempts()
		if len(headers) != 2 {
			t.Fatalf("%d requests; want 2 (a 503, then the answer)", len(headers))
		}
		if v := headers[1].Get("Last-Event-ID"); v != "" {
			t.Fatalf("probe sent Last-Event-ID %q; want none", v)
		}
	})
	t.Run("not found is final", func(t *testing.T) {
		tr := &transport{response: func(int, *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 404, Body: io.NopCloser(strings.NewReader(`{"code":"not_found","message":"x"}`)), Header: http.Header{}}, nil
		}}
		_, _, err := newStream(tr, Options{}).Probe(t.Context())
		if protocol.CodeOf(err) != protocol.CodeNotFound {
			t.Fatalf("Probe = %v; want not_found", err)
		}
	})
	t.Run("no header", func(t *testing.T) {
		tr := &transport{response: func(_ int, req *http.Request) (*http.Response, error) {
			resp, _ := streamBody(req)
			return resp, nil
		}}
		if _, ok, err := newStream(tr, Options{}).Probe(t.Context()); ok || err != nil {
			t.Fatalf("Probe = %v, %v; want not known, no error", ok, err)
		}
	})
}

// TestOnSessionErrorEndsRun: OnSession gets the createdAt of each
// connection before OnConnect, and its error ends Run.
func TestOnSessionErrorEndsRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &transport{response: func(_ int, req *http.Request) (*http.Response, error) {
			resp, _ := streamBody(req)
			resp.Header.Set(protocol.HeaderSessionCreated, "42")
			return resp, nil
		}}
		var got int64
		connects := 0
		s := newStream(tr, Options{
			OnSession: func(at int64) error {
				got = at
				return protocol.Errorf(protocol.CodeNotFound, "recreated")
			},
			OnConnect: func() { connects++ },
		})
		err := s.Run(t.Context())
		if protocol.CodeOf(err) != protocol.CodeNotFound || got != 42 || connects != 0 {
			t.Fatalf("Run = %v with createdAt %d, %d OnConnect calls; want not_found, 42, 0", err, got, connects)
		}
	})
}

// A Rein-Session-Created that is not a createdAt (0 or negative, from a
// proxy or a broken server) is taken as not sent: recorded, it would make
// the state dir's session file one the next agentd refuses to open, and
// sent back, every request would be refused 400.
func TestSessionCreatedHeaderNotACreatedAt(t *testing.T) {
	for v, want := range map[string]bool{"1732190001234": true, "0": false, "-5": false, "": false, "x": false} {
		h := http.Header{}
		if v != "" {
			h.Set(protocol.HeaderSessionCreated, v)
		}
		if at, ok := sessionCreated(h); ok != want {
			t.Errorf("%s: %q: got %d %v; want ok %v", protocol.HeaderSessionCreated, v, at, ok, want)
		}
	}
}
