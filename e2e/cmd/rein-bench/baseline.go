package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

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
