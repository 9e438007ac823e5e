// Command rein-soak runs the real rein-server for minutes under the load an
// operator sees: sessions taking agent turns as fast as their
// posters can send them, and followers that reconnect every few seconds
// without Last-Event-ID, so each connection replays the whole session, as
// a freshly opened browser tab does. Every -every it prints the server's
// RSS, the database's size (db + wal), the ingest rate and the replays
// completed in that window; at the end it writes its figures into the
// "soak" section of bench.json, keeping the file's other keys. `make soak`
// runs it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/rein-ai/rein/server/client"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rein-ai/rein/e2e"
	"github.com/rein-ai/rein/e2e/internal/loadgen"
)

// config is the load; the defaults are the README's (Benchmarks, Soak).
type config struct {
	bin       string
	out       string
	duration  time.Duration
	every     time.Duration
	sessions  int
	followers int
	batch     int
	holdMin   time.Duration
	holdMax   time.Duration
}

// turn is one agent turn: streamed text and a shell call with 2 KB of
// output (4 deltas of 512 bytes), 30 events.
var turn = loadgen.Turn{TextDeltas: 20, OutputDeltas: 4, OutputLine: 512}

func main() {
	var cfg config
	flag.StringVar(&cfg.bin, "bin", "bin", "directory holding rein-server")
	flag.StringVar(&cfg.out, "out", "bin/bench.json", `the JSON results file; its "soak" key is replaced, the others kept`)
	flag.DurationVar(&cfg.duration, "duration", 6*time.Minute, "how long the load runs")
	flag.DurationVar(&cfg.every, "every", 15*time.Second, "the reporting window: a line each window; the ingest ratio compares the first and the last")
	flag.IntVar(&cfg.sessions, "sessions", 20, "sessions, each with its own poster")
	flag.IntVar(&cfg.followers, "followers", 60, "followers, spread over the sessions, each reconnecting without Last-Event-ID")
	flag.IntVar(&cfg.batch, "batch", 5, "events per POST")
	flag.DurationVar(&cfg.holdMin, "hold-min", 500*time.Millisecond, "shortest time a follower stays connected (drawn uniformly from hold-min..hold-max; at least until its replay completes)")
	flag.DurationVar(&cfg.holdMax, "hold-max", 3*time.Second, "longest time a follower stays connected, unless its replay takes longer")
	flag.Parse()
	if err := cfg.check(); err != nil {
		log.Fatal(err)
	}
	if err := run(cfg); err != nil {
		if errors.Is(err, errInterrupted) {
			fmt.Fprintln(os.Stderr, "rein-soak: interrupted: the server stopped, its files removed, nothing written")
			os.Exit(130)
		}
		log.Fatal(err)
	}
}

// errInterrupted: a SIGINT or SIGTERM ended the run early (see run).
var errInterrupted = errors.New("interrupted")

func (c config) check() error {
	switch {
	case c.duration <= 0:
		return fmt.Errorf("-duration must be above 0, got %v", c.duration)
	case c.every <= 0 || c.every > c.duration:
		return fmt.Errorf("-every must be above 0 and at most -duration (%v), got %v", c.duration, c.every)
	case c.sessions < 1:
		return fmt.Errorf("-sessions must be at least 1, got %d", c.sessions)
	case c.followers < 0:
		return fmt.Errorf("-followers must not be negative, got %d", c.followers)
	case c.batch < 1:
		return fmt.Errorf("-batch must be at least 1, got %d", c.batch)
	case c.holdMin < 0 || c.holdMax < c.holdMin:
		return fmt.Errorf("-hold-min (%v) must be at least 0 and at most -hold-max (%v)", c.holdMin, c.holdMax)
	}
	if _, err := os.Stat(filepath.Join(c.bin, "rein-server")); err != nil {
		return fmt.Errorf("-bin: rein-server not found in %s: run make build first", c.bin)
	}
	return nil
}

// sample is one reporting window.
type sample struct {
	At           float64 `json:"atSeconds"`
	RSSMiB       float64 `json:"rssMiB"`
	DBMiB        float64 `json:"dbMiB"`  // the db and -wal files together
	WALMiB       float64 `json:"walMiB"` // the -wal file alone: it grows while readers keep it from being reset
	EventsPerSec float64 `json:"eventsPerSec"`
	Replays      int64   `json:"replays"`
	ReplayMeanMs float64 `json:"replayMeanMs"`
	FollowErrors int64   `json:"followErrors"`
}

