package uploader

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/rein-ai/rein/agentd/internal/apierror"
	"github.com/rein-ai/rein/agentd/internal/outbox"
	"github.com/rein-ai/rein/protocol"
)

// Defaults for the zero Options.
const (
	DefaultBatchMax          = 200
	DefaultBatchWait         = 0
	DefaultQueueSize         = 1000
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultRequestTimeout    = 30 * time.Second
	DefaultInitialBackoff    = 250 * time.Millisecond
	DefaultMaxBackoff        = 10 * time.Second
)

// maxBatchBytes keeps a batch body under the server's default body limit,
// with room for the array's brackets and commas.
const maxBatchBytes = protocol.MaxBodyBytes - 4<<10

// ErrClosed is returned by Enqueue after Close.
var ErrClosed = errors.New("uploader closed")

// Codes of the notices that the outbox waits (a warning) and that the
// wait is over (info): for disk space, or for a disk that refuses writes
// (read-only, failing).
const (
	NoticeNoSpace    = "agentd_no_space"
	NoticeUnwritable = "agentd_state_unwritable"
)

// Options configures an Uploader. Server, Session and Instance are required.
type Options struct {
	Server   string
	Session  string
	Token    string // sent as Authorization: Bearer, never logged
	Instance string // Rein-Instance header
	// Client performs the POSTs; nil means http.DefaultClient. Each POST
	// has its own RequestTimeout instead of a client-wide Timeout.
	Client *http.Client
	// BatchMax is the most events per POST (at most protocol.MaxBatchEvents).
	BatchMax int
	// BatchWait is how long a batch stays open for more events after its
	// first one. Zero (the default) sends at once whatever is queued: one
	// POST is in flight at a time, so under load the queue fills while it
	// is and the next batch is large anyway, while a lone event is not
	// delayed at all.
	BatchWait time.Duration
	// QueueSize is how many events may wait; Enqueue blocks beyond it.
	QueueSize int
	// HeartbeatInterval between heartbeat events; negative disables them.
	HeartbeatInterval time.Duration
	RequestTimeout    time.Duration
	InitialBackoff    time.Duration
	MaxBackoff        time.Duration
	// Outbox, when set, holds the queue on disk instead of in memory:
	// Enqueue returns once the event is written to it (and blocks while it
	// is full, not at QueueSize), events carry the agentSeqs the outbox
	// stamped, and what the server acknowledges is acked there. Events a
	// previous agentd left unacknowledged are posted first.
	Outbox *outbox.Log
	Logger *slog.Logger
	// OnPost, when set, is told how long each POST attempt took and how
	// it ended (metrics).
	OnPost func(d time.Duration, err error)
	// Cursor, when set, is asked on every post for agentd's command cursor
	// (the last command such that it and every one before it were taken);
	// when ok it is sent as protocol.HeaderCommandCursor, which is how the
	// server learns that accepted commands were taken.
	Cursor func() (id int64, ok bool)
	// SessionCreated, when set, is asked on every post for the createdAt
	// of the session agentd's events belong to (with an Outbox, the one
	// the outbox was saved for); when ok it is sent as
	// protocol.HeaderSessionCreated, so a server where the session was
	// deleted and created again refuses the post (409 conflict, which ends
	// Run) instead of storing the old session's events in the new one.
	SessionCreated func() (createdAt int64, ok bool)
}

// Uploader is the ordered event pipeline to the server. Use New, then Run
// in one goroutine and Enqueue from any number of others.
type Uploader struct {
	opts  Options
	log   *slog.Logger
	url   string
	queue chan queued

	// mu orders Close after every Enqueue in flight, so nothing slips into
	// the queue after Run's final drain.
	mu     sync.RWMutex
	closed bool
	stop   chan struct{}

	seq    int64         // last agentSeq stamped; only Run touches it
	carry  *encodedEvent // an event that did not fit the previous batch
	stats  sync.Mutex    // guards posted
	posted Stats

	// streamed knows which blocks and tool calls streamed deltas, for
	// fit (Enqueue, any goroutine).
	streamed streams
	// dropped tells the transcript of the events the server refused
	// (only Run touches it).
	dropped dropped
}

