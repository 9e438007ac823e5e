package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rein-ai/rein/e2e/internal/loadgen"
)

// 8b. Figure 8 at -stored-sessions-large sessions (default 100,000): the
// bound on a stored idle session must hold at ten times figure 8's
// count. Storing them through the API takes minutes on two cores, so the
// first run stores them (32 posters, so the group commits are full) and
// every run measures a server started on that database against a fresh
// server's RSS: the stored sessions as a server holds them when none is
// in use. The first run's growth while storing them is in the note.
func (b *bench) storedSessionsLarge() ([]Figure, error) {
	return b.storedLargeOn("", &b.large, "memory_per_stored_session_large")
}

// storedLargeOn is figure 8b named name: its first run stores the
// sessions in db (see serverOn), later runs start a fresh server on db and
// one on the stored database, which *large keeps between runs.
func (b *bench) storedLargeOn(db string, large **storedRun, name string) ([]Figure, error) {
	n := b.count(b.storedLarge)
	if *large == nil {
		st, err := b.storeIdle(db, n, 32)
		if err != nil {
			return nil, err
		}
		*large = &st
		return largeFigure(name, st, st.before, st.restarted), nil
	}
	fresh, err := b.serverOnWith(db, "warm")
	if err != nil {
		return nil, err
	}
	err = post(context.Background(), newHTTPClient(1), fresh.URL+"/sessions/warm/events", loadgen.Batch(loadgen.Turn{TextDeltas: 5, OutputDeltas: 2}.Events(1)))
	time.Sleep(500 * time.Millisecond)
	before := memKiB(fresh.Pid(), "VmRSS")
	b.stop(fresh.Proc)
	if err != nil {
		return nil, err
	}
	srv, err := b.serverAt((*large).db, b.sync)
	if err != nil {
		return nil, err
	}
	time.Sleep(time.Second)
	restarted := memKiB(srv.Pid(), "VmRSS")
	b.stop(srv.Proc)
	return largeFigure(name, **large, before, restarted), nil
}

func largeFigure(name string, st storedRun, before, restarted int64) []Figure {
	return []Figure{{Name: name, Unit: "KiB", Value: float64(restarted-before) / float64(st.n), Target: 4,
		Note: fmt.Sprintf("a server started on a database of %d idle sessions of %d events each: RSS %d KiB, a fresh one's %d KiB; while the first run stored them: RSS %d -> %d KiB (%.2f KiB each)",
			st.n, st.events, restarted, before, st.before, st.after, st.per(st.after))}}
}

// 9. The figures of groups latency, memory, resume, stored_sessions and
// stored_sessions_large on PostgreSQL, named pg_ and the SQLite name, with
// the same targets, to be read beside SQLite's (group postgres has the
// ingest and fan-out ones).
// Skipped, as group postgres, when no PostgreSQL can be started.
func (b *bench) postgresMore() ([]Figure, error) {
	if _, ok, err := b.pgFor("postgres"); !ok {
		return nil, err
	}
	var out []Figure
	for _, fig := range []func(db string) ([]Figure, error){
		b.latencyOn,
		b.memoryOn,
		b.resumeOn,
		func(db string) ([]Figure, error) {
			return b.storedSessionsOn(db, "memory_per_stored_session", b.count(b.storedCount), 8)
		},
		func(db string) ([]Figure, error) {
			return b.storedLargeOn(db, &b.pgLarge, "memory_per_stored_session_large")
		},
	} {
		db, err := b.pgDatabase()
		if err != nil {
			return nil, err
		}
		figs, err := fig(db)
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		out = append(out, onPostgres(figs)...)
	}
	return out, nil
}

// onPostgres names figures measured on PostgreSQL as such.
func onPostgres(figs []Figure) []Figure {
	for i := range figs {
		figs[i].Name = "pg_" + figs[i].Name
		figs[i].Note = strings.TrimSpace("PostgreSQL; " + figs[i].Note)
	}
	return figs
}
