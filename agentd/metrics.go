package agentd

import (
	"github.com/rein-ai/rein/agentd/internal/metrics"
	"github.com/rein-ai/rein/agentd/internal/outbox"
	"github.com/rein-ai/rein/agentd/internal/uploader"
)

// newMetrics makes agentd's collectors. up returns the uploader, which is
// made after them (it takes their POST hook); the gauges read it only at
// scrape time, once it exists.
func newMetrics(up func() *uploader.Uploader, ob *outbox.Log) *metrics.Metrics {
	g := metrics.Gauges{
		Queue:      func() int { return up().Len() },
		Accepted:   func() int { return up().Stats().Accepted },
		Duplicates: func() int { return up().Stats().Duplicates },
		Dropped:    func() int { return up().Stats().Dropped },
		Cut:        func() int { return up().Stats().Cut },
		Refused:    func() int { return up().Stats().Refused },
	}
	if ob != nil {
		g.OutboxBytes = ob.Bytes
		g.OutboxBlocked = func() bool { since, _ := ob.Waiting(); return !since.IsZero() }
	}
	return metrics.New(g)
}
