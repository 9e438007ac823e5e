package client

import (
	"errors"
	"io"
	"runtime"
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

// A long line arriving a read at a time is read whole, and the lines
// around it still split as bufio.ScanLines splits them ("\r\n" or "\n").
func TestEventReaderLongLineInReads(t *testing.T) {
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
}

// Reading a long line allocates it about twice (the pieces it arrives in
// and the line), and the artifact stream's event data is that line, not
// another copy of it: bufio.Scanner doubled its buffer up to the line's
// size (four times the line in all) and the line was copied twice more,
// into a string and into the event's bytes, so rein watch of a 64 MB
// tool output peaked at 410 MiB.
func TestEventReaderLongLineAllocations(t *testing.T) {
	data := strings.Repeat("0123456789abcdef", 32<<20/16)
	in := "event: artifact_snapshot\ndata: " + data + "\r\n\n"
	for _, tt := range []struct {
		name string
		read func(r *EventReader) (int, error)
		most float64
	}{
		{"next", func(r *EventReader) (int, error) { ev, err := r.next(); return len(ev.Data), err }, 2.1},
		{"Next", func(r *EventReader) (int, error) { ev, err := r.Next(); return len(ev.Data), err }, 3.1},
	} {
		r := NewEventReader(chunkReader{strings.NewReader(in), 64 << 10})
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		n, err := tt.read(r)
		runtime.ReadMemStats(&after)
		if err != nil || n != len(data) {
			t.Fatalf("%s: %d bytes of data, %v; want %d", tt.name, n, err, len(data))
		}
		if alloc := float64(after.TotalAlloc - before.TotalAlloc); alloc > tt.most*float64(len(data)) {
			t.Errorf("%s: reading a %d MiB line allocated %.1f times it; want at most %.1f", tt.name, len(data)>>20, alloc/float64(len(data)), tt.most)
		}
	}
}

// An event's data never aliases the reader's buffer: the next read
// overwrites it.
func TestEventReaderDataIsItsOwn(t *testing.T) {
	r := NewEventReader(chunkReader{strings.NewReader("event: a\ndata: first\n\nevent: b\ndata: second\ndata: line\n\nevent: c\ndata: third\n\n"), 5})
	var got []rawEvent
	for {
		ev, err := r.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	want := []string{"first", "second\nline", "third"}
	if len(got) != len(want) {
		t.Fatalf("%d events; want %d", len(got), len(want))
	}
	for i, ev := range got {
		if string(ev.Data) != want[i] {
			t.Errorf("event %s: data %q; want %q", ev.Name, ev.Data, want[i])
		}
	}
}