// Stats counts what the uploader has done.
type Stats struct {
	Batches    int // POSTs that succeeded
	Accepted   int // events the server accepted as new: stored, or heartbeats (counted, not stored)
	Duplicates int // events the server already had (retries)
	Dropped    int // events the server refused as invalid, one by one
	Cut        int // events whose texts agentd cut to fit the size limits (fit.go)
	// Refused counts POSTs the server refused for the request itself (a
	// header agentd sent: protocol.ScopeRequest), not for its events;
	// each was sent again and dropped nothing.
	Refused int
}

type encodedEvent struct {
	seq  int64
	typ  protocol.EventType // empty for events read back from the outbox
	data []byte
}

// eventType is the event's type, read from data when not known: from
// its start, where Event.MarshalJSON (which encoded every event agentd
// posts) writes it, or else decoded.
func (e encodedEvent) eventType() protocol.EventType {
	if e.typ != "" {
		return e.typ
	}
	if rest, ok := bytes.CutPrefix(e.data, []byte(`{"type":"`)); ok {
		if t, _, ok := bytes.Cut(rest, []byte(`"`)); ok && protocol.KnownEventType(protocol.EventType(t)) {
			return protocol.EventType(t)
		}
	}
	var ev struct {
		Type protocol.EventType `json:"type"`
	}
	_ = json.Unmarshal(e.data, &ev)
	return ev.Type
}

