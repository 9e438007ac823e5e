package metrics

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Metrics holds agentd's series. The zero value is not usable; call New.
type Metrics struct {
	g          Gauges
	connects   atomic.Int64
	reconnects atomic.Int64
	connected  atomic.Bool
	postOK     histogram
	postFailed histogram
}

// Gauges are read at scrape time from the parts that own the numbers.
type Gauges struct {
	// Queue is how many events wait to be posted (with an outbox, how many
	// the server has not acknowledged).
	Queue func() int
	// OutboxBytes is the size of the outbox on disk (outbox.Log.Bytes);
	// nil without an outbox (the series is then absent).
	OutboxBytes func() int64
	// OutboxBlocked reports that the outbox waits for a write only others
	// can let through: disk space, or a disk that takes writes again
	// (outbox.Log.Waiting); nil without an outbox.
	OutboxBlocked func() bool
	// Accepted and Duplicates are the events the server accepted as new
	// (those it stored, and heartbeats, which it counts but does not
	// store) and the ones it already had.
	Accepted, Duplicates func() int
	// Dropped are the events the server refused one by one (never
	// stored); Cut the ones agentd cut to fit the protocol's size limits
	// (stored, marked cut).
	Dropped, Cut func() int
	// Refused are the POSTs the server refused for the request itself (a
	// header agentd sent), not its events: retried, nothing dropped.
	Refused func() int
}

// postBuckets are the upper bounds of rein_agentd_post_duration_seconds.
var postBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// New makes agentd's series, reading g at each scrape.
func New(g Gauges) *Metrics {
	return &Metrics{g: g, postOK: newHistogram(postBuckets), postFailed: newHistogram(postBuckets)}
}

// Connected counts a command stream connection.
func (m *Metrics) Connected() {
	m.connects.Add(1)
	if m.connected.Swap(true) {
		m.reconnects.Add(1)
	}
}

// Posted records one POST attempt.
func (m *Metrics) Posted(d time.Duration, err error) {
	if err != nil {
		m.postFailed.observe(d.Seconds())
		return
	}
	m.postOK.observe(d.Seconds())
}

// Handler serves the series in the Prometheus text exposition format.
func (m *Metrics) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		bw := bufio.NewWriter(w)
		m.write(bw)
		_ = bw.Flush()
	})
}

// write prints every series: agentd's, then the Go runtime's and the
// process's, with the names client_golang's collectors give them so that
// dashboards built for those keep working.
func (m *Metrics) write(w *bufio.Writer) {
	e := expo{w: w}
	e.single("rein_agentd_queue_depth", "gauge", "Events waiting to be posted (with an outbox: not yet acknowledged by the server).", float64(m.g.Queue()))
	if m.g.OutboxBytes != nil {
		e.single("rein_agentd_outbox_bytes", "gauge", "Bytes of the outbox on disk (unacknowledged events plus acknowledged ones not yet compacted); at --outbox-max-bytes the agent's output waits.", float64(m.g.OutboxBytes()))
	}
	if m.g.OutboxBlocked != nil {
		blocked := 0.0
		if m.g.OutboxBlocked() {
			blocked = 1
		}
		e.single("rein_agentd_outbox_blocked", "gauge", "1 while the state dir's disk is full (or refuses writes) and the agent's output waits for room (or for the disk) that only others can give; 0 otherwise.", blocked)
	}
	e.single("rein_agentd_events_accepted_total", "counter", "Events the server accepted as new: stored, or heartbeats (counted, not stored).", float64(m.g.Accepted()))
	e.single("rein_agentd_events_duplicates_total", "counter", "Events the server already had (a retry whose first answer was lost).", float64(m.g.Duplicates()))
	e.single("rein_agentd_events_dropped_total", "counter", "Events the server refused on their own (invalid or too large) and agentd dropped: missing from the transcript.", float64(m.g.Dropped()))
	e.single("rein_agentd_requests_refused_total", "counter", "POSTs of events rein-server refused for the request itself (a header agentd sent), not its events: none is dropped, they are sent again; a climb means agentd's state or something rewriting its headers needs fixing.", float64(m.g.Refused()))
	e.single("rein_agentd_events_cut_total", "counter", "Events whose texts agentd cut to fit the protocol's size limits; each cut text says so.", float64(m.g.Cut()))
	e.single("rein_agentd_stream_connects_total", "counter", "Command stream connections opened (200 from the server).", float64(m.connects.Load()))
	e.single("rein_agentd_stream_reconnects_total", "counter", "Command stream connections opened after the first: each one follows a lost connection.", float64(m.reconnects.Load()))
	const post = "rein_agentd_post_duration_seconds"
	e.head(post, "histogram", "Time of one POST of an event batch, by outcome (ok, error: retried or refused).")
	m.postFailed.write(&e, post, `outcome="error"`)
	m.postOK.write(&e, post, `outcome="ok"`)
	writeRuntime(&e)
	writeProcess(&e)
}

