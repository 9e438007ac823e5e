package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/pgtest"
)

// /healthz answers 503 while the database refuses connections, and 200
// again once it takes them, with no restart of the server.
func TestPostgresHealthFollowsTheDatabase(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	s := start(t, app.Options{DBPath: dsn})
	c := newClient(t, s)
	if code, _ := c.do("GET", "/healthz", nil); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	ctx := context.Background()
	admin, db := adminConn(t, dsn)
	// The admin connection goes to the maintenance database, so it
	// survives ending every connection to the test's.
	for _, q := range []string{
		`ALTER DATABASE ` + pgx.Identifier{db}.Sanitize() + ` ALLOW_CONNECTIONS false`,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '` + db + `' AND pid <> pg_backend_pid()`,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// pg_terminate_backend only signals each backend: one that has not
	// ended yet (the writer's) can still commit, and a create answered
	// 201 then is true. Wait until none is left.
	for deadline := time.Now().Add(streamDeadline); ; time.Sleep(20 * time.Millisecond) {
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1`, db).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backends of the test's database still there after pg_terminate_backend", n)
		}
	}
	if code, body := c.do("GET", "/healthz", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("healthz with the database gone: %d %s; want 503", code, body)
	}
	if code, _ := c.do("POST", "/sessions/b", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("create with the database gone: %d; want 503", code)
	}
	if _, err := admin.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{db}.Sanitize()+` ALLOW_CONNECTIONS true`); err != nil {
		t.Fatal(err)
	}
	// The pool reconnects on its next use and the writer's probe finds
	// writes working again; nothing is asserted about when (the bound
	// only keeps a broken build from hanging).
	for deadline := time.Now().Add(streamDeadline); ; time.Sleep(50 * time.Millisecond) {
		code, body := c.do("GET", "/healthz", nil)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz never recovered: %d %s", code, body)
		}
	}
	if code, body := c.do("POST", "/sessions/b", nil); code != http.StatusCreated {
		t.Fatalf("create after recovery: %d %s", code, body)
	}
}

// adminConn connects to the cluster's maintenance database; it returns
// the connection and the name of dsn's database.
// waitListening waits until n connections LISTEN on the database of dsn:
// n replicas on it have started watching for each other's commits.
func waitListening(t *testing.T, dsn string, n int) {
	t.Helper()
	admin, db := adminConn(t, dsn)
	for deadline := time.Now().Add(streamDeadline); ; time.Sleep(10 * time.Millisecond) {
		var got int
		if err := admin.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'listen %'`, db).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections listen on %s; want %d", got, db, n)
		}
	}
}

func adminConn(t *testing.T, dsn string) (*pgx.Conn, string) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := cfg.Database
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, db
}