// New returns an Uploader with defaults filled in.
func New(opts Options) *Uploader {
	if opts.Client == nil {
		opts.Client = http.DefaultClient
	}
	if opts.BatchMax <= 0 {
		opts.BatchMax = DefaultBatchMax
	}
	opts.BatchMax = min(opts.BatchMax, protocol.MaxBatchEvents)
	if opts.BatchWait < 0 {
		opts.BatchWait = 0
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.InitialBackoff <= 0 {
		opts.InitialBackoff = DefaultInitialBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Uploader{
		opts:  opts,
		log:   log.With("component", "uploader"),
		url:   opts.Server + "/sessions/" + url.PathEscape(opts.Session) + "/events",
		queue: make(chan queued, opts.QueueSize),
		stop:  make(chan struct{}),
	}
}

// queued is an event in the in-memory queue, with its EnqueueStamped
// callback (nil for none).
type queued struct {
	ev      protocol.Event
	stamped func(seq int64)
}

// Enqueue adds ev to the queue, stamping ts now. It blocks while the queue
// is full (backpressure on whoever produces events) until there is room,
// ctx is done, or the uploader is closed.
func (u *Uploader) Enqueue(ctx context.Context, ev protocol.Event) error {
	return u.EnqueueStamped(ctx, ev, nil)
}

// EnqueueStamped is Enqueue that also calls stamped, when not nil, with
// the agentSeq ev is given, before ev can be posted: from Run's goroutine,
// or with an outbox from this call, under the outbox's lock. stamped must
// be quick and must not call the uploader.
func (u *Uploader) EnqueueStamped(ctx context.Context, ev protocol.Event, stamped func(seq int64)) error {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if u.closed {
		return ErrClosed
	}
	ev.AgentSeq = 0 // Run (or the outbox) stamps it, in queue order
	ev.Ts = time.Now().UnixMilli()
	ev, cuts := fit(ev, u.streamed.ended(ev))
	if cuts != nil {
		u.log.Warn("event cut to fit the protocol's size limits", "type", ev.Type, "id", ev.ID, "cut", cuts)
		u.stats.Lock()
		u.posted.Cut++
		u.stats.Unlock()
	}
	if u.opts.Outbox != nil {
		if err := u.opts.Outbox.AppendStamped(ctx, ev, stamped); err != nil {
			return fmt.Errorf("enqueue %s: %w", ev.Type, err)
		}
		return nil
	}
	// Room first: a done ctx ends only a wait for room (as with the
	// outbox), so an event that fits is queued whatever ctx says.
	q := queued{ev: ev, stamped: stamped}
	select {
	case u.queue <- q:
		return nil
	default:
	}
	select {
	case u.queue <- q:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("enqueue %s: the queue is full (%d events): %w", ev.Type, cap(u.queue), ctx.Err())
	}
}

// StopWaiting has Enqueue give up on an event the outbox's disk refuses
// (full, read-only) instead of waiting for it: for a shutdown (see
// outbox.Log.StopWaiting). Without an outbox it does nothing.
func (u *Uploader) StopWaiting() {
	if u.opts.Outbox != nil {
		u.opts.Outbox.StopWaiting()
	}
}

// Len is how many events are waiting (not counting a batch in flight); with
// an outbox, how many the server has not acknowledged.
func (u *Uploader) Len() int {
	if u.opts.Outbox != nil {
		return int(u.opts.Outbox.Pending())
	}
	return len(u.queue)
}

// Stats returns counters so far.
func (u *Uploader) Stats() Stats {
	u.stats.Lock()
	defer u.stats.Unlock()
	return u.posted
}

// Close stops accepting events. Run then posts everything already queued
// and returns nil. Close waits for Enqueue calls in flight, which finish as
// Run drains the queue.
func (u *Uploader) Close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.closed {
		u.closed = true
		close(u.stop)
	}
}

// Run posts batches until Close has been called and the queue is empty
// (nil), ctx is done (ctx's error; queued events are not posted), or the
// server refuses for good: 401, 403, 404, 409 superseded or 409 conflict
// (the session was deleted and created again), returned as a
// *protocol.Error wrapped with the operation.
func (u *Uploader) Run(ctx context.Context) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = u.opts.InitialBackoff
	bo.MaxInterval = u.opts.MaxBackoff
	bo.MaxElapsedTime = 0 // never give up: events are not dropped
	bo.Reset()

	batchTimer := time.NewTimer(0)
	<-batchTimer.C
	defer batchTimer.Stop()
	var heartbeat <-chan time.Time
	if u.opts.HeartbeatInterval > 0 {
		t := time.NewTicker(u.opts.HeartbeatInterval)
		defer t.Stop()
		heartbeat = t.C
	}
	if u.opts.Outbox != nil {
		return u.runOutbox(ctx, bo, batchTimer, heartbeat)
	}
	for {
		batch, done, err := u.collect(ctx, batchTimer, heartbeat)
		if err != nil {
			return err
		}
		if len(batch) > 0 {
			if err := u.postBatch(ctx, bo, batch); err != nil {
				return err
			}
		}
		if done && len(u.dropped.pending) == 0 {
			return nil
		}
	}
}

