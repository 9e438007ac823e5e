package server

import (
	"bytes"
	"runtime"
	"testing"
	"unsafe"

	"github.com/rein-ai/rein/server/store"
)

// bigBody is a fresh body of n bytes of c, as a store read makes one.
func bigBody(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }

// Replays of the same big artifact share one body: eight followers on slow
// links replaying a 64 MB output held eight copies (619 MiB of RSS) while
// their clients read. Sharing never changes what a replay sends: a body
// is shared only when equal, so a session deleted and created again under
// its id, whose artifact has the same seq and revision but other text,
// keeps its own; small bodies are left alone; and a body no replay holds
// is collected and its entry swept.
func TestSharedBodies(t *testing.T) {
	t.Parallel()
	var tb sharedBodies
	first := []store.Artifact{{Seq: 1, Rev: 3, Body: []byte(`{"small":1}`)}, {Seq: 2, Rev: 9, Body: bigBody('x', shareMin)}}
	tb.share("s", first)
	second := []store.Artifact{{Seq: 1, Rev: 3, Body: []byte(`{"small":1}`)}, {Seq: 2, Rev: 9, Body: bigBody('x', shareMin)}}
	tb.share("s", second)
	if unsafe.SliceData(second[1].Body) != unsafe.SliceData(first[1].Body) {
		t.Errorf("a second replay of the same big artifact holds its own copy")
	}
	if !bytes.Equal(second[1].Body, bigBody('x', shareMin)) {
		t.Errorf("the shared body is not the artifact's")
	}
	if unsafe.SliceData(second[0].Body) == unsafe.SliceData(first[0].Body) {
		t.Errorf("a small body was shared")
	}

	// The same key, other bytes: not shared, in either direction.
	other := []store.Artifact{{Seq: 2, Rev: 9, Body: bigBody('y', shareMin)}}
	tb.share("s", other)
	if !bytes.Equal(other[0].Body, bigBody('y', shareMin)) {
		t.Fatalf("an artifact with the key of another's and other bytes was given the other's body")
	}
	// The newer body is the one shared from then on.
	again := []store.Artifact{{Seq: 2, Rev: 9, Body: bigBody('y', shareMin)}}
	tb.share("s", again)
	if unsafe.SliceData(again[0].Body) != unsafe.SliceData(other[0].Body) {
		t.Errorf("a replay of the artifact read last does not share its body")
	}
	elsewhere := []store.Artifact{{Seq: 2, Rev: 9, Body: bigBody('x', shareMin)}}
	tb.share("t", elsewhere)
	if unsafe.SliceData(elsewhere[0].Body) == unsafe.SliceData(first[0].Body) {
		t.Errorf("another session's artifact was given this one's body")
	}
	runtime.KeepAlive(first)
	runtime.KeepAlive(second)
	runtime.KeepAlive(again)

	// Once no replay holds them the bodies are collected, and the next
	// offer sweeps their entries.
	first, second, other, again, elsewhere = nil, nil, nil, nil, nil
	for range 3 {
		runtime.GC()
	}
	tb.share("u", []store.Artifact{{Seq: 1, Rev: 1, Body: bigBody('z', shareMin)}})
	if len(tb.m) != 1 {
		t.Errorf("%d entries after the bodies were collected; want the last offer's only", len(tb.m))
	}
}
