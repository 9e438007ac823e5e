package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/hub"
)

// Encode returns one SSE message in wire form. id 0 means no id: line.
func Encode(id int64, event string, data []byte) []byte {
	m := &sse.Message{Type: sse.Type(event)}
	if id > 0 {
		m.ID = sse.ID(strconv.FormatInt(id, 10))
	}
	m.AppendData(string(data))
	b, _ := m.MarshalText() // writes to a bytes.Buffer: never fails
	return b
}

// frame is a hub message as an SSE message: its revision (or command id)
// is the id, its event name the event. Passed to Message.Wire, it runs once
// per message and every subscriber writes the same bytes.
func frame(m *hub.Message) []byte { return Encode(m.Seq, m.Event, m.Data) }

// ping is the comment sent while a stream is idle, so proxies and clients
// see it alive.
var ping = []byte(": ping\n\n")

// writeDeadline is a stream connection's write deadline. It moves forward
// at most once per timeout/deadlineSlackDiv: resetting the connection's
// timer before every write and every flush was 8% of the server's CPU
// fanning 100 events/s out to 1,000 subscribers (rein-bench latency). A
// write that cannot complete is still cut, between timeout-slack and
// timeout after it began. Only the stream's writer uses it (offStack
// waits for its goroutine), so it needs no lock.
type writeDeadline struct {
	timeout time.Duration
	set     func(time.Time) error
	setAt   time.Time // when set last succeeded; zero before
}

// deadlineSlackDiv: the deadline moves once timeout/deadlineSlackDiv has
// passed since it last moved.
const deadlineSlackDiv = 16

// writePiece is the most of one message a stream writes under one
// deadline: the timeout cuts a client that took in no writePiece bytes
// within it (one that stopped reading), not one still reading a message
// larger than it can read within the timeout. Nearly every message is
// smaller, and is one write as before.
const writePiece = 64 << 10

// extend makes sure a write starting at now has at least timeout-slack
// before the connection cuts it.
func (d *writeDeadline) extend(now time.Time) error {
	if !d.setAt.IsZero() && now.Sub(d.setAt) < d.timeout/deadlineSlackDiv {
		return nil
	}
	err := d.set(now.Add(d.timeout))
	if errors.Is(err, http.ErrNotSupported) {
		return nil // a test recorder; real connections support it
	}
	if err != nil {
		return err
	}
	d.setAt = now
	return nil
}

// Stream is what a stream route sends: Initial (the replay) first, then the
// subscriber's live messages, skipping those with 0 < Seq <= After (the
// replay covered them).
type Stream struct {
	Initial [][]byte
	// Replay, when set, writes the rest of the replay after Initial, a
	// page at a time (flushing each), and returns After: a replay read
	// page by page learns where it ends only at its end.
	Replay func(write func([]byte) error, flush func() error) (after int64, err error)
	Sub    *hub.Subscriber
	After  int64
	// Release, when set, is called once after the stream ended (the command
	// stream tells the service its sandbox left).
	Release func()
	// SessionCreated is the createdAt of the session a command stream was
	// opened on, or an artifact stream's replay is of
	// (protocol.HeaderSessionCreated).
	SessionCreated int64
}

// serveStream opens a stream with open and writes it until the client
// goes away, the subscriber ends (dropped, session deleted, server
// closing) or a write misses its deadline. Every write has a deadline
// (writeDeadline): a stalled client costs only its own handler
// goroutine, never the publisher or other clients.
//
// A stream idles for hours on its handler goroutine, which keeps the
// largest stack it ever needed. So everything deep runs off that stack
// (offStack): opening (the store's reads), the response header, the
// replay, and pings; the handler goroutine itself only waits on its
// subscriber and writes live messages (no goroutine per delivery).
func (a *API) serveStream(w http.ResponseWriter, r *http.Request, open func() (*Stream, error)) {
	if r.Method == http.MethodHead {
		// Go's mux serves HEAD with the GET route. But a stream's answer
		// is its body, and opening one acts: the command stream takes
		// over from the agentd holding it, which then stops for good
		// (superseded). A curl -I or a monitor's probe opens nothing.
		writeError(w, r, a.log, protocol.Errorf(protocol.CodeInvalid, "method: HEAD opens no stream (a stream's answer is its body); open it with GET"))
		return
	}
	var s *liveStream
	offStack(func() { s = a.startStream(w, r, open) })
	if s == nil {
		return // answered, or ended during the replay
	}
	s.end(s.live())
}

// liveStream is a stream past its replay.
type liveStream struct {
	a     *API
	r     *http.Request
	st    *Stream
	kind  string
	write func([]byte) error
	flush func() error
	// ping fires every PingInterval: it sets pingDue and wakes the
	// subscriber, so live waits on one channel (see live).
	ping    *time.Timer
	pingDue atomic.Bool
	// gone is set when the request's context ends (the client left),
	// before it wakes the subscriber: live reads a flag per wake rather
	// than the context's lock.
	gone atomic.Bool
}