// runOutbox is Run with the queue in the outbox: each batch is what the
// outbox has beyond the last batch, and a stored batch is acked there so
// its space can be reused. A second goroutine fsyncs the outbox as it
// grows.
func (u *Uploader) runOutbox(ctx context.Context, bo *backoff.ExponentialBackOff, batchTimer *time.Timer, heartbeat <-chan time.Time) error {
	ob := u.opts.Outbox
	// fsync runs beside posting, never in its way: one fsync covers all
	// that was written while the previous one ran.
	syncCtx, stopSync := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ob.Unsynced():
				if err := ob.Sync(); err != nil {
					u.log.Error("outbox not synced: events are safe from a crash of agentd but not from power loss", "err", err)
				}
			case <-syncCtx.Done():
				return
			}
		}
	}()
	defer wg.Wait()
	defer stopSync()
	stop := u.stop
	closed := false
	var space reportedWait // the outbox's wait last reported (reportWait)
	next := func(n int) ([]outbox.Record, error) {
		recs, err := ob.Next(n, maxBatchBytes)
		if err != nil {
			return nil, fmt.Errorf("upload events: %w", err)
		}
		return recs, nil
	}
	for {
		if err := u.reportWait(ctx, bo, &space); err != nil {
			return err
		}
		recs, err := next(u.opts.BatchMax)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			if closed && ob.Drained() {
				if len(u.dropped.pending) == 0 {
					return nil
				}
				if err := u.queueDropped(); err != nil {
					return err
				}
				if n := len(u.dropped.pending); n > 0 {
					// Drained, yet the outbox takes no notice: its disk
					// refuses them. Stopping goes first.
					u.log.Warn("stopping without telling the transcript of dropped events: the outbox refused the notices", "notices", n)
					return nil
				}
				continue
			}
			select {
			case <-ob.Ready():
			case <-heartbeat:
				// Skipped when the outbox is full: a backlog is being
				// posted, which tells the server the sandbox is alive.
				// When the disk is, there may be no backlog: the
				// heartbeat then goes without the outbox.
				hb := protocol.Event{Type: protocol.EventHeartbeat, Ts: time.Now().UnixMilli()}
				ok, err := ob.TryAppend(hb)
				if err != nil {
					return fmt.Errorf("upload events: heartbeat: %w", err)
				}
				if since, _ := ob.Waiting(); !ok && !since.IsZero() {
					if _, err := u.postUnlogged(ctx, bo, hb); err != nil {
						return err
					}
				}
			case <-stop:
				closed, stop = true, nil
			case <-ctx.Done():
				return fmt.Errorf("upload events: %w", ctx.Err())
			}
			continue
		}
		if u.opts.BatchWait > 0 && len(recs) < u.opts.BatchMax && !closed {
			batchTimer.Reset(u.opts.BatchWait)
			select {
			case <-batchTimer.C:
			case <-stop:
				closed, stop = true, nil
				batchTimer.Stop()
			case <-ctx.Done():
				return fmt.Errorf("upload events: %w", ctx.Err())
			}
			more, err := next(u.opts.BatchMax - len(recs))
			if err != nil {
				return err
			}
			recs = append(recs, more...)
		}
		batch := make([]encodedEvent, len(recs))
		for i, r := range recs {
			batch[i] = encodedEvent{seq: r.Seq, data: r.Data}
		}
		if err := u.postBatch(ctx, bo, batch); err != nil {
			return err
		}
		if err := ob.Ack(recs[len(recs)-1]); err != nil {
			return fmt.Errorf("upload events: %w", err)
		}
		if err := u.queueDropped(); err != nil {
			return err
		}
	}
}

// queueDropped appends the notices of dropped events (see dropped) to the
// outbox, behind everything in it. It does not wait for room: Run's own
// acknowledgements make it, so what the outbox does not take now is
// tried again after the next batch (not in a loop of its own: a disk
// that refuses the write wakes Run at once, see outbox.Log.TryAppend).
func (u *Uploader) queueDropped() error {
	for len(u.dropped.pending) > 0 {
		ok, err := u.opts.Outbox.TryAppend(u.dropped.pending[0])
		if err != nil {
			return fmt.Errorf("upload events: notice of dropped events: %w", err)
		}
		if !ok {
			return nil
		}
		u.dropped.pending = u.dropped.pending[1:]
	}
	return nil
}

// reportedWait is a wait of the outbox the session was told of: when it
// began and its notices' code; zero when none is.
type reportedWait struct {
	since time.Time
	code  string
}

