package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rein-ai/rein/server/pgtest"
)

// pgDatabase returns the URL of a fresh database on the bench's throwaway
// PostgreSQL cluster, starting the cluster on first use.
// pgFor is pgDatabase for a figure group: ok is false (and err nil) when
// no PostgreSQL can be started here, which skips the group, saying so.
func (b *bench) pgFor(group string) (db string, ok bool, err error) {
	db, err = b.pgDatabase()
	var un *pgtest.UnavailableError
	if errors.As(err, &un) {
		fmt.Fprintf(os.Stderr, "bench: %s figures skipped: %v\n", group, err)
		return "", false, nil
	}
	return db, err == nil, err
}

func (b *bench) pgDatabase() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b.mu.Lock()
	c := b.cluster
	b.mu.Unlock()
	if c == nil {
		var err error
		if c, err = pgtest.Start(ctx); err != nil {
			return "", err
		}
		b.mu.Lock()
		closed := b.closed
		if !closed {
			b.cluster = c
		}
		b.mu.Unlock()
		if closed {
			c.Stop()
			return "", fmt.Errorf("the bench was interrupted")
		}
	}
	b.dbs++
	name := fmt.Sprintf("bench%d", b.dbs)
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect to the bench cluster: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return c.DSN(name), nil
}

// 8. The server on PostgreSQL (--db postgres://, synchronous_commit=on):
// batched ingest against raw pgx inserts of the same rows, 500 per
// transaction; single-event ingest and fan-out as figures 1 and 3 measure
// them on SQLite, against the same baselines.
func (b *bench) postgres() ([]Figure, error) {
	if _, ok, err := b.pgFor("postgres"); !ok {
		return nil, err
	}
	var figs []Figure

	// Batched ingest.
	const batch, workers = 500, 2
	d := b.dur(4 * time.Second)
	db, err := b.pgDatabase()
	if err != nil {
		return nil, err
	}
	srv, err := b.serverOnWith(db, "b0", "b1")
	if err != nil {
		return nil, err
	}
	ours, err := b.postBatches(srv, d, workers, batch)
	if err != nil {
		return nil, err
	}
	rawDB, err := b.pgDatabase()
	if err != nil {
		return nil, err
	}
	base, err := rawPgx(rawDB, batch, d)
	if err != nil {
		return nil, err
	}
	figs = append(figs, withBaseline(Figure{Name: "pg_ingest_batch", Unit: "events/s", Value: ours, Target: 0.7, Higher: true,
		Note: "PostgreSQL; 2 posters, 500 text_delta per POST; baseline: raw pgx inserts of the same rows, 500 per transaction"}, base))

	// Single-event ingest, as figure 1.
	if db, err = b.pgDatabase(); err != nil {
		return nil, err
	}
	single, err := b.singleRun(db)
	if err != nil {
		return nil, err
	}
	triv, url, err := b.child("trivial")
	if err != nil {
		return nil, err
	}
	trivial, err := b.singleOn(url)
	b.stop(triv)
	if err != nil {
		return nil, err
	}
	// The same load on the minimal durable handler on PostgreSQL, in a
	// database of its own on the same cluster.
	if db, err = b.pgDatabase(); err != nil {
		return nil, err
	}
	pgd, url, err := b.child("pgdurable", "-dsn", db)
	if err != nil {
		return nil, err
	}
	durable, err := b.singleOn(url)
	b.stop(pgd)
	if err != nil {
		return nil, err
	}
	figs = append(figs, withBaseline(Figure{Name: "pg_ingest_single", Unit: "events/s", Value: single, Target: 0.5, Higher: true,
		Note: fmt.Sprintf("PostgreSQL; 32 posters, 1 event per POST; baseline: trivial net/http handler (compare ingest_single, SQLite); the minimal durable handler on PostgreSQL made %.0f events/s in this run (ours: %.2f of it)", durable, single/durable)}, trivial),
		withBaseline(Figure{Name: "pg_durable_handler_single", Unit: "events/s", Value: durable, Target: 0.5, Higher: true,
			Note: "not ours: pg_ingest_single's load on the minimal durable handler on PostgreSQL (a group commit of one multi-row insert into one table, synchronous_commit=on, then 202), against the trivial handler, held to pg_ingest_single's target"}, trivial))

	// Fan-out, as figure 3 (the baseline is the same minimal hub).
	if db, err = b.pgDatabase(); err != nil {
		return nil, err
	}
	fn := b.count(1000)
	if srv, err = b.serverOnWith(db, "fan"); err != nil {
		return nil, err
	}
	fan, fanCPU, hubRate, hubCPU, err := b.fanBesideHub(srv, fn)
	if err != nil {
		return nil, err
	}
	// Held to fanout's target: every pg_ figure has SQLite's, so the two
	// backends read side by side (docs/BENCHMARKS.md says why this misses).
	figs = append(figs, withBaseline(Figure{Name: "pg_fanout", Unit: "deliveries/s", Value: fan, Target: 1.0, Higher: true,
		Note: fmt.Sprintf("PostgreSQL; %d subscribers; baseline: minimal go-sse hub; held to fanout's target (compare fanout, SQLite)", fn)}, hubRate),
		withBaseline(Figure{Name: "pg_fanout_cpu", Unit: "CPU s per 1M deliveries", Value: fanCPU, Target: 2,
			Note: "PostgreSQL; server process CPU; ratio against the minimal hub's (compare fanout_cpu, SQLite)"}, hubCPU))
	return figs, nil
}

