package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
)

// A session at one of its caps still takes the events that keep what its
// transcript says true (a turn's end, the agent's exit, a permission
// request and its answer, a tool call's end, notices) within a reserve
// past the cap, while the agent's output is refused; past the reserve
// everything is. The same on a state folded again and after a restart,
// whose counts come from the stored log.
func TestCapReserveKeepsTheTranscriptTrue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts app.Options
		flag string
		// fill is content that grows the session towards the cap.
		fill func(i int) string
		// within says whether the session is within the cap plus its
		// reserve.
		within func(t *testing.T, s *app.App) bool
	}{
		{
			name: "bytes",
			opts: app.Options{MaxSessionBytes: 2000},
			flag: "cap of 2000 (--max-session-bytes)",
			fill: func(int) string { return `{"type":"text_delta","delta":"` + strings.Repeat("x", 400) + `"}` },
			// The reserve of a cap under 1 MiB is the cap itself.
			within: func(t *testing.T, s *app.App) bool { return storedBytes(t, s, "a") <= 4000 },
		},
		{
			name: "artifacts",
			opts: app.Options{MaxArtifactsPerSession: 5},
			flag: "cap of 5 (--max-artifacts-per-session)",
			fill: func(i int) string {
				return fmt.Sprintf(`{"type":"file_changed","path":"f%d","change":"add"}`, i)
			},
			// The reserve of a cap under 100 artifacts is the cap itself.
			within: func(t *testing.T, s *app.App) bool {
				arts, err := s.Artifacts(context.Background(), "a")
				if err != nil {
					t.Fatal(err)
				}
				return len(arts) <= 10
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := freshDB(t)
			opts := tc.opts
			opts.DBPath = db
			s := start(t, opts)
			c := newClient(t, s)
			c.create("a")
			// A sandbox holds the command stream, so the session's
			// status follows its turns.
			st := c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
			c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `[{"type":"turn_started","turnId":"t1","source":"user"},{"type":"user_message","text":"hi"}]`)
			refused := false
			for i := range 20 {
				got, e, _ := c.status("POST", "/sessions/a/events", tc.fill(i))
				if got == http.StatusRequestEntityTooLarge {
					if !strings.Contains(e.Message, tc.flag) {
						t.Fatalf("413 message %q; want it to name %q", e.Message, tc.flag)
					}
					refused = true
					break
				}
				if got != http.StatusAccepted {
					t.Fatalf("fill %d: status %d %+v", i, got, e)
				}
			}
			if !refused {
				t.Fatal("the session never reached its cap")
			}
			content := []badInput{
				{name: "text past the cap", body: `{"type":"text_delta","delta":"more"}`, status: 413, field: tc.flag},
				{name: "a tool call's input past the cap", body: `{"type":"tool_call_start","id":"c2","name":"shell","input":{"command":"ls"}}`, status: 413, field: tc.flag},
			}
			checkBad(t, c, s, "a", "POST", "/sessions/a/events", content)

			// What the agent does next still shows: it asks, is
			// answered, ends its tool call and its turn, and exits.
			for _, body := range []string{
				`{"type":"permission_requested","id":"p1","title":"Run ls?","options":[{"id":"allow","name":"Allow","kind":"allow_once"}]}`,
				`{"type":"permission_resolved","id":"p1","outcome":"selected","optionId":"allow"}`,
				`{"type":"tool_call_end","id":"c1","status":"completed"}`,
				`{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}`,
				`{"type":"agent_exited","code":0}`,
			} {
				c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", body)
			}
			waitStatus(t, c, "a", protocol.StatusIdle)
			checkReserved := func(when string) {
				t.Helper()
				status := map[string]any{}
				for _, a := range c.artifactsOf("a") {
					status[fmt.Sprint(a["type"], " ", a["id"])] = a["status"]
				}
				if status["turn t1"] != "completed" || status["permission p1"] != "approved" || status["tool_call c1"] != "completed" {
					t.Fatalf("%s: artifact statuses %v; want turn t1 completed, permission p1 approved, tool_call c1 completed", when, status)
				}
			}
			checkReserved("past the cap")
			checkBad(t, c, s, "a", "POST", "/sessions/a/events", content)

			// A state folded again and a restarted server count the same.
			server.DropState(s.Server, "a")
			checkBad(t, c, s, "a", "POST", "/sessions/a/events", content)
			st.close()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = start(t, opts)
			c = newClient(t, s)
			checkReserved("after a restart")
			checkBad(t, c, s, "a", "POST", "/sessions/a/events", content)

			// The reserve ends too: past it, nothing is taken, not even
			// a turn's end.
			filled := false
			for i := range 100 {
				got, e, _ := c.status("POST", "/sessions/a/events", fmt.Sprintf(`{"type":"notice","level":"warning","message":"%d %s"}`, i, strings.Repeat("n", 300)))
				if got == http.StatusRequestEntityTooLarge {
					if !strings.Contains(e.Message, tc.flag) || !strings.Contains(e.Message, "reserve") {
						t.Fatalf("413 past the reserve: %q; want it to name %q and the reserve", e.Message, tc.flag)
					}
					filled = true
					break
				}
				if got != http.StatusAccepted {
					t.Fatalf("notice %d: status %d %+v", i, got, e)
				}
			}
			if !filled {
				t.Fatal("the reserve never filled")
			}
			if !tc.within(t, s) {
				t.Fatal("the session is past its cap and reserve")
			}
			checkBad(t, c, s, "a", "POST", "/sessions/a/events", []badInput{
				{name: "a turn past the reserve", body: `{"type":"turn_started","turnId":"t2","source":"user"}`, status: 413, field: tc.flag},
				{name: "a notice past the reserve", body: `{"type":"notice","level":"info","message":"x"}`, status: 413, field: tc.flag},
			})
			c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `{"type":"heartbeat"}`)
		})
	}
}

