package server

import (
	"bytes"
	"sync"
	"unsafe"
	"weak"

	"github.com/rein-ai/rein/server/store"
)

// shareMin is the smallest artifact body that replays share
// (sharedBodies): below it a copy per follower costs less than the
// compare that would save it. A variable only for SmallThresholds.
var shareMin = 1 << 20

// sharedBodies lets the replays that read the same big artifact at once
// hold one copy of its body. A replay (a stream's snapshot, GET
// /artifacts) reads a page of artifacts and keeps it until the adapter
// has written it to its client, and a slow client takes as long as its
// link does: eight followers on slow links replaying a 64 MB tool output
// each held their own 64 MB, and took the server to 619 MiB of RSS (a
// restart makes every follower reconnect and replay at once, and a
// flaky link reconnects while its last connection still waits for its
// write timeout). The page's read still makes its own copy, but only for
// as long as the read (a replay slot, Options.ReplaySlots, bounds how
// many run at once); what is held for the client afterwards is the one
// copy every replay of that artifact shares.
//
// A body is shared only when its bytes are equal to the one held, so the
// key (session, seq, revision) only finds the candidate and a wrong match
// (a session deleted and created again under its id) costs a compare,
// never a wrong transcript. The table holds its bodies weakly: one that
// no replay holds any more is collected as any garbage, and its entry is
// swept at a later insert.
type sharedBodies struct {
	mu sync.Mutex
	m  map[bodyKey]sharedBody
}

type bodyKey struct {
	session  string
	seq, rev int64
}

// sharedBody is a weak reference to a body's bytes (the first byte of its
// array: the whole array lives as long as any slice of it) and its length.
type sharedBody struct {
	p weak.Pointer[byte]
	n int
}

func (b sharedBody) value() []byte {
	p := b.p.Value()
	if p == nil {
		return nil
	}
	return unsafe.Slice(p, b.n)
}

// share replaces the bodies of the page's big artifacts with the copies
// other replays hold, when their bytes are the same, and offers the others
// for later replays to share.
func (t *sharedBodies) share(session string, page []store.Artifact) {
	for i := range page {
		a := &page[i]
		if len(a.Body) < shareMin {
			continue
		}
		k := bodyKey{session, a.Seq, a.Rev}
		t.mu.Lock()
		held := t.m[k].value()
		t.mu.Unlock()
		// The compare runs outside the lock: 64 MB take a few ms.
		if held != nil && bytes.Equal(held, a.Body) {
			a.Body = held
			continue
		}
		t.offer(k, a.Body, held)
	}
}

// offer makes body the one shared under k, in place of seen (what share
// found there and compared it with: nil, or a body of an artifact that is
// no longer this one, such as a deleted session's).
func (t *sharedBodies) offer(k bodyKey, body, seen []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[bodyKey]sharedBody)
	}
	// Sweep the entries whose bodies were collected. The table holds one
	// entry per big body replayed since the last collection at most, so
	// the sweep is short.
	for key, b := range t.m {
		if b.p.Value() == nil {
			delete(t.m, key)
		}
	}
	if cur := t.m[k].value(); cur != nil && unsafe.SliceData(cur) != unsafe.SliceData(seen) {
		// Another replay offered its copy since share looked: keep that
		// one, and this replay holds its own for once.
		return
	}
	t.m[k] = sharedBody{p: weak.Make(&body[0]), n: len(body)}
}
