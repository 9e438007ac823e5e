package stdinqueue

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// What is queued reaches the reader in order, and Close closes the pipe
// only after everything queued before it.
func TestWritesInOrderThenClose(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	q := New(w, func(err error) { t.Errorf("write: %v", err) })
	var want bytes.Buffer
	for i := range 100 {
		line := []byte(strings.Repeat(string(rune('a'+i%26)), 1000) + "\n")
		want.Write(line)
		q.Write(line)
	}
	q.Close()
	got, err := io.ReadAll(r) // ends only when the queue closed the pipe
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("read %d bytes, not the %d written in order", len(got), want.Len())
	}
	q.Stop()
}

// A reader that reads nothing holds a write of more than the pipe takes;
// Write does not wait for it, and Stop closes the pipe, which fails the
// stuck write, and returns once the writing goroutine has.
func TestStopEndsAWriteNobodyReads(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	failed := make(chan error, 1)
	q := New(w, func(err error) { failed <- err })
	q.Write(make([]byte, 4<<20)) // far more than a pipe's buffer
	q.Write([]byte("after\n"))   // queued behind it: Write returns
	// One byte read says the big write has begun (and fills the pipe).
	if _, err := io.ReadFull(r, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() { q.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return while a write was stuck")
	}
	select {
	case err := <-failed:
		if !errors.Is(err, os.ErrClosed) {
			t.Errorf("the stuck write failed with %v; want the pipe closed", err)
		}
	default:
		t.Error("the stuck write did not fail")
	}
	q.Write([]byte("ignored\n")) // after Stop: taken and dropped, no block
}

// Past MaxQueued bytes waiting, Write blocks until the reader takes some.
func TestWriteBlocksPastTheBound(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	q := New(w, nil)
	defer q.Stop()
	q.Write(make([]byte, MaxQueued)) // one write of any size is taken
	done := make(chan struct{})
	go func() { q.Write([]byte("x")); close(done) }()
	select {
	case <-done:
		t.Fatal("Write returned with more than MaxQueued bytes waiting")
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := io.CopyN(io.Discard, r, MaxQueued); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Write still blocked after the reader took what waited")
	}
}
