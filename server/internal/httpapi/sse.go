package httpapi

import (
	"errors"
	"net/http"
	"os"
	"strconv"
	"time"

	sse "github.com/tmaxmax/go-sse"

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
}

// serveStream opens a stream with open and writes it until the client
// goes away, the subscriber ends (dropped, session deleted, server
// closing) or a write misses its deadline. Every write has its own
// deadline: a stalled client costs only its own handler goroutine, never
// the publisher or other clients. open and the replay run off the handler
// goroutine's stack (offStack): they read the database, the stream then
// idles for hours.
func (a *API) serveStream(w http.ResponseWriter, r *http.Request, open func() (*Stream, error)) {
	var st *Stream
	var err error
	offStack(func() { st, err = open() })
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	defer func() {
		st.Sub.Close()
		if st.Release != nil {
			st.Release()
		}
	}()
	sess, err := sse.Upgrade(w, r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	// A stream ends because the client is dropped, its session is gone or
	// the server is stopping; in every case the client should reconnect on
	// a fresh connection rather than keep an idle one open.
	w.Header().Set("Connection", "close")
	rc := http.NewResponseController(w)
	deadline := func() error {
		err := rc.SetWriteDeadline(time.Now().Add(a.opts.WriteTimeout))
		if errors.Is(err, http.ErrNotSupported) {
			return nil // a test recorder; real connections support it
		}
		return err
	}
	write := func(b []byte) error {
		if err := deadline(); err != nil {
			return err
		}
		_, err := sess.Res.Write(b)
		return err
	}
	flush := func() error {
		if err := deadline(); err != nil {
			return err
		}
		return sess.Flush()
	}
	kind := streamKind(r)
	if a.opts.Observer != nil {
		a.opts.Observer.StreamOpened(kind)
		defer a.opts.Observer.StreamClosed(kind)
	}
	err = pump(st, r, write, flush, a.opts.PingInterval)
	// Say why a stream was cut when the server cut it: an operator seeing
	// clients reconnect needs to know it was for being too slow.
	reason := ""
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		reason = "write_timeout"
		a.log.Warn("dropped a stream client that stopped reading", "session", r.PathValue("id"), "stream", kind, "reason", reason, "writeTimeout", a.opts.WriteTimeout)
	case errors.Is(err, hub.ErrOverflow):
		reason = "overflow"
		a.log.Warn("dropped a stream client that fell behind", "session", r.PathValue("id"), "stream", kind, "reason", reason)
	}
	if reason != "" && a.opts.Observer != nil {
		a.opts.Observer.ClientDropped(kind, reason)
	}
}

// pump writes the replay, then live messages and pings, until something
// ends the stream; it returns what did. The replay runs off the handler
// goroutine's stack (offStack): writing the response header alone takes
// net/http past 8 KiB of stack, and the store's reads deeper still, while
// the loop below, where a stream spends its life, needs under 4 KiB.
func pump(st *Stream, r *http.Request, write func([]byte) error, flush func() error, pingEvery time.Duration) error {
	var err error
	offStack(func() { err = replay(st, write, flush) })
	if err != nil {
		return err
	}
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	for {
		select {
		case <-st.Sub.Ready():
			for _, m := range st.Sub.Take() {
				if m.Seq > 0 && m.Seq <= st.After {
					continue
				}
				if err := write(m.Wire(frame)); err != nil {
					return err
				}
			}
			if err := flush(); err != nil {
				return err
			}
		case <-t.C:
			if err := write(ping); err != nil {
				return err
			}
			if err := flush(); err != nil {
				return err
			}
		case <-st.Sub.Done():
			return st.Sub.Err()
		case <-r.Context().Done():
			return r.Context().Err()
		}
	}
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
