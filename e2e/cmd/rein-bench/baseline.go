package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	sse "github.com/tmaxmax/go-sse"
)

// The baselines run as child processes of this same binary (-mode ...), so
// their CPU and memory are measured the way rein-server's are, and they
// never share a process with the load generators.

// serveTrivial answers every POST after reading the body: the floor of what
// any HTTP ingest can do on this machine.
func serveTrivial() error {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"accepted":1,"duplicates":0}`))
	})
	return listenAndServe(mux)
}

// serveDurable is the minimal durable ingest: every POSTed body is on disk
// before its 202. One goroutine takes whatever bodies wait (a group
// commit, like rein-server's writer), writes them into a file in dir with
// one write and fsyncs it (what SQLite does with --sync full), then
// answers each. The file is written in full first and then overwritten
// in a ring, as SQLite reuses its WAL, so no fsync has to record a new
// size. No parsing, no database, no state: the floor of any ingest whose
// 2xx means "on disk" on this machine, which is the honest comparison for
// ingest_single_full.
func serveDurable(dir string) error {
	h, err := durableHandler(dir, 64<<20)
	if err != nil {
		return err
	}
	return listenAndServe(h)
}

// durableHandler is serveDurable's handler, writing a ring of size bytes
// (a multiple of 1 MiB).
func durableHandler(dir string, size int64) (http.Handler, error) {
	f, err := os.OpenFile(filepath.Join(dir, "durable.log"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("durable baseline: %w", err)
	}
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(zeros)) {
		if _, err := f.Write(zeros); err != nil {
			return nil, fmt.Errorf("durable baseline: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("durable baseline: %w", err)
	}
	var buf []byte
	var off int64
	// The committer lives as long as the process (the bench stops it).
	return groupCommit(context.Background(), func(bodies [][]byte) error {
		buf = buf[:0]
		for _, b := range bodies {
			buf = append(buf, b...)
		}
		if off+int64(len(buf)) > size {
			off = 0
		}
		_, err := f.WriteAt(buf, off)
		off += int64(len(buf))
		if err != nil {
			return err
		}
		return f.Sync()
	}, nil), nil
}

// servePgDurable is serveDurable on PostgreSQL: one goroutine takes
// whatever bodies wait and inserts them as rows of one table in one
// statement, which commits on its own with the server's connection
// settings (synchronous_commit=on, so PostgreSQL has flushed its WAL
// before the reply), then answers each. One round trip and one commit per
// group, no other row, index or check: the floor of any ingest whose 2xx
// means "committed" to this PostgreSQL, which is the honest comparison for
// pg_ingest_single.
func servePgDurable(dsn string) error {
	h, err := pgDurableHandler(context.Background(), dsn)
	if err != nil {
		return err
	}
	return listenAndServe(h)
}

// pgDurableHandler is servePgDurable's handler; its committer lives as
// long as ctx.
func pgDurableHandler(ctx context.Context, dsn string) (http.Handler, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres durable baseline: %w", err)
	}
	cfg.RuntimeParams["synchronous_commit"] = "on"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres durable baseline: %w", err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS durable (id bigserial PRIMARY KEY, body bytea NOT NULL)`); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("postgres durable baseline: %w", err)
	}
	return groupCommit(ctx, func(bodies [][]byte) error {
		_, err := conn.Exec(ctx, `INSERT INTO durable (body) SELECT unnest($1::bytea[])`, bodies)
		return err
	}, func() { conn.Close(context.Background()) }), nil
}