// section is bench.json's "soak" key.
type section struct {
	Date      string           `json:"date"`
	Machine   loadgen.Machine  `json:"machine"`
	LoadStart loadgen.LoadAvg  `json:"loadStart"`
	LoadEnd   loadgen.LoadAvg  `json:"loadEnd"`
	Load      map[string]any   `json:"load"`
	Samples   []sample         `json:"samples"`
	Figures   []loadgen.Figure `json:"figures"`
}

// soak is one run: the server, the load's counters, and the first fatal
// error (a poster's: the load must not quietly shrink).
type soak struct {
	cfg    config
	srv    *e2e.Server
	client *http.Client

	events      atomic.Int64 // events accepted (2xx)
	replays     atomic.Int64 // full replays that reached snapshot_complete
	replayNanos atomic.Int64 // their total time from request to snapshot_complete
	followErrs  atomic.Int64 // follower connections that failed before their replay completed

	errMu         sync.Mutex
	err           error
	lastFollowErr string // the latest follower failure, shown at the end
}

func run(cfg config) (err error) {
	// An interrupt (Ctrl-C on make soak, a SIGTERM) ends the run early
	// and cleanly: the server runs in a process group of its own, out of
	// the terminal's reach, and by then its database in tmp holds hundreds
	// of MB; both went on living when the signal killed rein-soak outright.
	ictx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	written := false
	defer func() {
		if ictx.Err() != nil && !written {
			err = errInterrupted
		}
	}()
	tmp, err := os.MkdirTemp("", "rein-soak-")
	if err != nil {
		return fmt.Errorf("soak: temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	quiet := func(string, ...any) {} // the server logs only errors; they would break the lines
	srv, err := e2e.StartServer(ictx, quiet, e2e.ServerConfig{
		Bin: filepath.Join(cfg.bin, "rein-server"), Dir: tmp, Args: []string{"--log-level", "error"},
	})
	if err != nil {
		return fmt.Errorf("soak: start rein-server: %w", err)
	}
	defer srv.Stop(10 * time.Second)
	s := &soak{cfg: cfg, srv: srv, client: loadgen.NewHTTPClient(cfg.sessions + cfg.followers)}
	cl, err := client.New(srv.URL, "")
	if err != nil {
		return err
	}
	cl.HTTP = s.client
	for i := range cfg.sessions {
		if _, err := cl.CreateSession(ictx, sessionID(i), ""); err != nil {
			return fmt.Errorf("soak: create session %s: %w", sessionID(i), err)
		}
	}
	sec := section{Date: time.Now().UTC().Format(time.RFC3339), Machine: loadgen.ThisMachine(), Load: map[string]any{
		"duration": cfg.duration.String(), "every": cfg.every.String(), "sessions": cfg.sessions, "posters": cfg.sessions,
		"followers": cfg.followers, "batch": cfg.batch, "holdMin": cfg.holdMin.String(), "holdMax": cfg.holdMax.String(),
		"turnEvents": turn.Len(), "toolOutputBytes": turn.OutputDeltas * turn.OutputLine,
	}}
	if sec.LoadStart, err = loadgen.ReadLoadAvg(); err != nil {
		return err
	}
	fmt.Printf("rein-soak on %s, load average %s\n", sec.Machine, sec.LoadStart)
	fmt.Printf("%d sessions with a poster each (%d events per POST, turns of %d events with %d B of tool output), %d followers reconnecting every %v-%v without Last-Event-ID, for %v\n\n",
		cfg.sessions, cfg.batch, turn.Len(), turn.OutputDeltas*turn.OutputLine, cfg.followers, cfg.holdMin, cfg.holdMax, cfg.duration)
	fmt.Printf("%8s %9s %9s %9s %10s %8s %11s %9s\n", "t", "RSS MiB", "DB MiB", "of it WAL", "events/s", "replays", "replay ms", "f-errors")

	ctx, cancel := context.WithCancel(ictx)
	var wg sync.WaitGroup
	for i := range cfg.sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.post(ctx, sessionID(i)); err != nil {
				s.fail(err)
				cancel()
			}
		}()
	}
	for j := range cfg.followers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.follow(ctx, sessionID(j%cfg.sessions))
		}()
	}
	sec.Samples, err = s.sample(ctx)
	cancel()
	wg.Wait()
	if ictx.Err() != nil {
		return errInterrupted
	}
	if err == nil {
		err = s.firstErr()
	}
	if err != nil {
		return err
	}
	if sec.LoadEnd, err = loadgen.ReadLoadAvg(); err != nil {
		return err
	}
	peak := float64(loadgen.MemKiB(srv.Pid(), "VmHWM")) / 1024
	sec.Figures = figures(sec.Samples, peak, cfg.every)
	fmt.Printf("\nload average %s at end\n", sec.LoadEnd)
	if s.lastFollowErr != "" {
		fmt.Printf("%d follower connections failed; the last: %s\n", s.followErrs.Load(), s.lastFollowErr)
	}
	for _, f := range sec.Figures {
		met := "yes"
		if !f.Met {
			met = "NO"
		}
		fmt.Printf("%-18s %10.2f %-10s met: %-3s  %s\n", f.Name, f.Value, f.Unit, met, f.Note)
	}
	if err := loadgen.MergeJSON(cfg.out, map[string]any{"soak": sec}); err != nil {
		return err
	}
	written = true
	return nil
}

