package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"
)

// serverLock is the advisory lock key a server holds for as long as it
// runs on the database (see LockServer).
const serverLock = 0x7265696f

// LockServer makes this store the only server on the database: it takes a
// session-level advisory lock on a connection of its own and keeps it
// until Close. The writer keeps each session's state in memory and
// assumes it is the only writer, so a second server on the same database
// would give contradictory answers; it is refused instead, naming the
// holder. If the lock's connection is lost (the database restarted), Ping
// takes the lock again or fails, so /healthz says so.
func (s *Store) LockServer(ctx context.Context) error {
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	if err := s.lockLocked(ctx); err != nil {
		return err
	}
	s.exclusive = true
	return nil
}

// Exclusive reports whether this store holds the server lock (see
// LockServer): then no other server runs on the database, and the server
// may apply its single-owner restart rule (store.Exclusive).
func (s *Store) Exclusive() bool {
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	return s.exclusive
}

// lockLocked (re)takes the server lock; lockMu is held.
func (s *Store) lockLocked(ctx context.Context) error {
	if s.lockConn != nil && !s.lockConn.IsClosed() {
		if err := s.lockConn.Ping(ctx); err == nil {
			return nil
		}
		_ = s.lockConn.Close(ctx)
	}
	s.lockConn = nil
	cfg := s.pool.Config().ConnConfig.Copy()
	host, _ := os.Hostname()
	cfg.RuntimeParams["application_name"] = fmt.Sprintf("rein-server pid %d on %s", os.Getpid(), host)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("lock postgres %s: connect: %w", s.name, err)
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, serverLock).Scan(&got); err != nil {
		_ = conn.Close(ctx)
		return fmt.Errorf("lock postgres %s: %w", s.name, err)
	}
	if !got {
		holder := "another rein-server"
		var app, addr string
		err := conn.QueryRow(ctx, `SELECT a.application_name, COALESCE(host(a.client_addr), 'local socket')
			FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND l.objid = $1::bigint::oid`, serverLock).Scan(&app, &addr)
		if err == nil {
			holder = fmt.Sprintf("%q from %s", app, addr)
		} else if !errors.Is(err, pgx.ErrNoRows) {
			holder += fmt.Sprintf(" (could not name it: %v)", err)
		}
		_ = conn.Close(ctx)
		return fmt.Errorf("database %s is in use by %s: one rein-server per database (several replicas are not supported yet)", s.name, holder)
	}
	s.lockConn = conn
	return nil
}

// checkLock is Ping's part for an exclusive store: the lock's connection
// is alive, or the lock is taken again.
func (s *Store) checkLock(ctx context.Context) error {
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	if !s.exclusive {
		return nil
	}
	return s.lockLocked(ctx)
}

func (s *Store) unlock() {
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	if s.lockConn != nil {
		_ = s.lockConn.Close(context.Background())
		s.lockConn = nil
	}
}
