package e2e

import (
	"bufio"
	"io"
	"strings"
)

// SSEEvent is one server-sent event.
type SSEEvent struct {
	ID    string
	Event string
	Data  string
}

// SSEReader reads events from a text/event-stream body. It is written
// here, not borrowed, so the suite checks the wire format independently of
// the library the server uses to write it.
type SSEReader struct {
	sc *bufio.Scanner
	// Comments counts comment lines (": ping") seen so far.
	Comments int
}

// NewSSEReader reads from r.
func NewSSEReader(r io.Reader) *SSEReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	return &SSEReader{sc: sc}
}

// Next returns the next event, or an error when the stream ends.
func (r *SSEReader) Next() (SSEEvent, error) {
	var ev SSEEvent
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
			r.Comments++
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		has = true
		switch name {
		case "id":
			ev.ID = value
		case "event":
			ev.Event = value
		case "data":
			data = append(data, value)
		}
	}
	if err := r.sc.Err(); err != nil {
		return ev, err
	}
	return ev, io.EOF
}
