package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds agentd's collectors. The zero value is not usable; call
// New.
type Metrics struct {
	reg        *prometheus.Registry
	connects   prometheus.Counter
	reconnects prometheus.Counter
	postOK     prometheus.Observer
	postFailed prometheus.Observer
	connected  atomic.Bool
}

// Gauges are read at scrape time from the parts that own the numbers.
type Gauges struct {
	// Queue is how many events wait to be posted (with an outbox, how many
	// the server has not acknowledged).
	Queue func() int
	// OutboxBytes is the size of the outbox on disk (outbox.Log.Bytes);
	// nil without an outbox (the series is then absent).
	OutboxBytes func() int64
	// Accepted and Duplicates are the events the server stored and the
	// ones it already had.
	Accepted, Duplicates func() int
}

// New registers agentd's collectors, the Go runtime's and the process's.
func New(g Gauges) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rein_agentd_queue_depth",
		Help: "Events waiting to be posted (with an outbox: not yet acknowledged by the server).",
	}, func() float64 { return float64(g.Queue()) }))
	if g.OutboxBytes != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rein_agentd_outbox_bytes",
			Help: "Bytes of the outbox on disk (unacknowledged events plus acknowledged ones not yet compacted); at --outbox-max-bytes the agent's output waits.",
		}, func() float64 { return float64(g.OutboxBytes()) }))
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "rein_agentd_events_accepted_total",
		Help: "Events the server stored.",
	}, func() float64 { return float64(g.Accepted()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "rein_agentd_events_duplicates_total",
		Help: "Events the server already had (a retry whose first answer was lost).",
	}, func() float64 { return float64(g.Duplicates()) }))
	m.connects = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "rein_agentd_stream_connects_total",
		Help: "Command stream connections opened (200 from the server).",
	})
	m.reconnects = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "rein_agentd_stream_reconnects_total",
		Help: "Command stream connections opened after the first: each one follows a lost connection.",
	})
	post := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rein_agentd_post_duration_seconds",
		Help:    "Time of one POST of an event batch, by outcome (ok, error: retried or refused).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"outcome"})
	reg.MustRegister(m.connects, m.reconnects, post)
	m.postOK = post.WithLabelValues("ok")
	m.postFailed = post.WithLabelValues("error")
	return m
}

// Connected counts a command stream connection.
func (m *Metrics) Connected() {
	m.connects.Inc()
	if m.connected.Swap(true) {
		m.reconnects.Inc()
	}
}

// Posted records one POST attempt.
func (m *Metrics) Posted(d time.Duration, err error) {
	if err != nil {
		m.postFailed.Observe(d.Seconds())
		return
	}
	m.postOK.Observe(d.Seconds())
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

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
