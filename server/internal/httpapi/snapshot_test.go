package httpapi

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

	"github.com/rein-ai/rein/server/store"
)

// artifactSnapshot frames a stored artifact exactly as Encode does, and a
// large one with about one copy of its body: a replay of a long build
// log's tool call took three (the payload, a string of it for go-sse, and
// the framed message), 96 MiB of garbage for a 32 MiB artifact, past the
// server's soft memory limit with a few followers replaying at once.
func TestArtifactSnapshotFraming(t *testing.T) {
	for _, body := range []string{
		`{"seq":1,"id":"m1","type":"assistant_text","rev":7,"text":"hi"}`,
		`{"text":"a\nb \u2028 \r é \\n"}`, // escaped in JSON: one data line
		"{\"text\":\"raw\nnewline\"}",     // not stored JSON, but framed right all the same
		"{\"text\":\"raw\r\ncarriage\"}",
		`{}`,
	} {
		for _, rev := range []int64{7, 0} {
			a := store.Artifact{Seq: 1, Rev: rev, Body: []byte(body)}
			want := Encode(a.Rev, "artifact_snapshot", []byte(`{"artifact":`+body+`}`))
			if got := artifactSnapshot(a); !bytes.Equal(got, want) {
				t.Errorf("artifactSnapshot(%q, rev %d) = %q; want %q", body, rev, got, want)
			}
		}
	}

	big := store.Artifact{Seq: 1, Rev: 9, Body: []byte(`{"output":"` + strings.Repeat("x", 32<<20) + `"}`)}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	frame := artifactSnapshot(big)
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(len(big.Body))*3/2 {
		t.Errorf("framing a %d MiB artifact allocated %d MiB; want about one copy", len(big.Body)>>20, alloc>>20)
	}
	if !bytes.HasSuffix(frame, []byte("\"}}\n\n")) || !bytes.HasPrefix(frame, []byte("id: 9\nevent: artifact_snapshot\ndata: {\"artifact\":{")) {
		t.Errorf("big frame starts %q, ends %q", frame[:60], frame[len(frame)-10:])
	}
}
