package client

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Event is one server-sent event as read from the wire.
type Event struct {
	ID   string // the id: field ("" when absent)
	Name string // the event: field
	Data string // the data: lines joined by "\n"
}

// EventReader reads server-sent events from a text/event-stream body.
// Comment lines (": ping") are skipped.
type EventReader struct {
	sc *bufio.Scanner
}

// maxEventLine bounds one SSE line. An artifact snapshot is one line and
// carries a tool's whole output, which grows with every output delta: a
// command that printed 20 MB makes a 20 MB line, and no per-event limit
// bounds it, only the session's (--max-session-bytes, 1 GiB by default).
// The reader's buffer grows only as far as the longest line needs. A var
// so that a test can reach it.
var maxEventLine = 1 << 30

// ErrLineTooLong is Next's error for a line over maxEventLine. Every
// reconnection would replay the same line, so following ends with it.
var ErrLineTooLong = errors.New("an event stream line is longer than this client reads")

// NewEventReader reads events from r.
func NewEventReader(r io.Reader) *EventReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxEventLine)
	return &EventReader{sc: sc}
}

// Next returns the next event, or an error (io.EOF when the stream ended
// cleanly between events).
func (r *EventReader) Next() (Event, error) {
	var ev Event
	var data []string
	has := false
	for r.sc.Scan() {
		line := r.sc.Text()
		if line == "" {
			if has {
				ev.Data = strings.Join(data, "\n")
				return ev, nil
			}
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "id":
			ev.ID, has = value, true
		case "event":
			ev.Name, has = value, true
		case "data":
			data, has = append(data, value), true
		}
	}
	if err := r.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return Event{}, fmt.Errorf("%w (%d bytes)", ErrLineTooLong, maxEventLine)
		}
		return Event{}, err
	}
	if has {
		return Event{}, io.ErrUnexpectedEOF
	}
	return Event{}, io.EOF
}
