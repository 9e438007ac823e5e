package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestDurableHandler holds the durable baseline to its one promise: a
// body is in its file when its 202 arrives, also once the ring has
// wrapped.
func TestDurableHandler(t *testing.T) {
	dir := t.TempDir()
	const size = 1 << 20
	h, err := durableHandler(dir, size)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	path := filepath.Join(dir, "durable.log")
	// 8 posters, 1,200 bodies of ~1 KiB: the 1 MiB ring wraps once.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 150 {
				body := []byte(fmt.Sprintf("<poster %d body %d %s>", w, i, bytes.Repeat([]byte("x"), 1000)))
				resp, err := http.Post(srv.URL+"/", "application/json", bytes.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					errs <- fmt.Errorf("POST: HTTP %d", resp.StatusCode)
					return
				}
				// Later groups may overwrite it once the ring wraps, but
				// not before this poster's next body: only 7 others and
				// 1 MiB of room.
				got, err := os.ReadFile(path)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Contains(got, body) {
					errs <- fmt.Errorf("poster %d body %d answered 202 but is not in the file", w, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != size {
		t.Fatalf("the ring is %d bytes; want %d (it never grows)", st.Size(), size)
	}
}
