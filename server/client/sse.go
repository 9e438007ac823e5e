package client

import (
	"bufio"
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

// maxEventLine bounds one SSE line: an artifact snapshot may carry a tool's
// whole output (up to the server's text limits).
const maxEventLine = 16 << 20

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
		return Event{}, err
	}
	if has {
		return Event{}, io.ErrUnexpectedEOF
	}
	return Event{}, io.EOF
}
