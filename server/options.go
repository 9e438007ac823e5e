package server

import (
	"log/slog"
	"runtime"
	"time"
)

// Options configure a Server. Store is required; the zero value of every
// other field selects the default below.
type Options struct {
	// Store holds the sessions, events, artifacts and commands. The
	// Server does not close it; the caller does, after Close.
	Store Store
	// BootstrapTimeout is how long a session may stay bootstrapping (no
	// sandbox ever connected) before it is removed (default 3m).
	BootstrapTimeout time.Duration
	// HeartbeatTimeout is how long a live or idle session may go without
	// a heartbeat or event before it becomes disconnected (default 45s).
	HeartbeatTimeout time.Duration
	// Logger receives the server's logs (default: discarded).
	Logger *slog.Logger
	// Now is the clock used for createdAt, receivedAt, heartbeats and the
	// lifecycle timeouts (default time.Now). Tests inject one.
	Now func() time.Time
	// MaxArtifactsPerSession caps a session's artifacts; events that could
	// take it past the cap are refused with too_large (default
	// DefaultMaxArtifactsPerSession), but for those that keep the
	// transcript true, up to a reserve past it (see checkCaps).
	MaxArtifactsPerSession int
	// MaxSessionBytes caps a session's stored event log in bytes; events
	// that would take it past the cap are refused with too_large (default
	// DefaultMaxSessionBytes), but for those that keep the transcript
	// true, up to a reserve past it (see checkCaps).
	MaxSessionBytes int64
	// AuthMode is how clients authenticate, "token" or "none" (the
	// default): approval decisions are recorded under it. The domain does
	// not check credentials; the HTTP adapter does.
	AuthMode string
	// StateCacheBytes bounds the estimated size of the reducer states kept
	// in memory: beyond it the least recently used are dropped and folded
	// again from the event log on their next use (default
	// DefaultStateCacheBytes).
	StateCacheBytes int64
	// ActiveState is how long after its last use a reducer state counts
	// as active: the byte budget does not evict an active state, since
	// folding it again on each request of a busy session would cost more
	// than its memory (default DefaultActiveState; negative: none).
	ActiveState time.Duration
	// ReplayPage is how many artifacts a stream's replay or GET
	// /artifacts reads per read transaction, writing each page before it
	// reads the next (default DefaultReplayPage). ReplayPageBytes bounds
	// a page's memory, so the count only sets how many reads a replay of
	// small artifacts takes: 512 replayed 100,000 events' artifacts in
	// about 30% less time than 128, each page's sizes read first.
	ReplayPage int
	// ReplayPageBytes bounds the same pages by the size of their
	// artifacts' bodies: a page stops before the artifact that would take
	// it past this many bytes, but holds one at least (default
	// DefaultReplayPageBytes). A count alone let a session of large
	// artifacts (tool output of megabytes each) put ReplayPage of them in
	// memory at once for each follower replaying it.
	ReplayPageBytes int
	// ReplaySlots is how many replay pages may be read and written at
	// once, over all streams (default: half the CPUs, at least one).
	// Replays wait their turn a page at a time, so a crowd of followers
	// replaying long sessions shares a bounded part of the machine and
	// ingest keeps the rest.
	ReplaySlots int
	// Observer, when set, is told what the writer does, for metrics
	// (package app gives it the Prometheus adapter).
	Observer Observer
}

// Defaults.
const (
	DefaultBootstrapTimeout = 3 * time.Minute
	DefaultHeartbeatTimeout = 45 * time.Second

	DefaultMaxArtifactsPerSession = 100_000
	DefaultMaxSessionBytes        = 1 << 30
	DefaultStateCacheBytes        = 64 << 20
	DefaultReplayPage             = 512
	DefaultReplayPageBytes        = 1 << 20
	DefaultActiveState            = 5 * time.Second
)

func (o Options) withDefaults() Options {
	if o.BootstrapTimeout <= 0 {
		o.BootstrapTimeout = DefaultBootstrapTimeout
	}
	if o.HeartbeatTimeout <= 0 {
		o.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxArtifactsPerSession <= 0 {
		o.MaxArtifactsPerSession = DefaultMaxArtifactsPerSession
	}
	if o.MaxSessionBytes <= 0 {
		o.MaxSessionBytes = DefaultMaxSessionBytes
	}
	if o.ActiveState == 0 {
		o.ActiveState = DefaultActiveState
	}
	if o.ReplaySlots <= 0 {
		o.ReplaySlots = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if o.ReplayPage <= 0 {
		o.ReplayPage = DefaultReplayPage
	}
	if o.ReplayPageBytes <= 0 {
		o.ReplayPageBytes = DefaultReplayPageBytes
	}
	if o.StateCacheBytes <= 0 {
		o.StateCacheBytes = DefaultStateCacheBytes
	}
	return o
}