func sessionID(i int) string { return fmt.Sprintf("soak%d", i) }

// figures are the run's results against the soak's targets (README,
// Benchmarks, Soak).
func figures(samples []sample, peakMiB float64, every time.Duration) []loadgen.Figure {
	first, last := samples[0], samples[len(samples)-1]
	rss := loadgen.Figure{Name: "soak_rss_end", Unit: "MiB", Value: last.RSSMiB, Target: 256,
		Note: fmt.Sprintf("server RSS at the end (peak %.0f MiB); met only while the database is past 200 MiB", peakMiB)}
	rss.Judge()
	rss.Met = rss.Met && last.DBMiB > 200
	db := loadgen.Figure{Name: "soak_db_end", Unit: "MiB", Value: last.DBMiB, Target: 200, Higher: true,
		Note: "database + WAL at the end: the RSS target counts only past 200 MiB"}
	in1 := loadgen.Figure{Name: "soak_ingest_first", Unit: "events/s", Value: first.EventsPerSec, Higher: true,
		Note: fmt.Sprintf("accepted events/s in the first %v", every)}
	in2 := loadgen.Figure{Name: "soak_ingest_last", Unit: "events/s", Value: last.EventsPerSec, Higher: true,
		Note: fmt.Sprintf("accepted events/s in the last window (%v or what was left of -duration)", every)}
	ratio := loadgen.Figure{Name: "soak_ingest_ratio", Unit: "last/first", Target: 0.5, Higher: true,
		Note: "ingest in the last window over the first, with the followers replaying"}
	if first.EventsPerSec > 0 {
		ratio.Value = last.EventsPerSec / first.EventsPerSec
	}
	figs := []loadgen.Figure{rss, db, in1, in2, ratio}
	for i := range figs[1:] {
		figs[i+1].Judge()
	}
	return figs
}

