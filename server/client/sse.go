package client

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
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
	br *bufio.Reader
}

// maxEventLine bounds one SSE line. An artifact snapshot is one line and
// carries a tool's whole output, which grows with every output delta: a
// command that printed 20 MB makes a 20 MB line, and no per-event limit
// bounds it, only the session's (--max-session-bytes, 1 GiB by default).
// A var so that a test can reach it.
var maxEventLine = 1 << 30

// ErrLineTooLong is Next's error for a line over maxEventLine. Every
// reconnection would replay the same line, so following ends with it.
var ErrLineTooLong = errors.New("an event stream line is longer than this client reads")

// readerSize is the reader's buffer: a line that fits in it is read in
// place, a longer one a buffer's worth at a time.
const readerSize = 64 << 10

// NewEventReader reads events from r.
func NewEventReader(r io.Reader) *EventReader {
	return &EventReader{br: bufio.NewReaderSize(r, readerSize)}
}

// line returns the next line without its "\n" (or "\r\n"); at the end of
// the stream, what follows the last line end as a line of its own, then
// io.EOF. The line aliases the reader's buffer (valid until the next
// read) unless owned.
//
// A line longer than the buffer (an artifact snapshot of a tool's whole
// output) is read a buffer's worth at a time into pieces of its own and
// copied once into a slice of its exact size. bufio.Scanner grew one
// buffer by doubling it: a 64 MB line allocated 256 MB and held a 128 MB
// buffer, and the line was copied again into a string. ReadSlice searches
// each piece for the line's end once, as it arrives (searching the whole
// line again after every read made a 64 MB snapshot take rein watch 3 s).
func (r *EventReader) line() (line []byte, owned bool, err error) {
	b, err := r.br.ReadSlice('\n')
	if err == nil {
		return dropCR(b[:len(b)-1]), false, nil
	}
	if err != bufio.ErrBufferFull {
		if len(b) > 0 && err == io.EOF {
			return dropCR(b), false, nil
		}
		return nil, false, err
	}
	pieces := [][]byte{bytes.Clone(b)}
	n := len(b)
	for err == bufio.ErrBufferFull {
		b, err = r.br.ReadSlice('\n')
		if n += len(b); n > maxEventLine+1 {
			return nil, false, fmt.Errorf("%w (%d bytes)", ErrLineTooLong, maxEventLine)
		}
		if len(b) > 0 { // all but an end of stream right after a piece
			pieces = append(pieces, bytes.Clone(b))
		}
	}
	if err != nil && err != io.EOF {
		return nil, false, err
	}
	line = make([]byte, 0, n)
	for i, p := range pieces {
		line = append(line, p...)
		pieces[i] = nil // garbage as soon as it is copied
	}
	if err == nil {
		line = line[:len(line)-1]
	}
	return dropCR(line), true, nil
}

func dropCR(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\r' {
		return b[:len(b)-1]
	}
	return b
}

// rawEvent is an event whose data is bytes of its own: what the artifact
// stream decodes and hands its caller (ArtifactEvent.Data) without
// another copy.
type rawEvent struct {
	ID, Name string
	Data     []byte
}

// Next returns the next event, or an error (io.EOF when the stream ended
// cleanly between events).
func (r *EventReader) Next() (Event, error) {
	ev, err := r.next()
	return Event{ID: ev.ID, Name: ev.Name, Data: string(ev.Data)}, err
}

// next is Next with the data as bytes that alias nothing.
func (r *EventReader) next() (rawEvent, error) {
	var ev rawEvent
	var data [][]byte
	has := false
	for {
		line, own, err := r.line()
		if err == io.EOF {
			break
		}
		if err != nil {
			return rawEvent{}, err
		}
		if len(line) == 0 {
			if has {
				switch len(data) {
				case 0:
					ev.Data = []byte{}
				case 1:
					ev.Data = data[0] // the reader's no more
				default:
					ev.Data = bytes.Join(data, []byte("\n"))
				}
				return ev, nil
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(name) {
		case "id":
			ev.ID, has = string(value), true
		case "event":
			ev.Name, has = string(value), true
		case "data":
			if !own {
				// The reader's buffer: the next read overwrites it.
				value = bytes.Clone(value)
			}
			data, has = append(data, value), true
		}
	}
	if has {
		return rawEvent{}, io.ErrUnexpectedEOF
	}
	return rawEvent{}, io.EOF
}