// reportWait tells the session when the outbox waits for a write that
// only others can let through (space to free, a disk that refuses
// writes), and when that wait is over: otherwise the user sees the
// agent's output stop for no reason. *reported is the wait last reported.
// The first notice cannot be logged, so it is posted without the outbox,
// once everything logged has been posted.
func (u *Uploader) reportWait(ctx context.Context, bo *backoff.ExponentialBackOff, reported *reportedWait) error {
	ob := u.opts.Outbox
	since, cause := ob.Waiting()
	switch {
	case !since.IsZero() && !since.Equal(reported.since):
		at := since.UTC().Format(time.TimeOnly)
		n := protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelWarning, NoticeCode: NoticeNoSpace, Ts: time.Now().UnixMilli(),
			Message: fmt.Sprintf("agentd: no space left on the disk of its state dir (%s) since %s; the agent's output waits until there is room, and nothing is dropped", ob.Dir(), at)}
		if !outbox.NoSpace(cause) {
			n.NoticeCode = NoticeUnwritable
			n.Message = fmt.Sprintf("agentd: the disk of its state dir (%s) refuses writes since %s (%v); the agent's output waits until it takes them again (repair the volume or restart the sandbox on a good one), and nothing is dropped", ob.Dir(), at, cause)
		}
		ok, err := u.postUnlogged(ctx, bo, n)
		if err != nil || !ok {
			return err // not drained: tried again once it is
		}
		*reported = reportedWait{since: since, code: n.NoticeCode}
	case since.IsZero() && !reported.since.IsZero():
		waited := time.Since(reported.since).Round(time.Second)
		n := protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelInfo, NoticeCode: reported.code, Ts: time.Now().UnixMilli(),
			Message: fmt.Sprintf("agentd: its state dir's disk has room again; the agent's output resumed after %s", waited)}
		if reported.code == NoticeUnwritable {
			n.Message = fmt.Sprintf("agentd: its state dir's disk takes writes again; the agent's output resumed after %s", waited)
		}
		*reported = reportedWait{}
		if _, err := ob.TryAppend(n); err != nil {
			return fmt.Errorf("upload events: %w", err)
		}
	}
	return nil
}

// postUnlogged posts ev, which the outbox has no room for (see
// outbox.Log.Unlogged). ok is false, and nothing posted, while the outbox
// holds events to post before it.
func (u *Uploader) postUnlogged(ctx context.Context, bo *backoff.ExponentialBackOff, ev protocol.Event) (ok bool, err error) {
	rec, ok, err := u.opts.Outbox.Unlogged(ev)
	if err != nil || !ok {
		return false, err
	}
	if err := u.postBatch(ctx, bo, []encodedEvent{{seq: rec.Seq, data: rec.Data}}); err != nil {
		return false, err
	}
	return true, nil
}

// collect waits for a first event, then gathers more until BatchMax, the
// byte limit, or BatchWait. done reports that the uploader is closed and
// nothing is left after this batch.
func (u *Uploader) collect(ctx context.Context, batchTimer *time.Timer, heartbeat <-chan time.Time) (batch []encodedEvent, done bool, err error) {
	size := 0
	room := func() bool { return len(batch) < u.opts.BatchMax && u.carry == nil }
	add := func(q queued) error {
		e, err := u.encode(q.ev)
		if err != nil {
			return err
		}
		if q.stamped != nil {
			q.stamped(e.seq)
		}
		if len(batch) > 0 && size+len(e.data)+1 > maxBatchBytes {
			u.carry = &e // first of the next batch
			return nil
		}
		batch = append(batch, e)
		size += len(e.data) + 1
		return nil
	}
	if u.carry != nil {
		batch, size = append(batch, *u.carry), len(u.carry.data)+1
		u.carry = nil
	}
	// The notices of events dropped from the last batch, stamped here
	// (encode) after everything posted or carried.
	for len(u.dropped.pending) > 0 && room() {
		if err := add(queued{ev: u.dropped.pending[0]}); err != nil {
			return nil, false, err
		}
		u.dropped.pending = u.dropped.pending[1:]
	}
	closed := false
wait:
	for len(batch) == 0 {
		select {
		case q := <-u.queue:
			err = add(q)
		case <-heartbeat:
			err = add(queued{ev: protocol.Event{Type: protocol.EventHeartbeat, Ts: time.Now().UnixMilli()}})
		case <-u.stop:
			closed = true
			break wait
		case <-ctx.Done():
			return nil, false, fmt.Errorf("upload events: %w", ctx.Err())
		}
		if err != nil {
			return nil, false, err
		}
	}
	if !closed && u.opts.BatchWait == 0 {
	take:
		for room() {
			select {
			case q := <-u.queue:
				if err := add(q); err != nil {
					return nil, false, err
				}
			case <-u.stop:
				closed = true
				break take
			default:
				break take
			}
		}
	}
	if !closed && u.opts.BatchWait > 0 {
		batchTimer.Reset(u.opts.BatchWait)
		defer batchTimer.Stop()
	fill:
		for room() {
			select {
			case q := <-u.queue:
				err = add(q)
			case <-batchTimer.C:
				break fill
			case <-u.stop:
				closed = true
				break fill
			case <-ctx.Done():
				return nil, false, fmt.Errorf("upload events: %w", ctx.Err())
			}
			if err != nil {
				return nil, false, err
			}
		}
	}
	if closed {
		// Nothing enters the queue after Close: take what is there
		// without waiting.
	drain:
		for room() {
			select {
			case q := <-u.queue:
				if err := add(q); err != nil {
					return nil, false, err
				}
			default:
				break drain
			}
		}
	}
	return batch, closed && len(u.queue) == 0 && u.carry == nil && len(u.dropped.pending) == 0, nil
}

