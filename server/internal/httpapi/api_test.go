package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/hub"
)

// fake is a Service whose answers the tests set.
type fake struct {
	Service // unset methods panic
	err     error
	events  []protocol.Event
	stream  *Stream
}

func (f *fake) AppendEvents(_ context.Context, _, _ string, _ int64, evs []protocol.Event, _ [][]byte) (protocol.EventsAccepted, error) {
	f.events = evs
	return protocol.EventsAccepted{Accepted: len(evs)}, f.err
}
func (f *fake) GetSession(context.Context, string) (protocol.Session, error) {
	return protocol.Session{}, f.err
}
func (f *fake) Health(context.Context) error { return f.err }
func (f *fake) SessionStream(context.Context, string) (*Stream, error) {
	return f.stream, f.err
}

func TestStatusTable(t *testing.T) {
	want := map[protocol.Code]int{
		protocol.CodeInvalid: 400, protocol.CodeUnauthorized: 401, protocol.CodeForbidden: 403,
		protocol.CodeNotFound: 404, protocol.CodeConflict: 409, protocol.CodeNoSandbox: 409,
		protocol.CodeSuperseded: 409, protocol.CodeTooLarge: 413, protocol.CodeUnavailable: 503,
		protocol.CodeInternal: 500, "made_up": 500,
	}
	for code, status := range want {
		if got := Status(code); got != status {
			t.Errorf("Status(%s) = %d; want %d", code, got, status)
		}
	}
}

func serve(t *testing.T, a *API, method, path, body string) (int, protocol.ErrorBody) {
	t.Helper()
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	var e protocol.ErrorBody
	if rec.Code >= 400 {
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
			t.Fatalf("%s %s: error body %q: %v", method, path, rec.Body, err)
		}
	}
	return rec.Code, e
}

func TestErrors(t *testing.T) {
	f := &fake{}
	var logs bytes.Buffer
	a := New(f, slogTo(&logs), Options{MaxBody: 100})

	if code, e := serve(t, a, "POST", "/sessions/a/events", `{"type":"text_delta","delta":"`+strings.Repeat("x", 200)+`"}`); code != 413 || e.Code != protocol.CodeTooLarge {
		t.Errorf("too large: %d %+v", code, e)
	}
	if code, e := serve(t, a, "POST", "/sessions/a/events", `[{"type":"heartbeat"},{"type":"nope"}]`); code != 400 || !strings.Contains(e.Message, "events[1].type") {
		t.Errorf("invalid: %d %+v", code, e)
	}
	req := httptest.NewRequest("POST", "/sessions/a/events", strings.NewReader(`{"type":"heartbeat"}`))
	req.Header.Set(protocol.HeaderInstance, "bad id/")
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	if rec.Code != 400 {
		t.Errorf("bad Rein-Instance: %d %s", rec.Code, rec.Body)
	}
	if code, e := serve(t, a, "GET", "/sessions/stream%21", ""); code != 400 || e.Code != protocol.CodeInvalid {
		t.Errorf("bad id: %d %+v", code, e)
	}
	// Internal errors never show their text; they are logged once.
	f.err = errors.New("sqlite: disk I/O error at /secret/path")
	if code, e := serve(t, a, "GET", "/sessions/a", ""); code != 500 || e.Code != protocol.CodeInternal || strings.Contains(e.Message, "secret") {
		t.Errorf("internal: %d %+v", code, e)
	}
	if !strings.Contains(logs.String(), "secret") {
		t.Errorf("internal error not logged: %q", logs.String())
	}
	f.err = errors.Join(protocol.Errorf(protocol.CodeUnavailable, "storage unavailable"), errors.New("busy"))
	if code, e := serve(t, a, "GET", "/healthz", ""); code != 503 || e.Message != "storage unavailable" {
		t.Errorf("unavailable: %d %+v", code, e)
	}
	f.err = nil
	if code, _ := serve(t, a, "POST", "/sessions/a/events", `{"type":"heartbeat","receivedAt":5}`); code != 202 || len(f.events) != 1 || f.events[0].ReceivedAt != 0 {
		t.Errorf("events: %d %+v", code, f.events)
	}
}