// groupCommit is the handler of a minimal durable ingest: one goroutine,
// living as long as ctx, takes whatever bodies wait (a group commit, like
// rein-server's writer, at most 256), hands them to commit, and answers
// each 202 once commit has returned nil, 503 with its error otherwise.
// stop, if not nil, runs when the goroutine ends.
func groupCommit(ctx context.Context, commit func(bodies [][]byte) error, stop func()) http.Handler {
	type post struct {
		body []byte
		done chan error
	}
	posts := make(chan post, 1024)
	go func() {
		if stop != nil {
			defer stop()
		}
		var group []post
		var bodies [][]byte
		for {
			var p post
			select {
			case p = <-posts:
			case <-ctx.Done():
				return
			}
			group = append(group[:0], p)
		more:
			for len(group) < 256 {
				select {
				case p := <-posts:
					group = append(group, p)
				default:
					break more
				}
			}
			bodies = bodies[:0]
			for _, p := range group {
				bodies = append(bodies, p.body)
			}
			err := commit(bodies)
			for _, p := range group {
				p.done <- err
			}
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		done := make(chan error, 1)
		select {
		case posts <- post{body: body, done: done}:
		case <-r.Context().Done():
			return
		}
		select {
		case err = <-done:
		case <-r.Context().Done():
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"accepted":1,"duplicates":0}`))
	})
	return mux
}

// serveHub is the minimal go-sse fan-out: one goroutine per subscriber fed
// by a channel, every POSTed body broadcast as an artifact_updated event.
// No storage, no reducer, no deadlines: the ceiling for delivery.
func serveHub() error {
	var mu sync.Mutex
	subs := map[chan []byte]struct{}{}
	var rev int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		s, err := sse.Upgrade(w, r)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		ch := make(chan []byte, 1024)
		mu.Lock()
		subs[ch] = struct{}{}
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(subs, ch)
			mu.Unlock()
		}()
		done := &sse.Message{Type: sse.Type("snapshot_complete")}
		done.AppendData(`{"rev":0}`)
		if s.Send(done) != nil || s.Flush() != nil {
			return
		}
		for {
			select {
			case <-r.Context().Done():
				return
			case data := <-ch:
				m := &sse.Message{Type: sse.Type("artifact_updated")}
				// data carries "rev\npayload".
				id, payload, _ := strings.Cut(string(data), "\n")
				m.ID = sse.ID(id)
				m.AppendData(payload)
				if s.Send(m) != nil || s.Flush() != nil {
					return
				}
			}
		}
	})
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		rev++
		msg := []byte(strconv.FormatInt(rev, 10) + "\n" + updatePayload(string(body)))
		for ch := range subs {
			select {
			case ch <- msg:
			default: // a full subscriber misses it; the hub never blocks
			}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	return listenAndServe(mux)
}

// updatePayload is the artifact_updated data rein-server sends for a
// text_delta appended to artifact 1.
func updatePayload(delta string) string {
	return `{"seq":1,"field":"text","append":` + strconv.Quote(delta) + `}`
}

func listenAndServe(h http.Handler) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// runAgent is a native agent for the agentd figure: on a prompt "N R" it
// streams N text deltas at R per second (0: as fast as it can), each
// carrying the time it was written, so the subscriber can measure agent
// stdout -> client latency.
func runAgent() error {
	out := bufio.NewWriter(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	turn := 0
	for in.Scan() {
		line := in.Text()
		switch {
		case strings.Contains(line, `"shutdown"`):
			return nil
		case strings.Contains(line, `"prompt"`):
			turn++
			i := strings.Index(line, `"text":"`)
			var n, rate int
			fmt.Sscanf(strings.SplitN(line[i+8:], `"`, 2)[0], "%d %d", &n, &rate)
			var tick *time.Ticker
			if rate > 0 {
				tick = time.NewTicker(time.Second / time.Duration(rate))
			}
			fmt.Fprintf(out, `{"type":"turn_started","turnId":"t%d","source":"user"}`+"\n", turn)
			for k := 0; k < n; k++ {
				if tick != nil {
					<-tick.C
				}
				fmt.Fprintf(out, `{"type":"text_delta","id":"m%d","delta":"%d "}`+"\n", turn, time.Now().UnixNano())
				// Flush each line: latency is measured from the write.
				if err := out.Flush(); err != nil {
					return err
				}
			}
			if tick != nil {
				tick.Stop()
			}
			fmt.Fprintf(out, `{"type":"turn_completed","turnId":"t%d","stopReason":"end_turn"}`+"\n", turn)
			if err := out.Flush(); err != nil {
				return err
			}
		}
	}
	return in.Err()
}
