package client

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// TestEventReader: comments are skipped, data lines join with "\n", the
// space after the colon is optional, and a stream cut inside an event is
// not a clean end.
func TestEventReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Event
		end  error
	}{
		{
			name: "two events",
			in:   ": ping\n\nid: 7\nevent: artifact_updated\ndata: {\"a\":\ndata: 1}\n\n: ping\nevent: snapshot_complete\ndata:{}\n\n",
			want: []Event{{ID: "7", Name: "artifact_updated", Data: "{\"a\":\n1}"}, {Name: "snapshot_complete", Data: "{}"}},
			end:  io.EOF,
		},
		{name: "empty", in: "", end: io.EOF},
		{name: "cut inside an event", in: "id: 3\nevent: x\ndata: {", end: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewEventReader(strings.NewReader(tt.in))
			for i, want := range tt.want {
				ev, err := r.Next()
				if err != nil || ev != want {
					t.Fatalf("event %d: %+v, %v; want %+v", i, ev, err, want)
				}
			}
			if _, err := r.Next(); !errors.Is(err, tt.end) {
				t.Fatalf("end: %v, want %v", err, tt.end)
			}
		})
	}
}

// An artifact snapshot is one line as long as the tool's whole output: a
// command that printed 20 MB. rein watch once gave up on every line over
// 16 MiB and reconnected for ever.
func TestEventReaderLongLine(t *testing.T) {
	data := strings.Repeat("0123456789abcdef", 20<<20/16)
	r := NewEventReader(strings.NewReader("event: artifact_snapshot\ndata: " + data + "\n\n"))
	ev, err := r.Next()
	if err != nil || ev.Name != "artifact_snapshot" || len(ev.Data) != len(data) {
		t.Fatalf("%q with %d bytes of data, %v; want artifact_snapshot with %d", ev.Name, len(ev.Data), err, len(data))
	}
}

// chunkReader returns at most n bytes per Read, as a socket does.
type chunkReader struct {
	r io.Reader
	n int
}

func (c chunkReader) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

// A long line arriving a read at a time is searched for its end once,
// not from its start after every read: a 64 MB artifact snapshot took
// rein watch 3 s, most of it searching again what it had searched. The
// lines around it still split as bufio.ScanLines splits them.
func TestEventReaderSearchesALongLineOnce(t *testing.T) {
	data := strings.Repeat("0123456789abcdef", 8<<20/16)
	in := "event: artifact_snapshot\r\ndata: " + data + "\n\nevent: snapshot_complete\ndata: {}\r\n\nevent: cut\ndata: x"
	r := NewEventReader(chunkReader{strings.NewReader(in), 4 << 10})
	ev, err := r.Next()
	if err != nil || ev.Name != "artifact_snapshot" || ev.Data != data {
		t.Fatalf("%q with %d bytes of data, %v; want artifact_snapshot with %d", ev.Name, len(ev.Data), err, len(data))
	}
	if ev, err := r.Next(); err != nil || ev != (Event{Name: "snapshot_complete", Data: "{}"}) {
		t.Fatalf("second event %+v, %v", ev, err)
	}
	if _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a stream cut in an event ended with %v", err)
	}
	if r.lines.looked > 2*len(in) {
		t.Errorf("searched %d MiB for the line ends of %d MiB", r.lines.looked>>20, len(in)>>20)
	}
}
