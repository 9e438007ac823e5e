package e2e

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// eventsHold is a reverse proxy in front of rein-server that, while held,
// answers agentd's event posts 503 without passing them on: the events
// stay in agentd's outbox, unknown to the server. Everything else, the
// command stream included, passes through.
type eventsHold struct {
	srv  *httptest.Server
	held atomic.Bool
}

func newEventsHold(t *testing.T, target string) *eventsHold {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	h := &eventsHold{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.held.Load() && r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/events") {
			http.Error(w, "held by the test", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		// The command stream never ends by itself.
		h.srv.CloseClientConnections()
		h.srv.Close()
	})
	return h
}

// pendingPermission returns the pending permission titled title, nil when
// there is none.
func pendingPermission(arts []*protocol.Artifact, title string) *protocol.Artifact {
	for _, a := range arts {
		if a.Type == protocol.ArtifactPermission && a.String("title") == title && a.String("status") == "pending" {
			return a
		}
	}
	return nil
}

// An answer applies only to the request its sender saw, also when the
// agent resolved that request and asked a new one under the same id while
// agentd could not post either event: the server, which knows only the
// first request, accepts the answer, and agentd, which holds the second,
// must not hand it to the agent. The demo agent counts its ids from 1 in
// each process, so a restarted one asks "perm-1" again.
func TestPermissionAnswerReachesOnlyTheRequestAnswered(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	const id = "answerid"
	e.create(id, "")
	f := Follow(e.ctx, e.c, id)
	t.Cleanup(f.Close)
	hold := newEventsHold(t, e.srv.URL)
	d := e.agentd(hold.srv.URL, id, nil, nil)
	e.waitIdle(id)

	e.prompt(id, "ask: first")
	var first *protocol.Artifact
	if err := f.WaitFor(e.ctx, `the request "first"`, func(arts []*protocol.Artifact) bool {
		first = pendingPermission(arts, "first")
		return first != nil
	}); err != nil {
		t.Fatal(err)
	}

	// From here on the server hears nothing of the agent: the abort
	// resolves "first", the agent exits and its successor asks "perm-1"
	// again, titled "second".
	hold.held.Store(true)
	if _, err := e.c.Command(e.ctx, id, protocol.Command{Type: protocol.CommandAbort}); err != nil {
		t.Fatal(err)
	}
	e.prompt(id, "exit: 3")
	e.prompt(id, "ask: second")
	if _, err := d.WaitLines(e.ctx, `msg="agent started"`, 2); err != nil {
		t.Fatal(err)
	}

	// The server still has "first" waiting: the answer to it is accepted.
	answer := protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: first.ID, OptionID: "allow", RequestSeq: first.Seq}
	if _, err := e.c.Command(e.ctx, id, answer); err != nil {
		t.Fatalf("answer to %q: %v", first.ID, err)
	}
	hold.held.Store(false)

	// agentd says the answer was not given to the agent, and "second"
	// waits for its own.
	var second *protocol.Artifact
	if err := f.WaitFor(e.ctx, `the answer's fate and the request "second"`, func(arts []*protocol.Artifact) bool {
		for _, a := range arts {
			if a.Type == protocol.ArtifactPermission && a.String("title") == "second" && a.String("status") != "pending" {
				return true // the answer reached it: checked below
			}
		}
		second = pendingPermission(arts, "second")
		for _, a := range arts {
			if a.Type == protocol.ArtifactNotice && a.String("code") == "permission_answer_not_applied" {
				return second != nil
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	if second == nil {
		t.Fatalf("the answer to %q (seq %d) decided the request asked after it under the same id:\n%s",
			first.ID, first.Seq, strings.Join(render(f.Artifacts()), "\n"))
	}

	// The request the user sees now takes its own answer.
	answer.RequestSeq = second.Seq
	if _, err := e.c.Command(e.ctx, id, answer); err != nil {
		t.Fatalf("answer to %q (seq %d): %v", second.ID, second.Seq, err)
	}
	waitTurns(t, e.ctx, f, 3)
	arts := e.assertModelMatchesServer(f, id)
	// Where the notice lands depends on whether the answer reached
	// agentd before or after the new agent asked "second".
	var notices []string
	var rest []*protocol.Artifact
	for _, a := range arts {
		if a.Type == protocol.ArtifactNotice && a.String("code") == "permission_answer_not_applied" {
			notices = append(notices, a.String("level")+": "+a.String("message"))
			continue
		}
		rest = append(rest, a)
	}
	want := `warning: agentd: the answer to permission request "perm-1" (command 5) was not given to the agent: the request it answers no longer waits for an answer`
	if len(notices) != 1 || !strings.HasPrefix(notices[0], want) {
		t.Errorf("notices %q; want one starting %q", notices, want)
	}
	wantTranscript(t, id, rest, []string{
		"turn cancelled cancelled",
		"user: ask: first",
		`permission cancelled "first" option=`,
		"turn failed error",
		"user: exit: 3",
		"notice error: agent exited (code 3)",
		"turn completed end_turn",
		"user: ask: second",
		`permission approved "second" option=allow`,
		"text done: Permission granted.",
	})
}
