package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/rein-ai/rein/server/pgtest"
)

// A second server on the same database is refused, naming the first; once
// the first closes, the lock is free.
func TestLockServer(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	a := open(t, dsn)
	if err := a.LockServer(ctx); err != nil {
		t.Fatal(err)
	}
	b := open(t, dsn)
	err := b.LockServer(ctx)
	if err == nil || !strings.Contains(err.Error(), "in use by") || !strings.Contains(err.Error(), "rein-server pid") {
		t.Fatalf("second LockServer: %v; want in use by the first, named", err)
	}
	if err := a.Ping(ctx); err != nil {
		t.Fatalf("holder's Ping: %v", err)
	}
	// The holder's lock connection dies (a database restart ends every
	// session): its Ping takes the lock again.
	var pid int
	if err := a.lockConn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	if err := a.Ping(ctx); err != nil {
		t.Fatalf("Ping after the lock connection died: %v", err)
	}
	if err := b.LockServer(ctx); err == nil {
		t.Fatal("second LockServer succeeded while the first holds the lock again")
	}
	a.Close()
	if err := b.LockServer(ctx); err != nil {
		t.Fatalf("LockServer after the holder closed: %v", err)
	}
}