// encode stamps the next agentSeq and marshals the event. Stamping here,
// in the single Run goroutine, makes agentSeq order equal queue order.
func (u *Uploader) encode(ev protocol.Event) (encodedEvent, error) {
	u.seq++
	ev.AgentSeq = u.seq
	// MarshalJSON directly: json.Marshal would call it and then copy and
	// re-validate its output, which is already compact.
	b, err := ev.MarshalJSON()
	if err != nil {
		return encodedEvent{}, fmt.Errorf("encode %s event: %w", ev.Type, err)
	}
	return encodedEvent{seq: u.seq, typ: ev.Type, data: b}, nil
}

// postBatch posts one batch, retrying what can be retried. A batch the
// server refuses as invalid or too large is split in halves so one bad
// event cannot block the pipeline; a single refused event is logged and
// dropped (it could never be stored, and retrying it forever would stall
// every event behind it), and the transcript is told (dropped: its
// notices are queued once the whole batch is posted, behind it, since
// an agentSeq above the batch's rest would make the server take that
// rest for retries). Only the server's own refusal of the events drops
// one: a 400 or 413 without its error body came from something in
// between, and one that says it refuses the request itself (a header:
// protocol.ScopeRequest) is about no event; postRetrying sends both
// again. An older server does not say so; its 400 for a header still
// drops the batch, as it did before.
func (u *Uploader) postBatch(ctx context.Context, bo *backoff.ExponentialBackOff, batch []encodedEvent) error {
	err := u.postRetrying(ctx, bo, batch)
	if err == nil {
		u.dropped.stored(batch)
		return nil
	}
	code := protocol.CodeOf(err)
	if code != protocol.CodeInvalid && code != protocol.CodeTooLarge {
		return err
	}
	if len(batch) == 1 {
		u.log.Error("server refused event; dropping it", "agentSeq", batch[0].seq, "type", batch[0].eventType(), "err", err)
		u.stats.Lock()
		u.posted.Dropped++
		u.stats.Unlock()
		u.dropped.refused(batch[0], err)
		return nil
	}
	half := len(batch) / 2
	if err := u.postBatch(ctx, bo, batch[:half]); err != nil {
		return err
	}
	return u.postBatch(ctx, bo, batch[half:])
}

