package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/client"
)

// Follower follows a session's artifact stream the way a real client does
// (over the product's client package, one connection at a time, so a test
// can drop connections and check every event):
// it applies snapshots and updates to a local model, remembers the last
// event id, and reconnects with it after the connection drops, and drops
// what a full replay did not send. It also checks the stream's promise:
// revisions only ever increase, so nothing is applied twice (only a full
// replay, which replaces the model, may go back below what was seen).
type Follower struct {
	c       *client.Client
	session string

	mu       sync.Mutex
	model    map[int64]*protocol.Artifact
	lastID   string
	connects int
	complete int // snapshot_complete events seen
	// The replay of the current connection, until its snapshot_complete:
	// the seqs it sent, its lowest id, and the last id before it.
	replaying  bool
	replayed   map[int64]bool
	replayLow  int64
	replayFrom int64
	violations []string
	changed    chan struct{} // closed and replaced on every change
	ended      error         // why following stopped for good
	cancelConn context.CancelFunc

	cancel context.CancelFunc
	done   chan struct{}
}

// Follow starts following session's artifact stream until Close.
func Follow(ctx context.Context, c *client.Client, session string) *Follower {
	ctx, cancel := context.WithCancel(ctx)
	f := &Follower{c: c, session: session, model: map[int64]*protocol.Artifact{}, changed: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go f.run(ctx)
	return f
}

func (f *Follower) run(ctx context.Context) {
	defer close(f.done)
	backoff := 20 * time.Millisecond
	for ctx.Err() == nil {
		err := f.once(ctx)
		var ce *client.Error
		if errors.As(err, &ce) && ce.Code == protocol.CodeNotFound {
			f.finish(err)
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		if backoff < 500*time.Millisecond {
			backoff *= 2
		}
	}
	f.finish(ctx.Err())
}

func (f *Follower) finish(err error) {
	f.mu.Lock()
	f.ended = err
	f.notifyLocked()
	f.mu.Unlock()
}

func (f *Follower) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// once holds one connection until it ends.
func (f *Follower) once(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.mu.Lock()
	lastID := f.lastID
	f.cancelConn = cancel
	f.mu.Unlock()
	body, err := f.c.OpenStream(ctx, "/sessions/"+url.PathEscape(f.session)+"/stream", lastID)
	if err != nil {
		return err
	}
	defer body.Close()
	f.mu.Lock()
	f.connects++
	f.replaying, f.replayed, f.replayLow = true, map[int64]bool{}, 0
	f.replayFrom, _ = strconv.ParseInt(f.lastID, 10, 64)
	f.mu.Unlock()
	r := client.NewEventReader(body)
	for {
		ev, err := r.Next()
		if err != nil {
			return err
		}
		f.apply(ev)
	}
}

func (f *Follower) apply(ev client.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.notifyLocked()
	if ev.ID != "" {
		last, _ := strconv.ParseInt(f.lastID, 10, 64)
		id, err := strconv.ParseInt(ev.ID, 10, 64)
		switch {
		case err != nil:
			f.violations = append(f.violations, fmt.Sprintf("event id %q is not a revision", ev.ID))
		case f.replaying && ev.Name == protocol.SSEArtifactSnapshot:
			// Judged at snapshot_complete: a full replay starts over.
			if f.replayLow == 0 {
				f.replayLow = id
			} else if id <= last {
				f.violations = append(f.violations, fmt.Sprintf("%s with revision %d after %d in one replay: out of order", ev.Name, id, last))
			}
		case ev.Name != protocol.SSESnapshotComplete && id <= last:
			f.violations = append(f.violations, fmt.Sprintf("%s with revision %d after %d: applied twice or out of order", ev.Name, id, last))
		}
		if ev.Name != protocol.SSESnapshotComplete || id > last || f.replaying {
			f.lastID = ev.ID
		}
	}
	rev, _ := strconv.ParseInt(ev.ID, 10, 64)
	switch ev.Name {
	case protocol.SSEArtifactSnapshot, protocol.SSEArtifactCreated:
		var p protocol.ArtifactPayload
		if err := json.Unmarshal([]byte(ev.Data), &p); err != nil || p.Artifact == nil {
			f.violations = append(f.violations, fmt.Sprintf("bad %s payload: %v", ev.Name, err))
			return
		}
		f.model[p.Artifact.Seq] = p.Artifact
		if f.replaying {
			f.replayed[p.Artifact.Seq] = true
		}
	case protocol.SSEArtifactUpdated:
		var u protocol.ArtifactUpdate
		if err := json.Unmarshal([]byte(ev.Data), &u); err != nil {
			f.violations = append(f.violations, fmt.Sprintf("bad update payload: %v", err))
			return
		}
		a := f.model[u.Seq]
		if a == nil {
			f.violations = append(f.violations, fmt.Sprintf("update for unknown artifact seq %d", u.Seq))
			return
		}
		if err := u.Apply(a, rev); err != nil {
			f.violations = append(f.violations, err.Error())
		}
	case protocol.SSESnapshotComplete:
		f.complete++
		var c protocol.SnapshotComplete
		if err := json.Unmarshal([]byte(ev.Data), &c); err != nil {
			f.violations = append(f.violations, fmt.Sprintf("bad snapshot_complete payload: %v", err))
		}
		switch {
		case c.Full:
			for seq := range f.model {
				if !f.replayed[seq] {
					delete(f.model, seq)
				}
			}
		case f.replayLow != 0 && f.replayLow <= f.replayFrom:
			f.violations = append(f.violations, fmt.Sprintf("a resume from revision %d replayed revision %d: applied twice", f.replayFrom, f.replayLow))
		}
		f.replaying = false
	}
}

// Artifacts returns the model, ordered by seq.
func (f *Follower) Artifacts() []*protocol.Artifact {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listLocked()
}

func (f *Follower) listLocked() []*protocol.Artifact {
	out := make([]*protocol.Artifact, 0, len(f.model))
	for _, a := range f.model {
		out = append(out, a.Clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// Violations lists every broken stream promise seen.
func (f *Follower) Violations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.violations...)
}

// Connects is how many times a stream connection was opened.
func (f *Follower) Connects() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connects
}

// Drop closes the current connection; the follower reconnects with its
// last event id, as a client does after a network blip.
func (f *Follower) Drop() {
	f.mu.Lock()
	if f.cancelConn != nil {
		f.cancelConn()
	}
	f.mu.Unlock()
}

// WaitFor waits until cond holds for the model, the follower stops for
// good, or ctx ends.
func (f *Follower) WaitFor(ctx context.Context, what string, cond func([]*protocol.Artifact) bool) error {
	for {
		f.mu.Lock()
		ok := cond(f.listLocked())
		ended, changed := f.ended, f.changed
		f.mu.Unlock()
		if ok {
			return nil
		}
		if ended != nil {
			return fmt.Errorf("waiting for %s: follower stopped: %w", what, ended)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
}

// Ended returns why the follower stopped (nil while it runs).
func (f *Follower) Ended() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ended
}

// Close stops following and waits for the goroutine.
func (f *Follower) Close() {
	f.cancel()
	<-f.done
}
