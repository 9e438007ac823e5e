package server

import (
	"log/slog"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// Observer is told what the writer does, for metrics. The server's is the
// Prometheus adapter (internal/metrics); the domain does not import it.
// Methods are called from the writer goroutine, some once per commit, so
// they must be cheap and must not block.
type Observer interface {
	// EventsIngested: n events were committed to a session's log.
	EventsIngested(n int)
	// Committed: a group commit of requests took d.
	Committed(d time.Duration, requests int)
	// CommitFailed: a group commit failed (its requests got 503).
	CommitFailed()
	// SessionStatus: a session moved between statuses; "" is no session
	// (from "": created or loaded at start; to "": removed).
	SessionStatus(from, to protocol.SessionStatus)
	// SessionCreated and SessionRemoved count sessions made and removed.
	SessionCreated()
	SessionRemoved()
	// SandboxConnected: a sandbox opened the command stream; superseded
	// says it closed another instance's.
	SandboxConnected(superseded bool)
	// SandboxDisconnected: a sandbox's command stream ended.
	SandboxDisconnected()
	// CommandAccepted: a client's command was answered 202; replayed says
	// its Idempotency-Key named a command already stored (a resend after
	// a lost answer), so nothing was stored.
	CommandAccepted(replayed bool)
}

// nopObserver observes nothing.
type nopObserver struct{}

func (nopObserver) EventsIngested(int)                            {}
func (nopObserver) Committed(time.Duration, int)                  {}
func (nopObserver) CommitFailed()                                 {}
func (nopObserver) SessionStatus(from, to protocol.SessionStatus) {}
func (nopObserver) SessionCreated()                               {}
func (nopObserver) SessionRemoved()                               {}
func (nopObserver) SandboxConnected(bool)                         {}
func (nopObserver) SandboxDisconnected()                          {}
func (nopObserver) CommandAccepted(bool)                          {}

// entryStatus is e's status, "" when there is no session.
func entryStatus(e *entry) protocol.SessionStatus {
	if e == nil {
		return ""
	}
	return e.rec.Status
}

// sandboxConnected logs and counts a command stream that opened; old is
// the holder it replaced, if any. A different instance taking over is a
// supersede (the old one's posts are refused from now on); the same
// instance coming back on a new connection only replaces its stale one.
func (w *writer) sandboxConnected(id, instance string, old *holder) {
	superseded := old != nil && old.instance != instance
	switch {
	case superseded:
		w.log.Info("sandbox superseded", slog.String("session", id), slog.String("instance", old.instance), slog.String("by", instance))
	case old != nil:
		w.log.Info("sandbox reconnected, closing its older stream", slog.String("session", id), slog.String("instance", instance))
	}
	w.log.Info("sandbox connected", slog.String("session", id), slog.String("instance", instance))
	w.obs.SandboxConnected(superseded)
}
