package stdinqueue

import (
	"io"
	"sync"
)

// MaxQueued bounds the bytes waiting for the agent to read them. Beyond
// it Write blocks, as a direct write would: an agent that reads nothing
// but keeps asking (and so keeps agentd answering) cannot grow the queue
// without limit. One write of any size is always taken.
const MaxQueued = 16 << 20

// Queue writes to w, in order, what Write and Close hand it.
type Queue struct {
	w       io.WriteCloser
	onError func(error)

	mu      sync.Mutex
	cond    *sync.Cond
	pending [][]byte // nil entry: close w
	queued  int      // bytes in pending
	stopped bool     // Stop was called: take nothing more
	wg      sync.WaitGroup
}

// New starts the goroutine writing to w; onError (which may be nil) gets
// every failed write, from that goroutine. Call Stop when done.
func New(w io.WriteCloser, onError func(error)) *Queue {
	q := &Queue{w: w, onError: onError}
	q.cond = sync.NewCond(&q.mu)
	q.wg.Go(q.run)
	return q
}

// Write queues b (which the Queue then owns) and returns; it blocks only
// while more than MaxQueued bytes wait.
func (q *Queue) Write(b []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.queued >= MaxQueued && !q.stopped {
		q.cond.Wait()
	}
	if q.stopped || b == nil {
		return
	}
	q.pending = append(q.pending, b)
	q.queued += len(b)
	q.cond.Broadcast()
}

// Close closes w once everything queued before it is written.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.stopped {
		q.pending = append(q.pending, nil)
		q.cond.Broadcast()
	}
}

// Stop closes w now (once, however often it is called), which fails a write the agent does not read, drops
// what is still queued and waits for the writing goroutine.
func (q *Queue) Stop() {
	q.mu.Lock()
	was := q.stopped
	q.stopped = true
	q.pending, q.queued = nil, 0
	q.cond.Broadcast()
	q.mu.Unlock()
	if !was {
		q.w.Close()
	}
	q.wg.Wait()
}

func (q *Queue) run() {
	for {
		q.mu.Lock()
		for len(q.pending) == 0 && !q.stopped {
			q.cond.Wait()
		}
		if q.stopped {
			q.mu.Unlock()
			return
		}
		b := q.pending[0]
		q.pending = q.pending[1:]
		q.mu.Unlock()

		if b == nil {
			q.w.Close()
		} else if _, err := q.w.Write(b); err != nil && q.onError != nil {
			q.onError(err)
		}

		q.mu.Lock()
		if !q.stopped {
			q.queued -= len(b)
		}
		q.cond.Broadcast()
		q.mu.Unlock()
	}
}