// The byte reserve is exact, and as exact on a state folded from the
// stored log: an event that takes the log to the cap plus its reserve is
// taken, one byte more is not.
func TestCapReserveIsExact(t *testing.T) {
	t.Parallel()
	db := freshDB(t)
	opts := app.Options{DBPath: db, MaxSessionBytes: 2000}
	s := start(t, opts)
	c := newClient(t, s)
	c.create("a")
	const limit = 4000 // the cap and its reserve (the cap, under 1 MiB)
	notice := func(size int64) string {
		// size is the stored size: the body as sent and its receivedAt.
		pre, post := `{"type":"notice","level":"info","message":"`, `"}`
		overhead := len(pre) + len(post) + len(`,"receivedAt":`) + 13
		return pre + strings.Repeat("m", int(size)-overhead) + post
	}
	for storedBytes(t, s, "a") < 3000 {
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", notice(500))
	}
	server.DropState(s.Server, "a")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = start(t, opts)
	c = newClient(t, s)
	gap := limit - storedBytes(t, s, "a")
	checkBad(t, c, s, "a", "POST", "/sessions/a/events", []badInput{{name: "a byte past the reserve", body: notice(gap + 1), status: 413, field: "--max-session-bytes"}})
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", notice(gap))
	if n := storedBytes(t, s, "a"); n != limit {
		t.Fatalf("stored %d bytes; want exactly %d", n, limit)
	}
}

// storedBytes is the size of a session's stored event log.
func storedBytes(t testing.TB, s *app.App, id string) int64 {
	t.Helper()
	evs, err := s.Store().Events(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range evs {
		n += int64(len(e.Body))
	}
	return n
}

// An event that creates no artifact (a turn's end, a permission's
// resolution, usage) counted one against --max-artifacts-per-session:
// with the reserve full to its last artifact, the turn's end was refused
// and the turn said running for ever. It counts none now; a notice, which
// creates one, is still refused there.
func TestCapReserveTakesAnEndAtItsLastArtifact(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{MaxArtifactsPerSession: 5})
	c := newClient(t, s)
	c.create("a")
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	// The turn and its prompt, then notices up to the cap and its
	// reserve (5 more): 10 artifacts.
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `[{"type":"turn_started","turnId":"t1","source":"user"},{"type":"user_message","text":"hi"}]`)
	for i := range 8 {
		c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", fmt.Sprintf(`{"type":"notice","level":"info","message":"n%d"}`, i))
	}
	c.wantError(http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, "POST", "/sessions/a/events", `{"type":"notice","level":"info","message":"one too many"}`)
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", `[{"type":"usage_updated","usage":{"inputTokens":3}},{"type":"turn_completed","turnId":"t1","stopReason":"end_turn"}]`)
	var turns []protocol.Turn
	c.must(http.StatusOK, &turns, "GET", "/sessions/a/turns", nil)
	if len(turns) != 1 || turns[0].Status != "completed" {
		t.Fatalf("turns %+v; want t1 completed", turns)
	}
}
