package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/e2e/internal/loadgen"
)

func TestFigures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		samples []sample
		met     map[string]bool
		ratio   float64
	}{
		{
			name:    "small server, big database, steady ingest: all met",
			samples: []sample{{RSSMiB: 100, DBMiB: 50, EventsPerSec: 4000}, {RSSMiB: 200, DBMiB: 250, EventsPerSec: 3000}},
			met:     map[string]bool{"soak_rss_end": true, "soak_db_end": true, "soak_ingest_ratio": true},
			ratio:   0.75,
		},
		{
			name:    "small RSS does not count while the database is small",
			samples: []sample{{RSSMiB: 100, DBMiB: 50, EventsPerSec: 4000}, {RSSMiB: 120, DBMiB: 150, EventsPerSec: 800}},
			met:     map[string]bool{"soak_rss_end": false, "soak_db_end": false, "soak_ingest_ratio": false},
			ratio:   0.2,
		},
		{
			name:    "a server whose RSS grew with its database",
			samples: []sample{{RSSMiB: 300, DBMiB: 20, EventsPerSec: 4300}, {RSSMiB: 1200, DBMiB: 244, EventsPerSec: 850}},
			met:     map[string]bool{"soak_rss_end": false, "soak_db_end": true, "soak_ingest_ratio": false},
			ratio:   850.0 / 4300,
		},
		{
			name:    "one window: first and last are the same",
			samples: []sample{{RSSMiB: 10, DBMiB: 1, EventsPerSec: 100}},
			met:     map[string]bool{"soak_rss_end": false, "soak_db_end": false, "soak_ingest_ratio": true},
			ratio:   1,
		},
		{
			name:    "nothing ingested: ratio 0, not met",
			samples: []sample{{EventsPerSec: 0}, {EventsPerSec: 0}},
			met:     map[string]bool{"soak_rss_end": false, "soak_db_end": false, "soak_ingest_ratio": false},
			ratio:   0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			figs := figures(tc.samples, 0, 15*time.Second)
			byName := map[string]loadgen.Figure{}
			for _, f := range figs {
				byName[f.Name] = f
			}
			for name, want := range tc.met {
				if got := byName[name].Met; got != want {
					t.Errorf("%s met = %v, want %v", name, got, want)
				}
			}
			if got := byName["soak_ingest_ratio"].Value; got != tc.ratio {
				t.Errorf("ratio %v, want %v", got, tc.ratio)
			}
		})
	}
}

func TestConfigCheck(t *testing.T) {
	good := config{bin: t.TempDir(), duration: time.Minute, every: 15 * time.Second, sessions: 1, batch: 1, holdMax: time.Second}
	for _, tc := range []struct {
		name   string
		change func(*config)
		want   string
	}{
		{"no rein-server in -bin", func(*config) {}, "-bin"},
		{"zero duration", func(c *config) { c.duration = 0 }, "-duration"},
		{"window longer than the run", func(c *config) { c.every = 2 * time.Minute }, "-every"},
		{"no sessions", func(c *config) { c.sessions = 0 }, "-sessions"},
		{"negative followers", func(c *config) { c.followers = -1 }, "-followers"},
		{"empty batch", func(c *config) { c.batch = 0 }, "-batch"},
		{"hold range reversed", func(c *config) { c.holdMin = 2 * time.Second }, "-hold-min"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.change(&c)
			err := c.check()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %s", err, tc.want)
			}
		})
	}
}

// TestFollowOnce checks the follower's reader on a stream whose replay has
// a line longer than its buffer: the replay still counts once it reaches
// snapshot_complete, a stream cut before that is an error, and a "line"
// that merely continues a long one is not taken for the event name.
func TestFollowOnce(t *testing.T) {
	long := strings.Repeat("x", 100<<10)
	for _, tc := range []struct {
		name    string
		body    string
		replays int64
		wantErr bool
	}{
		{"replay with a long line", "event: artifact_snapshot\ndata: " + long + "\n\nevent: snapshot_complete\ndata: {}\n\n", 1, false},
		{"cut before snapshot_complete", "event: artifact_snapshot\ndata: " + long + "\n\n", 0, true},
		{"name inside a long line is not an event", "data: " + strings.Repeat("y", 64<<10-6) + "event: snapshot_complete\n\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Last-Event-ID") != "" {
					http.Error(w, "a follower must not resume", http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprint(w, tc.body)
			}))
			defer srv.Close()
			s := &soak{client: loadgen.NewHTTPClient(1)}
			err := s.followOnce(context.Background(), srv.URL, 0)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got := s.replays.Load(); got != tc.replays {
				t.Errorf("%d replays counted, want %d", got, tc.replays)
			}
		})
	}
}