// histogram is a Prometheus histogram: counts per bucket (not yet
// cumulative), their sum and count.
type histogram struct {
	mu     sync.Mutex
	bounds []float64
	counts []uint64 // len(bounds)+1: the last is above every bound
	sum    float64
	count  uint64
}

func newHistogram(bounds []float64) histogram {
	return histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := len(h.bounds)
	for j, b := range h.bounds {
		if v <= b {
			i = j
			break
		}
	}
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.count++
	h.mu.Unlock()
}

// write prints the histogram's samples, labels (`k="v"`) on each.
func (h *histogram) write(e *expo, name, labels string) {
	h.mu.Lock()
	counts := append([]uint64(nil), h.counts...)
	sum, count := h.sum, h.count
	h.mu.Unlock()
	var cum uint64
	for i, b := range h.bounds {
		cum += counts[i]
		e.sample(name+"_bucket", labels+`,le="`+formatFloat(b)+`"`, float64(cum))
	}
	e.sample(name+"_bucket", labels+`,le="+Inf"`, float64(count))
	e.sample(name+"_sum", labels, sum)
	e.sample(name+"_count", labels, float64(count))
}

// writeRuntime prints the Go runtime's figures. ReadMemStats stops the
// world for a moment, once per scrape, as client_golang's Go collector
// does.
func writeRuntime(e *expo) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	threads, _ := runtime.ThreadCreateProfile(nil)
	e.head("go_info", "gauge", "The Go version agentd was built with, as a label.")
	e.sample("go_info", `version="`+escapeLabel(runtime.Version())+`"`, 1)
	e.single("go_goroutines", "gauge", "Goroutines that exist now.", float64(runtime.NumGoroutine()))
	e.single("go_threads", "gauge", "OS threads the Go runtime has created.", float64(threads))
	e.head("go_gc_duration_seconds", "summary", "Stop-the-world pauses of garbage collection: their total time and how many cycles ran.")
	e.sample("go_gc_duration_seconds_sum", "", float64(ms.PauseTotalNs)/1e9)
	e.sample("go_gc_duration_seconds_count", "", float64(ms.NumGC))
	for _, s := range []struct {
		name, typ, help string
		v               uint64
	}{
		{"go_memstats_alloc_bytes", "gauge", "Heap bytes allocated and not yet freed.", ms.Alloc},
		{"go_memstats_alloc_bytes_total", "counter", "Heap bytes allocated since the start, freed or not.", ms.TotalAlloc},
		{"go_memstats_sys_bytes", "gauge", "Bytes the Go runtime holds from the OS, for every use.", ms.Sys},
		{"go_memstats_mallocs_total", "counter", "Heap objects allocated since the start.", ms.Mallocs},
		{"go_memstats_frees_total", "counter", "Heap objects freed since the start.", ms.Frees},
		{"go_memstats_heap_alloc_bytes", "gauge", "Heap bytes in live or not yet swept objects.", ms.HeapAlloc},
		{"go_memstats_heap_sys_bytes", "gauge", "Heap bytes the runtime holds from the OS.", ms.HeapSys},
		{"go_memstats_heap_idle_bytes", "gauge", "Heap bytes in spans that hold no object.", ms.HeapIdle},
		{"go_memstats_heap_inuse_bytes", "gauge", "Heap bytes in spans that hold at least one object.", ms.HeapInuse},
		{"go_memstats_heap_released_bytes", "gauge", "Heap bytes given back to the OS.", ms.HeapReleased},
		{"go_memstats_heap_objects", "gauge", "Heap objects allocated and not yet freed.", ms.HeapObjects},
		{"go_memstats_stack_inuse_bytes", "gauge", "Bytes in goroutine stacks.", ms.StackInuse},
		{"go_memstats_next_gc_bytes", "gauge", "Heap size at which the next garbage collection starts.", ms.NextGC},
	} {
		e.single(s.name, s.typ, s.help, float64(s.v))
	}
	e.single("go_memstats_last_gc_time_seconds", "gauge", "When the last garbage collection ended, in seconds since the Unix epoch (0 before the first).", float64(ms.LastGC)/1e9)
}

