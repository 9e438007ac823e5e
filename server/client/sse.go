package client

import (
	"bufio"
	"bytes"
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
	sc    *bufio.Scanner
	lines *lineSplit
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
	lines := &lineSplit{}
	sc.Split(lines.split)
	return &EventReader{sc: sc, lines: lines}
}

// lineSplit is bufio.ScanLines (a line ends at "\n", a "\r" before it
// dropped) that remembers how far it has looked for the end of the line
// it is in. The scanner calls it again after every read, with the line
// so far: ScanLines looked for the end from the line's start each time,
// so a line of n bytes arriving in reads of k cost n²/2k bytes of
// searching, and a 64 MB artifact snapshot arriving 64 KiB at a time
// took rein watch 3 s, most of it looking again at what it had looked at.
type lineSplit struct {
	seen int // bytes at the start of data known to hold no '\n'
	// looked counts the bytes searched, for the test that holds it to
	// about the stream's length.
	looked int
}

func (l *lineSplit) split(data []byte, atEOF bool) (advance int, token []byte, err error) {
	l.seen = min(l.seen, len(data))
	l.looked += len(data) - l.seen
	if i := bytes.IndexByte(data[l.seen:], '\n'); i >= 0 {
		i += l.seen
		l.seen = 0
		return i + 1, dropCR(data[:i]), nil
	}
	l.seen = len(data)
	if atEOF && len(data) > 0 {
		l.seen = 0
		return len(data), dropCR(data), nil
	}
	return 0, nil, nil
}

func dropCR(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\r' {
		return b[:len(b)-1]
	}
	return b
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
