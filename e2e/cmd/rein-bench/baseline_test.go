package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rein-ai/rein/server/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

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
	postEach(t, srv.URL, 8, 150, func(w, i int) []byte {
		return []byte(fmt.Sprintf("<poster %d body %d %s>", w, i, bytes.Repeat([]byte("x"), 1000)))
	}, func(body []byte) error {
		// Later groups may overwrite it once the ring wraps, but not
		// before this poster's next body: only 7 others and 1 MiB of
		// room.
		got, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.Contains(got, body) {
			return fmt.Errorf("answered 202 but is not in the file")
		}
		return nil
	})
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != size {
		t.Fatalf("the ring is %d bytes; want %d (it never grows)", st.Size(), size)
	}
}

// TestPgDurableHandler holds the PostgreSQL durable baseline to its
// promise: a body is a committed row when its 202 arrives, read back on a
// connection of its own.
func TestPgDurableHandler(t *testing.T) {
	dsn := pgtest.NewDatabase(t) // skips (fails on CI) without PostgreSQL
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := pgDurableHandler(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	// A pool: the posters read back at once.
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	postEach(t, srv.URL, 8, 40, func(w, i int) []byte {
		return []byte(fmt.Sprintf("<poster %d body %d>", w, i))
	}, func(body []byte) error {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM durable WHERE body = $1`, body).Scan(&n); err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("answered 202 and is in %d rows, want 1", n)
		}
		return nil
	})
}

// postEach has posters post n bodies each to url, one at a time, and
// checks each with stored once its 202 has arrived; the test fails on the
// first POST that is not answered 202 or that stored rejects.
func postEach(t *testing.T, url string, posters, n int, body func(poster, i int) []byte, stored func(body []byte) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, posters)
	for w := range posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				b := body(w, i)
				resp, err := http.Post(url+"/", "application/json", bytes.NewReader(b))
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					errs <- fmt.Errorf("poster %d body %d: HTTP %d", w, i, resp.StatusCode)
					return
				}
				if err := stored(b); err != nil {
					errs <- fmt.Errorf("poster %d body %d: %w", w, i, err)
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
}
