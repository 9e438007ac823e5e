package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
)

// kill -9 of the server while 16 posters send one event per request to 8
// sessions: on SQLite that load commits events staged and leaves the
// artifacts to a commit a few times a second (server/README.md, Staged
// events), so the kill finds sessions whose artifacts lag their log. After
// the restart every acknowledged event is in its session's log, in the
// order each poster sent it; each session's artifacts are exactly the fold
// of its log; and the followers, which reconnect with Last-Event-ID, end
// up with exactly those artifacts, each change applied once.
func TestServerKilledDuringStagedIngest(t *testing.T) {
	e := newEnv(t)
	const sessions, posters = 8, 16
	ids := make([]string, sessions)
	tokens := make([]string, sessions)
	follow := make([]*Follower, sessions)
	for i := range ids {
		ids[i] = fmt.Sprint("staged-", i)
		e.create(ids[i], "")
		tok, err := os.ReadFile(e.tokens[ids[i]])
		if err != nil {
			t.Fatal(err)
		}
		tokens[i] = strings.TrimSpace(string(tok))
		follow[i] = Follow(e.ctx, e.c, ids[i])
		t.Cleanup(follow[i].Close)
	}

	// Each poster sends numbered deltas to its own message in its session
	// and keeps the ones answered 202: those must survive.
	acked := make([][]string, posters)
	var mu sync.Mutex // guards acked
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: posters}, Timeout: 10 * time.Second}
	ctx, stop := context.WithCancel(e.ctx)
	var wg sync.WaitGroup
	for w := range posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := w % sessions
			u := e.c.Base() + "/sessions/" + url.PathEscape(ids[s]) + "/events"
			for i := 0; ctx.Err() == nil; i++ {
				delta := fmt.Sprintf("p%d-%d ", w, i)
				body, _ := json.Marshal(map[string]any{"type": "text_delta", "id": fmt.Sprint("m", w), "delta": delta})
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
				if err != nil {
					return
				}
				req.Header.Set("Authorization", "Bearer "+tokens[s])
				req.Header.Set(protocol.HeaderInstance, "poster-"+ids[s])
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					return // the kill: this one's outcome is unknown
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					return
				}
				mu.Lock()
				acked[w] = append(acked[w], delta)
				mu.Unlock()
			}
		}()
	}
	// Let the load run, then kill mid-flight.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := total(acked)
		mu.Unlock()
		if n >= 2000 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.srv.Kill()
	stop()
	wg.Wait()
	if total(acked) < 500 {
		t.Fatalf("test setup: only %d events were acknowledged before the kill", total(acked))
	}
	if err := e.srv.Restart(e.ctx); err != nil {
		t.Fatal(err)
	}

	for s, id := range ids {
		log := exportLog(t, e, id)
		// Every acknowledged delta is in the log, in its poster's order.
		byPoster := map[string][]string{}
		evs := make([]protocol.Event, len(log))
		for i, le := range log {
			if err := json.Unmarshal(le.Event, &evs[i]); err != nil {
				t.Fatalf("%s: stored event %d: %v", id, le.Pos, err)
			}
			byPoster[evs[i].ID] = append(byPoster[evs[i].ID], evs[i].Delta)
		}
		for w := s; w < posters; w += sessions {
			got, want := byPoster[fmt.Sprint("m", w)], acked[w]
			if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
				t.Fatalf("%s: poster %d had %d deltas acknowledged; the log holds %d, and not those first", id, w, len(want), len(got))
			}
			if len(got) > len(want)+1 {
				t.Fatalf("%s: poster %d: the log holds %d deltas; it sent at most %d", id, w, len(got), len(want)+1)
			}
		}
		// The artifacts are the fold of the log, and the follower has them.
		want, _ := json.Marshal(reducer.Fold(evs).Artifacts())
		arts := e.assertModelMatchesServer(follow[s], id)
		got, _ := json.Marshal(arts)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: GET /artifacts is not the fold of the log:\n%s\nwant\n%s", id, got, want)
		}
	}
}

func total(acked [][]string) int {
	n := 0
	for _, a := range acked {
		n += len(a)
	}
	return n
}

// exportLog reads session id's whole event log (GET /sessions/:id/events).
func exportLog(t *testing.T, e *env, id string) []protocol.LoggedEvent {
	t.Helper()
	var out []protocol.LoggedEvent
	for after := int64(0); ; {
		page, err := e.c.EventLog(e.ctx, id, after, 5000)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Events...)
		if page.Next == nil {
			return out
		}
		after = *page.Next
	}
}
