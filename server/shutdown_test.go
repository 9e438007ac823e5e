package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/internal/sqlite"
	"github.com/rein-ai/rein/server/store"
)

// hungStore is the SQLite store with a database that stops answering on
// demand: while hung, a commit waits until its context ends, as one on a
// PostgreSQL connection that stalled does (the network gone, the
// database frozen), and says why it ended.
type hungStore struct {
	*sqlite.Store
	hung    atomic.Bool
	waiting chan struct{} // a commit waits on the hung database
	mu      sync.Mutex
	ended   []error // why each commit that waited stopped waiting
}

func (h *hungStore) Commit(ctx context.Context, ops []store.Op) error {
	if !h.hung.Load() {
		return h.Store.Commit(ctx, ops)
	}
	select {
	case h.waiting <- struct{}{}:
	default:
	}
	<-ctx.Done()
	h.mu.Lock()
	h.ended = append(h.ended, ctx.Err())
	h.mu.Unlock()
	return fmt.Errorf("commit %d ops: %w", len(ops), ctx.Err())
}

// TestShutdownWithHungDatabase: a shutdown whose requests wait on a
// database that stopped answering gives up on them at its deadline.
// Every connection is closed then, so no client waits for their answers;
// before, the writer went on committing each queued group against the
// hung database, each commit until its own 30 s timeout, and the process
// took that long times the groups queued to stop (minutes on a stalled
// PostgreSQL link, with a supervisor's kill as the only way out). None of
// them was answered 2xx.
func TestShutdownWithHungDatabase(t *testing.T) {
	t.Parallel()
	hs := &hungStore{Store: openSQLite(t, filepath.Join(t.TempDir(), "rein.db")), waiting: make(chan struct{}, 1)}
	s := start(t, app.Options{Store: hs})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)

	hs.hung.Store(true)
	const n = 3
	answers := make(chan string, n)
	send := func(i int) {
		body := fmt.Sprintf(`{"type":"prompt","text":"p%d","queue":true}`, i)
		resp, err := http.Post(s.URL()+"/sessions/a/commands", "application/json", strings.NewReader(body))
		if err != nil {
			answers <- "cut: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answers <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	go send(0)
	<-hs.waiting // the first group's commit waits on the database
	for i := 1; i < n; i++ {
		go send(i)
	}
	eventually(t, "the other commands queued behind it", func() bool { return server.Queued(s.Server) == n-1 })

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range n {
		if a := <-answers; strings.HasPrefix(a, "2") {
			t.Errorf("a command the database never stored was answered %s", a)
		}
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if len(hs.ended) == 0 {
		t.Fatal("no commit waited on the hung database")
	}
	for i, err := range hs.ended {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("commit %d on the hung database ended by %v; want it cancelled at the shutdown's deadline", i+1, err)
		}
	}
}
