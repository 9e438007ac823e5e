package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"

	"github.com/rein-ai/rein/server/store"
)

// Replicas tell each other about their commits with NOTIFY on this
// channel: the payload names the sessions a commit changed, never what
// changed (the receiver reads that from the tables), so it stays far
// below NOTIFY's 8,000-byte limit and a lost notification is repaired by
// reading again.
const channel = "rein_sessions"

// maxPayload keeps one notification below NOTIFY's 8,000-byte limit.
const maxPayload = 7000

// announcement is a notification's payload.
type announcement struct {
	// Origin is the announcing store (Store.origin), so a replica skips
	// its own commits.
	Origin string   `json:"o"`
	IDs    []string `json:"s"`
}

func newOrigin() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// announcer sends the announcements of this store's commits from a
// goroutine of its own: a commit returns without waiting for the NOTIFY,
// and the sessions of every commit made while one NOTIFY is on its way
// go out together in the next (under load, one notification stands for
// many commits). NOTIFY runs after the commit, in a statement of its own:
// inside the data transaction it takes a database-wide lock across the
// commit's WAL flush, which measured 2.4-8x fewer commits a second.
//
// A NOTIFY that fails is sent again (announceRetry), but an announcement
// can still be lost (the process dies first, or stops while the database
// is unreachable): a replica that missed one finds the change when it next
// writes the session (store.Expect fails) or polls the sessions it
// streams (server/replicas.go).
type announcer struct {
	mu      sync.Mutex
	pending map[string]bool
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func (s *Store) startAnnouncer() {
	s.ann = &announcer{pending: map[string]bool{}, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go s.announceLoop()
}

// announce queues ids for the next announcement.
func (s *Store) announce(ids []string) {
	a := s.ann
	a.mu.Lock()
	for _, id := range ids {
		a.pending[id] = true
	}
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// announceLoop sends what announce queued until Close, then what is
// left. It also forgets old change batches now and then.
func (s *Store) announceLoop() {
	a := s.ann
	defer close(a.done)
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	// After a NOTIFY failed, what it held waits for the retry timer,
	// with every commit made meanwhile: not sent at each commit's kick,
	// in a loop against a database that is failing.
	retry := time.NewTimer(announceRetry)
	retry.Stop()
	defer retry.Stop()
	failing := false
	for {
		select {
		case <-a.kick:
			if failing {
				continue
			}
		case <-retry.C:
		case <-prune.C:
			s.pruneChanges()
			continue
		case <-a.stop:
			s.sendAnnouncements(failing)
			return
		}
		ok := s.sendAnnouncements(failing)
		if !ok {
			retry.Reset(announceRetry)
		}
		failing = !ok
	}
}

// announceRetry is how long announcements wait after a NOTIFY failed
// (a pooled connection the database dropped, a database restarting). A
// replica that missed them would show its session and approval streams
// behind until the session's next write, and its followers behind until
// its poll (server/replicas.go).
const announceRetry = time.Second

// Change batches are kept changesKept: a replica whose followers are
// further behind falls back to whole artifacts. Every replica prunes; the
// deletes are idempotent.
const (
	changesKept = 2 * time.Minute
	pruneEvery  = 30 * time.Second
)

func (s *Store) pruneChanges() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before := time.Now().Add(-changesKept).UnixMilli()
	if _, err := s.pool.Exec(ctx, `DELETE FROM change_batches WHERE at < $1`, before); err != nil {
		s.log.Warn("forget old change batches", slog.Any("err", err))
	}
}

// ChangeBatches returns the session's batches with after <= from_rev <
// before, up to the first that brings their bodies to maxBytes (the
// database adds up the sizes, so batches past the budget are not sent).
func (s *Store) ChangeBatches(ctx context.Context, id string, after, before int64, maxBytes int) ([]store.ChangeBatch, error) {
	rows, _ := s.pool.Query(ctx, `SELECT from_rev, to_rev, at, body FROM (
		SELECT from_rev, to_rev, at, body,
			coalesce(sum(octet_length(body)) OVER (ORDER BY from_rev ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS earlier
		FROM change_batches WHERE session_id = $1 AND from_rev >= $2 AND from_rev < $3) b
		WHERE earlier < $4 ORDER BY from_rev`, id, after, before, maxBytes)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.ChangeBatch, error) {
		var b store.ChangeBatch
		err := row.Scan(&b.FromRev, &b.ToRev, &b.At, &b.Body)
		return b, err
	})
	if err != nil {
		return nil, fmt.Errorf("read change batches session=%s after=%d before=%d: %w", id, after, before, err)
	}
	return out, nil
}

