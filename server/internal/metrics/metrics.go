package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rein-ai/rein/protocol"
)

// Stream kinds, the values of the "stream" label.
const (
	StreamArtifacts = "artifacts"
	StreamSessions  = "sessions"
	StreamCommands  = "commands"
	StreamApprovals = "approvals"
)

// Why a slow stream client was dropped, the values of the "reason" label.
const (
	ReasonWriteTimeout = "write_timeout"
	ReasonOverflow     = "overflow"
)

var (
	streamKinds = []string{StreamArtifacts, StreamSessions, StreamCommands, StreamApprovals}
	statuses    = []protocol.SessionStatus{protocol.StatusBootstrapping, protocol.StatusLive, protocol.StatusIdle, protocol.StatusDisconnected}
)

// Metrics holds every collector of one server in its own registry (not
// the global one), so two servers in one process (tests) do not share
// counts. The zero value is not usable; call New.
type Metrics struct {
	reg *prometheus.Registry

	requests *prometheus.CounterVec
	// requestCounters caches requests' children by requestKey.
	requestCounters sync.Map
	events          prometheus.Counter
	commitSeconds   prometheus.Histogram
	groupSize       prometheus.Histogram
	writeFailures   prometheus.Counter
	subscribers     map[string]prometheus.Gauge
	subscribersVec  *prometheus.GaugeVec
	dropped         map[[2]string]prometheus.Counter
	sessions        map[protocol.SessionStatus]prometheus.Gauge
	sessionsVec     *prometheus.GaugeVec
	connects        prometheus.Counter
	supersedes      prometheus.Counter
	disconnects     prometheus.Counter
	sessionCreates  prometheus.Counter
	sessionRemoves  prometheus.Counter
	commandsStored  prometheus.Counter
	commandsResent  prometheus.Counter
}

// New registers the server's collectors, the Go runtime's and the
// process's in a new registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{reg: reg, subscribers: map[string]prometheus.Gauge{}, dropped: map[[2]string]prometheus.Counter{}, sessions: map[protocol.SessionStatus]prometheus.Gauge{}}
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rein_http_requests_total",
		Help: "HTTP requests answered, by route pattern (never the raw path) and status code. Streams count when they end.",
	}, []string{"route", "code"})
	f(m.requests)
	m.events = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "rein_events_ingested_total",
		Help: "Events committed to session logs (heartbeats and duplicates not included).",
	})
	f(m.events)
	m.commitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "rein_commit_duration_seconds",
		Help:    "Time one group commit (one transaction) took.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	f(m.commitSeconds)
	m.groupSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "rein_commit_group_size",
		Help:    "Requests carried by one group commit.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
	})
	f(m.groupSize)
	m.writeFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "rein_write_failures_total",
		Help: "Group commits that failed (a full disk, an unwritable database); their requests got 503.",
	})
	f(m.writeFailures)
	subs := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rein_stream_subscribers",
		Help: "Open SSE streams, by stream kind.",
	}, []string{"stream"})
	f(subs)
	m.subscribersVec = subs
	drop := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rein_stream_clients_dropped_total",
		Help: "Stream clients the server cut for being too slow, by stream kind and reason.",
	}, []string{"stream", "reason"})
	f(drop)
	for _, k := range streamKinds {
		m.subscribers[k] = subs.WithLabelValues(k)
		for _, r := range []string{ReasonWriteTimeout, ReasonOverflow} {
			m.dropped[[2]string{k, r}] = drop.WithLabelValues(k, r)
		}
	}
	m.sessionsVec = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rein_sessions",
		Help: "Sessions, by status.",
	}, []string{"status"})
	f(m.sessionsVec)
	for _, s := range statuses {
		m.sessions[s] = m.sessionsVec.WithLabelValues(string(s))
	}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		f(c)
		return c
	}
	m.connects = counter("rein_sandbox_connects_total", "Sandbox command streams opened.")
	m.supersedes = counter("rein_sandbox_supersedes_total", "Sandbox connections closed because another instance took over the session.")
	m.disconnects = counter("rein_sandbox_disconnects_total", "Sandbox command streams that ended (not counting supersedes).")
	m.sessionCreates = counter("rein_sessions_created_total", "Sessions created.")
	m.sessionRemoves = counter("rein_sessions_removed_total", "Sessions removed (deleted, or never got a sandbox).")
	commands := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rein_commands_total",
		Help: "Client commands answered 202, by result: stored, or replayed (a resend with an Idempotency-Key already stored: its answer had been lost).",
	}, []string{"result"})
	f(commands)
	m.commandsStored, m.commandsResent = commands.WithLabelValues("stored"), commands.WithLabelValues("replayed")
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry returns the registry, for tests that gather directly.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// The domain's observer (server.Observer).

