package sqlite

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rein-ai/rein/server/store"
)

// preallocateWAL adds zeros after what the file holds and nothing else: it
// never changes a byte already there, never shortens a file, and leaves a
// missing WAL to SQLite.
func TestPreallocateWALOnlyAppendsZeros(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "x.db")
	if err := preallocateWAL(db, 1<<20); err != nil {
		t.Fatalf("missing WAL: %v", err)
	}
	if _, err := os.Stat(walPath(db)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing WAL was created (stat: %v)", err)
	}
	head := []byte("frames already written")
	if err := os.WriteFile(walPath(db), head, 0o644); err != nil {
		t.Fatal(err)
	}
	const size = 3<<20 + 5 // not a multiple of the write size
	if err := preallocateWAL(db, size); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(walPath(db))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != size {
		t.Fatalf("WAL is %d bytes; want %d", len(got), size)
	}
	if !bytes.Equal(got[:len(head)], head) {
		t.Fatalf("WAL starts %q; want %q kept", got[:len(head)], head)
	}
	if i := bytes.IndexFunc(got[len(head):], func(r rune) bool { return r != 0 }); i >= 0 {
		t.Fatalf("byte %d after the old end is not zero", len(head)+i)
	}
	if err := preallocateWAL(db, 10); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(walPath(db)); err != nil || fi.Size() != size {
		t.Fatalf("a shorter preallocation changed the file: %v, %v", fi.Size(), err)
	}
}

// Open fills the WAL out to its cycle, and what was committed into that
// WAL survives a crash: a copy of the database and WAL files taken while
// the Store is open (no clean close, no checkpoint of these commits, no
// shared-memory index) opens with every event, SQLite's recovery stopping
// at the zeros after the last frame.
func TestPreallocatedWALRecoversAfterACrash(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rein.db")
	const limit = 2 << 20
	s, err := Open(context.Background(), path, Options{walLimit: limit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if fi, err := os.Stat(walPath(path)); err != nil || fi.Size() != limit {
		t.Fatalf("WAL after Open: %v bytes, %v; want %d", fi.Size(), err, limit)
	}
	commit(t, s, store.CreateSession{Session: newSession("a")})
	const n = 60
	for i := int64(1); i <= n; i++ {
		commit(t, s, store.AppendEvents{SessionID: "a", Events: []store.Event{{Pos: i, Instance: "i", AgentSeq: i, Body: []byte(`{"type":"text_delta","id":"m1","delta":"x"}`)}}})
	}
	crash := filepath.Join(t.TempDir(), "rein.db")
	for _, f := range []string{"", "-wal"} {
		b, err := os.ReadFile(path + f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(crash+f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	c, err := Open(context.Background(), crash, Options{walLimit: limit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	evs, err := c.Events(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != n || evs[n-1].Pos != n {
		t.Fatalf("after the crash: %d events (last %+v); want %d", len(evs), evs[len(evs)-1], n)
	}
}