// sendAnnouncements sends what is queued, split to fit NOTIFY's limit.
// When a NOTIFY fails, what it and the rest held is queued again and it
// returns false; retrying says the last one failed too (logged once).
func (s *Store) sendAnnouncements(retrying bool) bool {
	a := s.ann
	a.mu.Lock()
	ids := make([]string, 0, len(a.pending))
	for id := range a.pending {
		ids = append(ids, id)
	}
	clear(a.pending)
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(ids) > 0 {
		msg := announcement{Origin: s.origin}
		size := 32
		for len(ids) > 0 && (len(msg.IDs) == 0 || size+len(ids[0])+3 < maxPayload) {
			size += len(ids[0]) + 3
			msg.IDs = append(msg.IDs, ids[0])
			ids = ids[1:]
		}
		payload, _ := json.Marshal(msg)
		if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, string(payload)); err != nil {
			a.mu.Lock()
			for _, id := range slices.Concat(msg.IDs, ids) {
				a.pending[id] = true
			}
			n := len(a.pending)
			a.mu.Unlock()
			if !retrying {
				s.log.Warn("announce commits to other replicas; trying again", slog.Int("sessions", n), slog.Duration("every", announceRetry), slog.Any("err", err))
			}
			return false
		}
	}
	if retrying {
		s.log.Info("announced commits to other replicas again")
	}
	return true
}

// stopAnnouncer sends what is queued and stops the goroutine (Close may
// be called more than once).
func (s *Store) stopAnnouncer() {
	s.ann.once.Do(func() { close(s.ann.stop) })
	<-s.ann.done
}

// LoadSession returns one session with its internal state and sandbox
// token hash, read in one snapshot.
func (s *Store) LoadSession(ctx context.Context, id string) (store.Session, *[32]byte, error) {
	var (
		out  store.Session
		hash *[32]byte
	)
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = $1`, id)
		var err error
		out, err = pgx.CollectExactlyOneRow(rows, scanSession)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound(id)
		}
		if err != nil {
			return err
		}
		rows, _ = tx.Query(ctx, `SELECT instance FROM sandbox_instances WHERE session_id = $1 ORDER BY first_seen, instance`, id)
		if out.Instances, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		var h []byte
		err = tx.QueryRow(ctx, `SELECT hash FROM sandbox_tokens WHERE session_id = $1`, id).Scan(&h)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		case len(h) == 32:
			hash = (*[32]byte)(h)
		}
		return nil
	})
	if err != nil {
		return store.Session{}, nil, fmt.Errorf("load session %s: %w", id, err)
	}
	return out, hash, nil
}

// SessionVersions returns a page of the sessions' ids, versions and
// createdAt in id order (store.Shared). It is read through the primary
// key's index from the last id of the page before, so a page costs its
// own rows whatever the number of sessions, and no read holds them all.
func (s *Store) SessionVersions(ctx context.Context, after string, limit int) ([]store.SessionVersion, error) {
	rows, _ := s.pool.Query(ctx, `SELECT id, version, created_at FROM sessions WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	out := make([]store.SessionVersion, 0, limit)
	var v store.SessionVersion
	_, err := pgx.ForEachRow(rows, []any{&v.ID, &v.Version, &v.CreatedAt}, func() error {
		out = append(out, v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read session versions after %q: %w", after, err)
	}
	return out, nil
}

// Watch listens for other replicas' announcements on a connection of its
// own and calls changed with the sessions they name. After every
// (re)connection it calls changed(nil) first: announcements sent while it
// was not listening are lost, so everything may have changed.
func (s *Store) Watch(ctx context.Context, changed func(ids []string)) error {
	l := &pgxlisten.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			return pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
		},
		LogError: func(_ context.Context, err error) {
			if ctx.Err() == nil {
				s.log.Warn("listening for other replicas' commits", slog.Any("err", err))
			}
		},
		// The database came back: catch up soon, not after pgxlisten's
		// default minute.
		ReconnectDelay: time.Second,
	}
	l.Handle(channel, watcher{origin: s.origin, changed: changed})
	err := l.Listen(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("watch postgres %s: %w", s.name, err)
}

// watcher is the handler of the channel.
type watcher struct {
	origin  string
	changed func(ids []string)
}

// HandleBacklog runs once LISTEN is in place on a new connection:
// whatever was announced before is lost, so everything may have changed.
func (w watcher) HandleBacklog(context.Context, string, *pgx.Conn) error {
	w.changed(nil)
	return nil
}

func (w watcher) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	var a announcement
	if err := json.Unmarshal([]byte(n.Payload), &a); err != nil {
		return fmt.Errorf("announcement %q: %w", n.Payload, err)
	}
	if a.Origin == w.origin || len(a.IDs) == 0 {
		return nil
	}
	w.changed(a.IDs)
	return nil
}
