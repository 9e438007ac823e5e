package main

import (
	"fmt"
	"strings"
	"testing"
)

// sseEvent builds one SSE event.
func sseEvent(event, data string) string { return "event: " + event + "\ndata: " + data + "\n\n" }

// textArtifact is an artifact payload of an assistant text.
func textArtifact(text string) string {
	return `{"artifact":{"seq":1,"type":"assistant_text","fields":{"text":"` + text + `"}}}`
}

func TestSubscriberCountsEachTokenOnce(t *testing.T) {
	var long []string
	for i := range 5000 { // about 50 KB: longer than the reader's buffer
		long = append(long, fmt.Sprint(1000000+i))
	}
	for _, tc := range []struct {
		name   string
		stream string
		want   int64
	}{
		{"appends after the snapshot", sseEvent("artifact_snapshot", textArtifact("1 2")) + sseEvent("snapshot_complete", "{}") +
			sseEvent("artifact_updated", `{"seq":1,"append":"3 4"}`) + sseEvent("artifact_updated", `{"seq":1,"append":"5"}`), 3},
		{"created after the snapshot", sseEvent("snapshot_complete", "{}") + sseEvent("artifact_created", textArtifact("1 2")) +
			sseEvent("artifact_updated", `{"seq":1,"append":"3"}`), 3},
		{"whole-text snapshots count only their new tokens", sseEvent("artifact_snapshot", textArtifact("1")) + sseEvent("snapshot_complete", "{}") +
			sseEvent("artifact_snapshot", textArtifact("1 2 3")) + sseEvent("artifact_updated", `{"seq":1,"append":"4"}`) +
			sseEvent("artifact_snapshot", textArtifact("1 2 3 4 5")), 4},
		{"every new block's first token counts", sseEvent("snapshot_complete", "{}") + sseEvent("artifact_created", textArtifact("1 2")) +
			sseEvent("artifact_updated", `{"seq":1,"append":"3"}`) + sseEvent("artifact_created", textArtifact("4")) +
			sseEvent("artifact_updated", `{"seq":2,"append":"5"}`), 5},
		{"a line longer than the buffer", sseEvent("snapshot_complete", "{}") + sseEvent("artifact_snapshot", textArtifact(strings.Join(long, " "))) +
			sseEvent("artifact_updated", `{"seq":1,"append":"x"}`), int64(len(long)) + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &subscriber{ready: make(chan struct{})}
			s.read(strings.NewReader(tc.stream), true)
			if got := s.events.Load(); got != tc.want {
				t.Fatalf("counted %d deliveries, want %d", got, tc.want)
			}
			select {
			case <-s.ready:
			default:
				t.Fatal("ready not closed")
			}
		})
	}
}