// singleRun measures single-event ingest (figure 1's load) on a fresh
// server on db.
func (b *bench) singleRun(db string) (float64, error) {
	ids := make([]string, 32)
	for i := range ids {
		ids[i] = fmt.Sprintf("s%d", i)
	}
	srv, err := b.serverOnWith(db, ids...)
	if err != nil {
		return 0, err
	}
	defer b.stop(srv.Proc)
	return b.singleOn(srv.URL)
}

// singleOn posts one event per POST from 32 posters to base.
func (b *bench) singleOn(base string) (float64, error) {
	const workers = 32
	body := []byte(`{"type":"text_delta","id":"m1","delta":"hello "}`)
	c := newHTTPClient(workers)
	n, el, err := hammer(b.dur(4*time.Second), workers, func(ctx context.Context, w, _ int) error {
		return post(ctx, c, fmt.Sprintf("%s/sessions/s%d/events", base, w), body)
	})
	return float64(n) / el.Seconds(), err
}

// rawPgx inserts event rows as the PostgreSQL event log stores them, batch
// rows per transaction in one multi-row insert, with the server's
// connection settings (synchronous_commit=on), for d.
func rawPgx(dsn string, batch int, d time.Duration) (float64, error) {
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return 0, err
	}
	cfg.RuntimeParams["synchronous_commit"] = "on"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`CREATE TABLE sessions (id text PRIMARY KEY)`,
		`CREATE TABLE events (session_id text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE, pos bigint NOT NULL,
			instance text NOT NULL, agent_seq bigint NOT NULL, body bytea NOT NULL, PRIMARY KEY (session_id, pos))`,
		`INSERT INTO sessions VALUES ('raw')`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return 0, err
		}
	}
	deadline := time.Now().Add(d)
	start := time.Now()
	pos := 0
	sessions, instances := make([]string, batch), make([]string, batch)
	for i := range sessions {
		sessions[i] = "raw"
	}
	seqs := make([]int64, batch)
	for time.Now().Before(deadline) {
		positions := make([]int64, batch)
		bodies := make([][]byte, batch)
		for i := range batch {
			pos++
			positions[i] = int64(pos)
			bodies[i] = fmt.Appendf(nil, `{"type":"text_delta","receivedAt":%d,"id":"m%d","delta":"word%d "}`, time.Now().UnixMilli(), pos/batch, i)
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return 0, err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO events (session_id, pos, instance, agent_seq, body) SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bytea[])`,
			sessions, positions, instances, seqs, bodies); err != nil {
			_ = tx.Rollback(ctx)
			return 0, err
		}
		if err := tx.Commit(ctx); err != nil {
			return 0, err
		}
	}
	return float64(pos) / time.Since(start).Seconds(), nil
}