// startStream opens the stream and sends its replay. It returns nil when
// it answered with an error or the stream ended during the replay.
func (a *API) startStream(w http.ResponseWriter, r *http.Request, open func() (*Stream, error)) *liveStream {
	st, err := open()
	if err != nil {
		writeError(w, r, a.log, err)
		return nil
	}
	sess, err := sse.Upgrade(w, r)
	if err != nil {
		writeError(w, r, a.log, err)
		st.Sub.Close()
		if st.Release != nil {
			st.Release()
		}
		return nil
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	// A stream ends because the client is dropped, its session is gone or
	// the server is stopping; in every case the client should reconnect on
	// a fresh connection rather than keep an idle one open.
	w.Header().Set("Connection", "close")
	rc := http.NewResponseController(w)
	dl := &writeDeadline{timeout: a.opts.WriteTimeout, set: rc.SetWriteDeadline}
	deadline := func() error { return dl.extend(time.Now()) }
	s := &liveStream{a: a, r: r, st: st, kind: streamKind(r)}
	s.write = func(b []byte) error {
		// A piece at a time, each with its deadline: a large message (an
		// artifact_snapshot of a long build log) may take a client
		// reading steadily longer than the timeout, and cut whole it was
		// sent again from its start on every reconnection, and cut again.
		for len(b) > 0 {
			if err := deadline(); err != nil {
				return err
			}
			n := min(len(b), writePiece)
			if _, err := sess.Res.Write(b[:n]); err != nil {
				return err
			}
			b = b[n:]
		}
		return nil
	}
	s.flush = func() error {
		if err := deadline(); err != nil {
			return err
		}
		return sess.Flush()
	}
	if a.opts.Observer != nil {
		a.opts.Observer.StreamOpened(s.kind)
	}
	if err := replay(st, s.write, s.flush); err != nil {
		s.end(err)
		return nil
	}
	s.ping = time.AfterFunc(a.opts.PingInterval, func() {
		s.pingDue.Store(true)
		st.Sub.Wake()
	})
	return s
}

// live writes live messages and pings until something ends the stream;
// it returns what did.
//
// It waits on the subscriber's Ready alone: the ping timer, the
// subscriber's end and the client leaving wake it there too (Wake), and
// it looks at what did. The select over four channels it replaced
// (messages, ping, subscriber ended, client gone) was 11% of the
// server's CPU fanning 100 events/s out to 1,000 subscribers, most of
// it locking and queueing on the three that almost never fire; one
// channel took the server's CPU per delivery from 8.7 to 7.3 µs and the
// latency p99 at 1,000 subscribers from 36.8 to 32.3 ms (rein-bench
// fanout and latency, medians of four rounds alternating with the
// select).
func (s *liveStream) live() error {
	sub := s.st.Sub
	stop := context.AfterFunc(s.r.Context(), func() {
		s.gone.Store(true)
		sub.Wake()
	})
	defer stop()
	for {
		<-sub.Ready()
		msgs := sub.Take()
		for _, m := range msgs {
			if m.Seq > 0 && m.Seq <= s.st.After {
				continue
			}
			if err := s.write(m.Wire(frame)); err != nil {
				return err
			}
		}
		if len(msgs) > 0 {
			if err := s.flush(); err != nil {
				return err
			}
		} else if err := sub.Err(); err != nil {
			// Only an empty Take can follow the end: ending releases
			// the queue (and wakes us again if it came after the Take).
			return err
		}
		if s.gone.Load() {
			return s.r.Context().Err()
		}
		if s.pingDue.Swap(false) {
			// Off the stack: an idle stream only ever pings, and
			// net/http's write path would take its stack from 4 KiB to
			// 8 KiB for good.
			var err error
			offStack(func() {
				if err = s.write(ping); err == nil {
					err = s.flush()
				}
			})
			if err != nil {
				return err
			}
			s.ping.Reset(s.a.opts.PingInterval)
		}
	}
}

// end releases the stream and, when the server cut it, says why: an
// operator seeing clients reconnect needs to know it was for being too
// slow.
func (s *liveStream) end(err error) {
	if s.ping != nil {
		s.ping.Stop()
	}
	a, r, kind := s.a, s.r, s.kind
	reason := ""
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		reason = "write_timeout"
		a.log.LogAttrs(r.Context(), slog.LevelWarn, "dropped a stream client that stopped reading",
			append(dropAttrs(r, kind, reason), slog.Duration("writeTimeout", a.opts.WriteTimeout))...)
	case errors.Is(err, hub.ErrOverflow):
		reason = "overflow"
		a.log.LogAttrs(r.Context(), slog.LevelWarn, "dropped a stream client that fell behind", dropAttrs(r, kind, reason)...)
	}
	if reason != "" && a.opts.Observer != nil {
		a.opts.Observer.ClientDropped(kind, reason)
	}
	if a.opts.Observer != nil {
		a.opts.Observer.StreamClosed(kind)
	}
	s.st.Sub.Close()
	if s.st.Release != nil {
		s.st.Release()
	}
}

// dropAttrs are a dropped stream's log attributes: its session only where
// the route has one (the session list's and the approvals inbox's streams
// belong to no session).
func dropAttrs(r *http.Request, kind, reason string) []slog.Attr {
	var attrs []slog.Attr
	if id := r.PathValue("id"); id != "" {
		attrs = append(attrs, slog.String("session", id))
	}
	return append(attrs, slog.String("stream", kind), slog.String("reason", reason))
}

// replay sends the response header, st.Initial and st.Replay, and
// flushes; it leaves in st only what the live loop needs.
func replay(st *Stream, write func([]byte) error, flush func() error) error {
	// Headers go out now, so a client learns the stream is open even
	// before there is anything to replay.
	if err := flush(); err != nil {
		return err
	}
	for _, b := range st.Initial {
		if err := write(b); err != nil {
			return err
		}
	}
	st.Initial = nil // the replay can be large; let it go
	if st.Replay != nil {
		after, err := st.Replay(write, flush)
		if err != nil {
			return err
		}
		// The replay's closure holds the feed it read; the stream only
		// needs where the replay ended.
		st.After, st.Replay = after, nil
	}
	return flush()
}

// lastEventID parses the Last-Event-ID header; ok is false when it is
// absent or not a non-negative integer (then the stream starts afresh).
func lastEventID(r *http.Request) (id int64, ok bool) {
	h := r.Header.Get("Last-Event-ID")
	if h == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(h, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