// EventsIngested counts n committed events.
func (m *Metrics) EventsIngested(n int) { m.events.Add(float64(n)) }

// Committed records one successful group commit.
func (m *Metrics) Committed(d time.Duration, requests int) {
	m.commitSeconds.Observe(d.Seconds())
	m.groupSize.Observe(float64(requests))
}

// CommitFailed counts a failed group commit.
func (m *Metrics) CommitFailed() { m.writeFailures.Inc() }

// SessionStatus moves a session between status gauges; "" is no session
// (from "" is a creation or a load, to "" a removal).
func (m *Metrics) SessionStatus(from, to protocol.SessionStatus) {
	if from == to {
		return
	}
	if from != "" {
		m.sessionGauge(from).Dec()
	}
	if to != "" {
		m.sessionGauge(to).Inc()
	}
}

// SessionCreated counts a created session.
func (m *Metrics) SessionCreated() { m.sessionCreates.Inc() }

// SessionRemoved counts a removed session.
func (m *Metrics) SessionRemoved() { m.sessionRemoves.Inc() }

func (m *Metrics) sessionGauge(s protocol.SessionStatus) prometheus.Gauge {
	if g, ok := m.sessions[s]; ok {
		return g
	}
	return m.sessionsVec.WithLabelValues(string(s)) // a status added later
}

// SandboxConnected counts an opened command stream; superseded says it
// closed another instance's.
func (m *Metrics) SandboxConnected(superseded bool) {
	m.connects.Inc()
	if superseded {
		m.supersedes.Inc()
	}
}

// SandboxDisconnected counts a command stream that ended.
func (m *Metrics) SandboxDisconnected() { m.disconnects.Inc() }

// CommandAccepted counts a command answered 202, stored or replayed.
func (m *Metrics) CommandAccepted(replayed bool) {
	if replayed {
		m.commandsResent.Inc()
		return
	}
	m.commandsStored.Inc()
}

// The HTTP adapter's observer (httpapi.Observer).

// Request counts one answered request. route is the mux pattern.
func (m *Metrics) Request(route string, code int) {
	k := requestKey{route, code}
	if c, ok := m.requestCounters.Load(k); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	// Routes and codes are few: the first of each pair pays the label
	// lookup, later ones a map read (the lookup cost ~0.5 µs and an
	// allocation on every request).
	c := m.requests.WithLabelValues(route, strconv.Itoa(code))
	m.requestCounters.Store(k, c)
	c.Inc()
}

type requestKey struct {
	route string
	code  int
}

// StreamOpened and StreamClosed move the subscriber gauge of a stream kind.
func (m *Metrics) StreamOpened(kind string) { m.subscriber(kind).Inc() }

// StreamClosed: see StreamOpened.
func (m *Metrics) StreamClosed(kind string) { m.subscriber(kind).Dec() }

func (m *Metrics) subscriber(kind string) prometheus.Gauge {
	if g, ok := m.subscribers[kind]; ok {
		return g
	}
	return m.subscribersVec.WithLabelValues(kind) // a kind added later
}

// ClientDropped counts a stream client cut for being slow.
func (m *Metrics) ClientDropped(kind, reason string) {
	if c, ok := m.dropped[[2]string{kind, reason}]; ok {
		c.Inc()
	}
}
