package crashfs

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// TestAppendWhileReading: one file descriptor appends while another reads
// what was already written, as agentd's outbox does: every read sees
// exactly what was written.
func TestAppendWhileReading(t *testing.T) {
	_, dir := mounted(t)
	path := filepath.Join(dir, "seg")
	w, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r := w // one descriptor, as the outbox has
	stop := make(chan struct{})
	defer close(stop)
	go func() { // and a goroutine that fsyncs it
		for {
			select {
			case <-stop:
				return
			default:
				_ = w.Sync()
			}
		}
	}()
	const total = 4 << 20
	want := make([]byte, total)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range want {
		want[i] = byte(rng.IntN(251))
	}
	var written atomic.Int64
	done := make(chan error, 1)
	go func() {
		var off int64
		for off < total {
			n := min(int64(1+rng.IntN(300)), total-off)
			if _, err := w.WriteAt(want[off:off+n], off); err != nil {
				done <- err
				return
			}
			off += n
			written.Store(off)
		}
		done <- nil
	}()
	var off int64
	for off < total {
		end := written.Load()
		if end == off {
			continue
		}
		n := min(end-off, 100000)
		buf := make([]byte, n)
		if _, err := r.ReadAt(buf, off); err != nil {
			t.Fatalf("read %d at %d (written %d): %v", n, off, end, err)
		}
		if !bytes.Equal(buf, want[off:off+n]) {
			i := 0
			for buf[i] == want[off+int64(i)] {
				i++
			}
			t.Fatalf("read %d at %d (written %d): byte %d differs", n, off, end, off+int64(i))
		}
		off += n
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
