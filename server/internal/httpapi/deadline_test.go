package httpapi

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/hub"
)

// TestWriteDeadline holds a stream's write deadline to its promise: every
// write has at least timeout-slack before the connection cuts it, and the
// connection's timer is reset only once per slack, not on every write.
func TestWriteDeadline(t *testing.T) {
	const timeout = 16 * time.Second // slack: 1s
	var sets []time.Time
	var fail error
	d := &writeDeadline{timeout: timeout, set: func(at time.Time) error {
		if fail != nil {
			return fail
		}
		sets = append(sets, at)
		return nil
	}}
	t0 := time.Unix(1_000_000, 0)
	// A write every 10ms for 3.5s: the deadline moves at 0, 1s, 2s and 3s.
	for ms := 0; ms <= 3500; ms += 10 {
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		if err := d.extend(now); err != nil {
			t.Fatal(err)
		}
		if left := sets[len(sets)-1].Sub(now); left < timeout-timeout/deadlineSlackDiv {
			t.Fatalf("write at +%dms has %v before its deadline; want at least %v", ms, left, timeout-timeout/deadlineSlackDiv)
		}
	}
	want := []time.Time{t0.Add(timeout), t0.Add(time.Second + timeout), t0.Add(2*time.Second + timeout), t0.Add(3*time.Second + timeout)}
	if len(sets) != len(want) {
		t.Fatalf("deadline set %d times (%v); want %d", len(sets), sets, len(want))
	}
	for i := range want {
		if !sets[i].Equal(want[i]) {
			t.Fatalf("deadline %d = %v; want %v", i, sets[i], want[i])
		}
	}

	// A failed set is returned and not remembered: the next write tries again.
	fail = errors.New("connection closed")
	late := t0.Add(5 * time.Second)
	if err := d.extend(late); !errors.Is(err, fail) {
		t.Fatalf("extend with a failing set = %v; want %v", err, fail)
	}
	fail = nil
	if err := d.extend(late.Add(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if got := sets[len(sets)-1]; !got.Equal(late.Add(time.Millisecond + timeout)) {
		t.Fatalf("after a failed set the deadline is %v; want it set again to %v", got, late.Add(time.Millisecond+timeout))
	}

	// A connection without deadlines (a test recorder) is not an error.
	nd := &writeDeadline{timeout: timeout, set: func(time.Time) error { return http.ErrNotSupported }}
	if err := nd.extend(t0); err != nil {
		t.Fatalf("extend without deadline support = %v; want nil", err)
	}
}

// slowConn is a stream connection whose client reads steadily but slowly:
// rate bytes every tick (fake time). A write still going at its deadline
// fails as a real connection's does, having sent what the client read.
type slowConn struct {
	hdr      http.Header
	rate     int
	tick     time.Duration
	mu       sync.Mutex
	deadline time.Time
	sent     bytes.Buffer
}

func (c *slowConn) Header() http.Header { return c.hdr }
func (c *slowConn) WriteHeader(int)     {}
func (c *slowConn) Flush()              {}
func (c *slowConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return nil
}

func (c *slowConn) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		c.mu.Lock()
		dl := c.deadline
		c.mu.Unlock()
		if !dl.IsZero() && !time.Now().Before(dl) {
			return n, os.ErrDeadlineExceeded
		}
		time.Sleep(c.tick)
		c.mu.Lock()
		k := min(c.rate, len(b)-n)
		c.sent.Write(b[n : n+k])
		c.mu.Unlock()
		n += k
	}
	return n, nil
}

func (c *slowConn) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent.String()
}

// A client that reads steadily gets an artifact larger than it can read
// within the write timeout (a tool call's long build log): the deadline
// cuts a client that stopped reading, not one that is still reading a
// large message. Cut there, it resumed from before the artifact and was
// cut again, on every reconnection: it never saw the session.
func TestWriteDeadlineLargeMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 16 MiB at 1.25 MiB/s: 12.8s, past the 10s write timeout.
		big := bytes.Repeat([]byte("x"), 16<<20)
		art := Encode(7, protocol.SSEArtifactSnapshot, big)
		done := Encode(7, protocol.SSESnapshotComplete, []byte(`{"rev":7}`))
		h := hub.New(0, 0)
		f := &fake{stream: &Stream{Initial: [][]byte{art, done}, Sub: h.Subscribe("s", nil)}}
		a := New(f, nil, Options{PingInterval: time.Hour, WriteTimeout: 10 * time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		conn := &slowConn{hdr: http.Header{}, rate: 64 << 10, tick: 50 * time.Millisecond}
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			a.ServeHTTP(conn, httptest.NewRequest("GET", "/sessions/stream", nil).WithContext(ctx))
		}()
		time.Sleep(time.Minute)
		synctest.Wait()
		select {
		case <-ended:
			t.Fatalf("stream ended after %d of %d bytes; want it live after the snapshot", len(conn.String()), len(art)+len(done))
		default:
		}
		if got := conn.String(); got != string(art)+string(done) {
			t.Fatalf("client got %d bytes; want the artifact and snapshot_complete (%d)", len(got), len(art)+len(done))
		}
		// A live message, also larger than the client reads in the
		// timeout, arrives whole too.
		h.Publish("s", &hub.Message{Event: protocol.SSEArtifactSnapshot, Data: big, Seq: 8})
		time.Sleep(time.Minute)
		synctest.Wait()
		if got, want := len(conn.String()), len(art)*2+len(done); got != want {
			t.Fatalf("after a live 16 MiB message the client has %d bytes; want %d", got, want)
		}
		// A client that stops reading is still cut at the timeout.
		conn.mu.Lock()
		conn.rate = 0
		conn.mu.Unlock()
		start := time.Now()
		h.Publish("s", &hub.Message{Event: "x", Data: []byte("stuck"), Seq: 9})
		<-ended
		if took := time.Since(start); took > 10*time.Second+time.Second {
			t.Fatalf("a client that stopped reading was cut after %v; want at most the 10s timeout", took)
		}
		cancel()
	})
}