// recorder is a ResponseWriter a stream can be read from while it runs.
type recorder struct {
	mu  sync.Mutex
	hdr http.Header
	buf bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.hdr }
func (r *recorder) WriteHeader(int)     {}
func (r *recorder) Flush()              {}
func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(b)
}
func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// An idle stream gets a ping every PingInterval; live messages are sent
// unless the snapshot covered them (Seq <= After). Fake time: no waiting.
func TestStreamPingAndSkip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := hub.New(0, 0)
		sub := h.Subscribe("s", nil)
		f := &fake{stream: &Stream{Initial: [][]byte{Encode(0, "snapshot_complete", []byte(`{"rev":5}`))}, Sub: sub, After: 5}}
		a := New(f, nil, Options{PingInterval: 15 * time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		rec := &recorder{hdr: http.Header{}}
		done := make(chan struct{})
		go func() {
			defer close(done)
			a.ServeHTTP(rec, httptest.NewRequest("GET", "/sessions/stream", nil).WithContext(ctx))
		}()
		synctest.Wait()
		if got := rec.String(); got != "event: snapshot_complete\ndata: {\"rev\":5}\n\n" {
			t.Fatalf("initial %q", got)
		}
		time.Sleep(15 * time.Second)
		synctest.Wait()
		if got := rec.String(); !strings.HasSuffix(got, "\n\n: ping\n\n") {
			t.Fatalf("no ping after 15s: %q", got)
		}
		h.Publish("s", &hub.Message{Event: "x", Data: []byte("old"), Seq: 5}, &hub.Message{Event: "x", Data: []byte("new"), Seq: 6})
		synctest.Wait()
		if got := rec.String(); strings.Contains(got, "old") || !strings.HasSuffix(got, "id: 6\nevent: x\ndata: new\n\n") {
			t.Fatalf("after publish %q", got)
		}
		if rec.hdr.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("headers %v", rec.hdr)
		}
		cancel()
		<-done
		if h.Len("s") != 0 {
			t.Fatal("stream left its subscription behind")
		}
	})
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func (f *fake) ArtifactStream(context.Context, string, int64, bool) (*Stream, error) {
	return f.stream, f.err
}

// A stream client dropped for falling behind is logged with the stream
// and the reason, and with its session only where the route has one: the
// session list's stream belongs to no session, and an empty session=
// there sent operators looking for a session that does not exist.
func TestStreamDropLog(t *testing.T) {
	for _, tc := range []struct{ path, want, notWant string }{
		{"/sessions/s1/stream", "session=s1 stream=artifacts reason=overflow", ""},
		{"/sessions/stream", "stream=sessions reason=overflow", "session="},
	} {
		t.Run(tc.path, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := hub.New(1, 0) // room for one message
				f := &fake{stream: &Stream{Sub: h.Subscribe("s", nil)}}
				var logs bytes.Buffer
				a := New(f, slogTo(&logs), Options{PingInterval: time.Minute})
				// The second publish finds the first not taken: the
				// subscriber has fallen behind before its stream opens.
				h.Publish("s", &hub.Message{Event: "x", Data: []byte("1")})
				h.Publish("s", &hub.Message{Event: "x", Data: []byte("2")})
				done := make(chan struct{})
				go func() {
					defer close(done)
					a.ServeHTTP(&recorder{hdr: http.Header{}}, httptest.NewRequest("GET", tc.path, nil))
				}()
				<-done
				got := logs.String()
				if !strings.Contains(got, "dropped a stream client that fell behind") || !strings.Contains(got, tc.want) {
					t.Fatalf("log %q; want the drop with %q", got, tc.want)
				}
				if tc.notWant != "" && strings.Contains(got, tc.notWant) {
					t.Fatalf("log %q has %q", got, tc.notWant)
				}
			})
		})
	}
}