// start is when this process started, for process_start_time_seconds:
// package initialisation is as close to the process's start as agentd
// can read without parsing boot time and clock ticks from /proc.
var start = time.Now()

// writeProcess prints the process's figures from /proc (Linux, where
// agentd runs in its container); elsewhere, or if /proc cannot be read,
// only the start time.
func writeProcess(e *expo) {
	e.single("process_start_time_seconds", "gauge", "When agentd started, in seconds since the Unix epoch.", float64(start.UnixNano())/1e9)
	cpu, vsize, rss, err := procStat()
	if err != nil {
		return
	}
	e.single("process_cpu_seconds_total", "counter", "CPU time agentd has used, user and system, in seconds.", cpu)
	e.single("process_virtual_memory_bytes", "gauge", "Virtual memory of the process, in bytes.", vsize)
	e.single("process_resident_memory_bytes", "gauge", "Resident memory of the process, in bytes.", rss)
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		e.single("process_open_fds", "gauge", "File descriptors open now.", float64(len(fds)))
	}
	if max, err := maxFDs(); err == nil {
		e.single("process_max_fds", "gauge", "The soft limit on open file descriptors.", max)
	}
}

// procStat reads CPU seconds, virtual and resident bytes from
// /proc/self/stat. Clock ticks are 100 a second on every Linux that Go
// supports (USER_HZ; the kernel converts for /proc).
func procStat() (cpu, vsize, rss float64, err error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, 0, 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after its closing parenthesis, which is field 2.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, 0, errors.New("/proc/self/stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime 14, stime 15, vsize 23, rss 24.
	if len(f) < 22 {
		return 0, 0, 0, fmt.Errorf("/proc/self/stat: %d fields", len(f)+2)
	}
	var n [4]float64
	for k, idx := range []int{14, 15, 23, 24} {
		if n[k], err = strconv.ParseFloat(f[idx-3], 64); err != nil {
			return 0, 0, 0, fmt.Errorf("/proc/self/stat field %d: %w", idx, err)
		}
	}
	const ticks = 100
	return (n[0] + n[1]) / ticks, n[2], n[3] * float64(os.Getpagesize()), nil
}

// maxFDs reads the soft limit on open files from /proc/self/limits.
func maxFDs() (float64, error) {
	b, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			if f[0] == "unlimited" {
				return math.Inf(1), nil
			}
			return strconv.ParseFloat(f[0], 64)
		}
	}
	return 0, errors.New("/proc/self/limits: no Max open files")
}

// expo writes the text exposition format: a HELP and TYPE line per
// metric, then its samples.
type expo struct{ w *bufio.Writer }

func (e *expo) head(name, typ, help string) {
	e.w.WriteString("# HELP " + name + " " + escapeHelp(help) + "\n# TYPE " + name + " " + typ + "\n")
}

func (e *expo) sample(name, labels string, v float64) {
	e.w.WriteString(name)
	if labels != "" {
		e.w.WriteString("{" + labels + "}")
	}
	e.w.WriteString(" " + formatFloat(v) + "\n")
}

// single writes a metric of one unlabelled sample.
func (e *expo) single(name, typ, help string, v float64) {
	e.head(name, typ, help)
	e.sample(name, "", v)
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// helpEscaper and labelEscaper escape what the format requires in HELP
// text and in a label value; built once, not on every line of a scrape.
var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }

// Listener serves GET /metrics on its own address.
type Listener struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

// Listen serves m at http://addr/metrics until Close.
func Listen(addr string, m *Metrics, log *slog.Logger) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	l := &Listener{addr: ln.Addr().String(), done: make(chan struct{}),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}}
	go func() {
		defer close(l.done)
		if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve metrics", "err", err)
		}
	}()
	log.Info("serving metrics", "url", "http://"+l.addr+"/metrics")
	return l, nil
}

// Addr is the address listened on.
func (l *Listener) Addr() string { return l.addr }

// Close stops serving and waits for the serving goroutine.
func (l *Listener) Close() {
	_ = l.srv.Close()
	<-l.done
}