// postRetrying posts the same body until it is stored, the error is not
// retryable, or ctx is done. The body keeps its agentSeqs, so a retry of a
// batch the server stored but whose answer was lost counts as duplicates.
func (u *Uploader) postRetrying(ctx context.Context, bo *backoff.ExponentialBackOff, batch []encodedEvent) error {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, e := range batch {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(e.data)
	}
	buf.WriteByte(']')
	body := buf.Bytes()
	first, last := batch[0].seq, batch[len(batch)-1].seq

	var timer *time.Timer
	for attempt := 1; ; attempt++ {
		start := time.Now()
		acc, err := u.post(ctx, body)
		if u.opts.OnPost != nil {
			u.opts.OnPost(time.Since(start), err)
		}
		if err == nil {
			bo.Reset()
			u.stats.Lock()
			u.posted.Batches++
			u.posted.Accepted += acc.Accepted
			u.posted.Duplicates += acc.Duplicates
			u.stats.Unlock()
			if acc.Duplicates > 0 {
				u.log.Info("server already had events (a retry)", "agentSeq", first, "to", last, "duplicates", acc.Duplicates)
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("post events agentSeq=%d..%d: %w", first, last, ctx.Err())
		}
		// A single event refused as invalid or too large, but not in the
		// server's words (a proxy's body-size limit, a filter's page): the
		// server never said it cannot store it, and dropping it would lose
		// it for good on the word of a misconfigured hop. It waits, as for
		// an unreachable server, and goes once the hop lets it through.
		proxied := len(batch) == 1 && apierror.IsRejected(err) && !apierror.IsStated(err)
		// The server refused the request, not its events (a header agentd
		// sent: a garbled state file, a bug, a proxy rewriting it). No
		// split can get around it and no event is to blame: the batch
		// waits, kept, until agentd or what is in between is fixed, and
		// every attempt says so loudly.
		refused := apierror.IsRequestRefused(err)
		if !apierror.IsRetryable(err) && !proxied && !refused {
			return fmt.Errorf("post events session=%s agentSeq=%d..%d: %w", u.opts.Session, first, last, err)
		}
		wait := bo.NextBackOff()
		switch {
		case refused:
			u.stats.Lock()
			u.posted.Refused++
			u.stats.Unlock()
			u.log.Error("rein-server refused the request, not its events (see err: a header agentd sent, from its state dir or rewritten by a proxy?); dropping none, retrying until it is fixed", "agentSeq", first, "to", last, "attempt", attempt, "in", wait, "err", err)
		case proxied:
			u.log.Error("something between agentd and rein-server refused an event (its answer is not the server's: a proxy's body size limit?); not dropping it, retrying", "agentSeq", first, "type", batch[0].eventType(), "bytes", len(batch[0].data), "attempt", attempt, "in", wait, "err", err)
		default:
			u.log.Warn("posting events failed; retrying", "agentSeq", first, "to", last, "attempt", attempt, "in", wait, "err", err)
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		} else {
			timer.Reset(wait)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			return fmt.Errorf("post events agentSeq=%d..%d: %w", first, last, ctx.Err())
		}
	}
}

// post makes one POST attempt.
func (u *Uploader) post(ctx context.Context, body []byte) (protocol.EventsAccepted, error) {
	var acc protocol.EventsAccepted
	ctx, cancel := context.WithTimeout(ctx, u.opts.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.url, bytes.NewReader(body))
	if err != nil {
		return acc, fmt.Errorf("build events request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(protocol.HeaderInstance, u.opts.Instance)
	if u.opts.Cursor != nil {
		if id, ok := u.opts.Cursor(); ok {
			req.Header.Set(protocol.HeaderCommandCursor, strconv.FormatInt(id, 10))
		}
	}
	if u.opts.SessionCreated != nil {
		if at, ok := u.opts.SessionCreated(); ok {
			req.Header.Set(protocol.HeaderSessionCreated, strconv.FormatInt(at, 10))
		}
	}
	if u.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+u.opts.Token)
	}
	resp, err := u.opts.Client.Do(req)
	if err != nil {
		return acc, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return acc, apierror.FromResponse(resp)
	}
	// The counts are informative; a 2xx means stored even if the body is
	// not what we expect.
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_ = json.Unmarshal(b, &acc)
	return acc, nil
}
