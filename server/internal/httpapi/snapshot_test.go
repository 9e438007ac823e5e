package httpapi

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

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