// sample prints and keeps a line every window until -duration has passed,
// or returns early with an error if the server exits.
func (s *soak) sample(ctx context.Context) ([]sample, error) {
	start := time.Now()
	end := start.Add(s.cfg.duration)
	var out []sample
	prev, prevEvents, prevReplays, prevNanos, prevErrs := start, int64(0), int64(0), int64(0), int64(0)
	for next := start.Add(s.cfg.every); ; next = next.Add(s.cfg.every) {
		if next.After(end) {
			next = end
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-t.C:
		case <-s.srv.Done():
			t.Stop()
			out := s.srv.Output()
			return nil, fmt.Errorf("soak: rein-server exited after %v; its last lines: %q", time.Since(start).Round(time.Second), out[max(0, len(out)-20):])
		case <-ctx.Done():
			t.Stop()
			return out, s.firstErr()
		}
		now := time.Now()
		events, replays, nanos, errs := s.events.Load(), s.replays.Load(), s.replayNanos.Load(), s.followErrs.Load()
		size, err := loadgen.FilesSize(s.srv.DB, s.srv.DB+"-wal")
		if err != nil {
			return out, err
		}
		wal, err := loadgen.FilesSize(s.srv.DB + "-wal")
		if err != nil {
			return out, err
		}
		smp := sample{
			At:           now.Sub(start).Seconds(),
			RSSMiB:       float64(loadgen.MemKiB(s.srv.Pid(), "VmRSS")) / 1024,
			DBMiB:        float64(size) / (1 << 20),
			WALMiB:       float64(wal) / (1 << 20),
			EventsPerSec: float64(events-prevEvents) / now.Sub(prev).Seconds(),
			Replays:      replays - prevReplays,
			FollowErrors: errs - prevErrs,
		}
		if smp.Replays > 0 {
			smp.ReplayMeanMs = float64(nanos-prevNanos) / float64(smp.Replays) / 1e6
		}
		out = append(out, smp)
		fmt.Printf("%7.0fs %9.1f %9.1f %9.1f %10.0f %8d %11.1f %9d\n", smp.At, smp.RSSMiB, smp.DBMiB, smp.WALMiB, smp.EventsPerSec, smp.Replays, smp.ReplayMeanMs, smp.FollowErrors)
		if !next.Before(end) {
			return out, nil
		}
		prev, prevEvents, prevReplays, prevNanos, prevErrs = now, events, replays, nanos, errs
	}
}

// post sends the session's turns, batch events per POST, as fast as the
// server answers, until ctx ends. Any failure is fatal to the run.
func (s *soak) post(ctx context.Context, id string) error {
	url := s.srv.URL + "/sessions/" + id + "/events"
	var pending []string
	n := 0
	for ctx.Err() == nil {
		for len(pending) < s.cfg.batch {
			n++
			pending = append(pending, turn.Events(n)...)
		}
		if err := loadgen.Post(ctx, s.client, url, loadgen.Batch(pending[:s.cfg.batch])); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("soak: poster of %s: %w", id, err)
		}
		pending = pending[s.cfg.batch:]
		s.events.Add(int64(s.cfg.batch))
	}
	return nil
}

// follow connects to the session's stream again and again until ctx ends.
// A failed connection is counted (and shown) but not fatal: a server that
// drops slow readers is part of what the soak observes.
func (s *soak) follow(ctx context.Context, id string) {
	url := s.srv.URL + "/sessions/" + id + "/stream"
	for ctx.Err() == nil {
		hold := s.cfg.holdMin
		if s.cfg.holdMax > s.cfg.holdMin {
			hold += rand.N(s.cfg.holdMax - s.cfg.holdMin)
		}
		if err := s.followOnce(ctx, url, hold); err != nil && ctx.Err() == nil {
			s.followErrs.Add(1)
			s.errMu.Lock()
			s.lastFollowErr = err.Error()
			s.errMu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

var snapshotComplete = []byte("event: snapshot_complete")

// followOnce opens the stream without Last-Event-ID, reads the full replay
// to snapshot_complete, stays on the live stream until hold has passed
// since connecting, and closes. It reads lines without parsing them: the
// load generator shares the machine's cores with the server, so it should
// spend as little of them as it can.
func (s *soak) followOnce(ctx context.Context, url string, hold time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("follow %s: %w", url, err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("follow %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("follow %s: HTTP %d", url, resp.StatusCode)
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	replayed, atLineStart := false, true
	for {
		line, err := br.ReadSlice('\n')
		if atLineStart && !replayed && bytes.HasPrefix(line, snapshotComplete) {
			replayed = true
			took := time.Since(start)
			s.replays.Add(1)
			s.replayNanos.Add(int64(took))
			if took >= hold {
				return nil
			}
			t := time.AfterFunc(hold-took, cancel)
			defer t.Stop()
		}
		switch {
		case err == nil:
			atLineStart = true
		case errors.Is(err, bufio.ErrBufferFull):
			atLineStart = false // the rest of a long line follows
		case replayed:
			return nil // closed at hold, or the live stream ended
		default:
			return fmt.Errorf("follow %s: replay cut after %v: %w", url, time.Since(start).Round(time.Millisecond), err)
		}
	}
}

func (s *soak) fail(err error) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func (s *soak) firstErr() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}
