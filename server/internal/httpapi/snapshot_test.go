package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/rein-ai/rein/server/internal/writetest"
	"github.com/rein-ai/rein/server/store"
)

// artifactSnapshot is what writeArtifactSnapshot writes for a, and how
// much it allocated doing so.
func artifactSnapshot(t *testing.T, a store.Artifact) (frame []byte, alloc uint64) {
	t.Helper()
	var writes [][]byte
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err := writeArtifactSnapshot(func(b []byte) error { writes = append(writes, b); return nil }, a)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Join(writes, nil), after.TotalAlloc - before.TotalAlloc
}

// writeArtifactSnapshot frames a stored artifact exactly as Encode does,
// and a large one without copying its body: a replay of a long build
// log's tool call took three copies (the payload, a string of it for
// go-sse, and the framed message), 96 MiB of garbage for a 32 MiB
// artifact, past the server's soft memory limit with a few followers
// replaying at once, then one (the framed message).
func TestArtifactSnapshotFraming(t *testing.T) {
	for _, body := range []string{
		`{"seq":1,"id":"m1","type":"assistant_text","rev":7,"text":"hi"}`,
		`{"text":"a\nb \u2028 \r é \\n"}`, // escaped in JSON: one data line
		"{\"text\":\"raw\nnewline\"}",     // not stored JSON, but framed right all the same
		"{\"text\":\"raw\r\ncarriage\"}",
		`{}`,
		`{"output":"` + strings.Repeat("y", writePiece) + `"}`, // written in three pieces
	} {
		for _, rev := range []int64{7, 0} {
			a := store.Artifact{Seq: 1, Rev: rev, Body: []byte(body)}
			want := Encode(a.Rev, "artifact_snapshot", []byte(`{"artifact":`+body+`}`))
			if got, _ := artifactSnapshot(t, a); !bytes.Equal(got, want) {
				t.Errorf("artifactSnapshot(%.80q, rev %d) = %.80q; want %.80q", body, rev, got, want)
			}
		}
	}

	big := store.Artifact{Seq: 1, Rev: 9, Body: []byte(`{"output":"` + strings.Repeat("x", 32<<20) + `"}`)}
	frame, alloc := artifactSnapshot(t, big)
	if alloc > 1<<20 {
		t.Errorf("framing a %d MiB artifact allocated %d KiB; want its head and tail only", len(big.Body)>>20, alloc>>10)
	}
	if !bytes.HasSuffix(frame, []byte("\"}}\n\n")) || !bytes.HasPrefix(frame, []byte("id: 9\nevent: artifact_snapshot\ndata: {\"artifact\":{")) {
		t.Errorf("big frame starts %q, ends %q", frame[:60], frame[len(frame)-10:])
	}
}

// writeArtifactJSON writes what json.HTMLEscape would make of a body, for
// small bodies (into the buffer) and big ones (to the writer, after what
// the buffer held), including a big one that still needs escaping (a body
// another writer stored); and a big safe body goes out without a copy of
// it: copied into the answer's buffer, every GET of a 64 MB output held
// another 64 to 128 MB while its client read it.
func TestWriteArtifactJSON(t *testing.T) {
	pad := strings.Repeat("y", writePiece)
	for _, body := range []string{
		`{"text":"hi"}`,
		`{"text":"<b>&</b> \u2028 \u2029 é"}`,
		`{"output":"` + pad + `"}`,
		`{"output":"` + pad + `<"}`,
		`{"output":"` + pad + `>"}`,
		`{"output":"` + pad + `&"}`,
		"{\"output\":\"" + pad + "\u2028\"}",
		"{\"output\":\"" + pad + "\u2029 \\u003c\"}",
		"{\"output\":\"" + pad + "\xe2\x80 \xe2\x80\xa7\"}",
	} {
		var out, b bytes.Buffer
		b.WriteString("[1,")
		if err := writeArtifactJSON(&out, &b, []byte(body)); err != nil {
			t.Fatal(err)
		}
		out.Write(b.Bytes())
		var want bytes.Buffer
		want.WriteString("[1,")
		json.HTMLEscape(&want, []byte(body))
		if !bytes.Equal(out.Bytes(), want.Bytes()) {
			t.Errorf("writeArtifactJSON(%.40q...%q) = ...%q; want ...%q", body, body[max(0, len(body)-12):], tail(out.Bytes()), tail(want.Bytes()))
		}
	}

	big := []byte(`{"output":"` + strings.Repeat("x", 32<<20) + `"}`)
	asIs, alloc, err := writetest.AsIs(big, func(w io.Writer) error { return writeArtifactJSON(w, new(bytes.Buffer), big) })
	if err != nil {
		t.Fatal(err)
	}
	if !asIs {
		t.Errorf("a %d MiB body was not written as it is", len(big)>>20)
	}
	if alloc > 1<<20 {
		t.Errorf("writing a %d MiB body allocated %d KiB", len(big)>>20, alloc>>10)
	}
}

func tail(b []byte) []byte { return b[max(0, len(b)-16):] }
