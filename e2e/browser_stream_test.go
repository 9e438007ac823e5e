package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/server/client"
)

// The network between the web view and the server fails for a while, and
// a session is deleted meanwhile. The session stream has no ids: the page
// reconnects to a fresh snapshot, which no longer holds the session, and
// the list must not keep showing it.
func TestBrowserListDropsASessionRemovedWhileAway(t *testing.T) {
	chromium, driver := browserPaths(t)
	e := newEnv(t)
	e.create("stays", "")
	e.create("goes", "")
	p, b, step := e.signedInThroughProxy(chromium, driver)
	rows := `return [...document.querySelectorAll("#session-rows tr")].map(r => r.dataset.id).join(",") === arguments[0];`
	step("both listed", func(ctx context.Context) error {
		return b.WaitJS(ctx, "goes and stays listed", rows, "goes,stays")
	})
	p.Cut()
	step("the page notices", func(ctx context.Context) error {
		return b.WaitTextIs(ctx, "#conn", "reconnecting…")
	})
	if err := e.c.DeleteSession(e.ctx, "goes"); err != nil {
		t.Fatal(err)
	}
	e.create("arrived", "")
	p.Restore()
	step("the list as the server has it", func(ctx context.Context) error {
		if err := b.WaitJS(ctx, "arrived listed", `return !!document.querySelector('#session-rows tr[data-id="arrived"]');`); err != nil {
			return err
		}
		return b.WaitJS(ctx, "arrived and stays listed, goes gone", rows, "arrived,stays")
	})
}

// With authentication off (the loopback default) the page opens streams
// without a ticket. A session deleted while its page is open ends its
// stream, and the reconnect is a 404, which EventSource does not retry:
// the page must say the session is gone, not try again forever.
func TestBrowserWithoutAuthSaysADeletedSessionIsGone(t *testing.T) {
	chromium, driver := browserPaths(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := StartServer(ctx, t.Logf, ServerConfig{Bin: bins.Server, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop(15 * time.Second) })
	c, err := client.New(srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSession(ctx, "doomed", ""); err != nil {
		t.Fatal(err)
	}
	b, err := StartBrowser(ctx, t.Logf, BrowserConfig{Chromium: chromium, Chromedriver: driver, ProfileDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	step := func(name string, f func(ctx context.Context) error) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		if err := f(sctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	step("open the session", func(ctx context.Context) error {
		if err := b.Navigate(ctx, srv.URL+"/#/s/doomed"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, "#session-status", "bootstrapping"); err != nil {
			return err
		}
		return b.WaitTextIs(ctx, "#conn", "live")
	})
	if err := c.DeleteSession(ctx, "doomed"); err != nil {
		t.Fatal(err)
	}
	step("the page says it is gone", func(ctx context.Context) error {
		if err := b.WaitTextIs(ctx, "#composer-error", "Session doomed does not exist (any more)."); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, "#conn", "gone"); err != nil {
			return err
		}
		return b.WaitJS(ctx, "Send disabled", `return document.querySelector("#send").disabled;`)
	})
	step("a session that never existed", func(ctx context.Context) error {
		if err := b.Navigate(ctx, srv.URL+"/#/s/never"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, "#composer-error", "Session never does not exist (any more)."); err != nil {
			return err
		}
		return b.WaitTextIs(ctx, "#conn", "gone")
	})
}

// A long transcript is shown in a time that grows with its length, not
// its square: the page reads the transcript's layout (to follow its end)
// at most once per frame, not after every event. Reading it after each
// event made the browser lay the whole transcript out again each time: a
// replay of 4,800 artifacts took 30 s, and every streamed delta cost a
// layout of all of it. The test counts reads of the transcript's
// scrollHeight against the frames drawn meanwhile (no timing).
func TestBrowserLongTranscriptLaysOutOncePerFrame(t *testing.T) {
	chromium, driver := browserPaths(t)
	e := newEnv(t)
	id := "long"
	e.create(id, "")
	const turns = 300
	for i := 0; i < turns; i += 50 {
		var evs []map[string]any
		for j := i; j < i+50; j++ {
			tid := fmt.Sprintf("t%d", j)
			evs = append(evs,
				map[string]any{"type": "turn_started", "turnId": tid, "source": "user"},
				map[string]any{"type": "user_message", "id": "u" + tid, "text": "prompt " + tid},
				map[string]any{"type": "text_delta", "id": "m" + tid, "delta": "Some **Markdown** for " + tid},
				map[string]any{"type": "tool_call_start", "id": "tool" + tid, "name": "shell", "kind": "execute", "title": "ls"},
				map[string]any{"type": "tool_output_delta", "id": "tool" + tid, "delta": strings.Repeat("a line of output\n", 20)},
				map[string]any{"type": "tool_call_end", "id": "tool" + tid, "status": "completed", "exitCode": 0},
				map[string]any{"type": "turn_completed", "turnId": tid, "stopReason": "end_turn"},
			)
		}
		e.sandboxPost(id, evs...)
	}
	b, step := e.signedIn(chromium, driver, e.srv.URL)
	// Counted from before the session page exists: a hash change does
	// not reload the page.
	const count = `
		const d = Object.getOwnPropertyDescriptor(Element.prototype, "scrollHeight");
		window.__reads = 0;
		window.__frames = 0;
		Object.defineProperty(Element.prototype, "scrollHeight", {configurable: true, get() {
			if (this.classList.contains("scroller")) window.__reads++;
			return d.get.call(this);
		}});
		const frame = () => { window.__frames++; requestAnimationFrame(frame); };
		requestAnimationFrame(frame);`
	wantFew := func(ctx context.Context, what string) error {
		var got struct{ Reads, Frames int }
		if err := b.Eval(ctx, &got, `return {reads: window.__reads, frames: window.__frames};`); err != nil {
			return err
		}
		t.Logf("%s: %d reads of the transcript's scrollHeight in %d frames", what, got.Reads, got.Frames)
		if got.Reads > 2*got.Frames+10 {
			return fmt.Errorf("%s: %d reads of the transcript's layout in %d frames; want at most about one per frame", what, got.Reads, got.Frames)
		}
		return nil
	}
	step("the replay", func(ctx context.Context) error {
		if err := b.WaitJS(ctx, "the list", `return !!document.querySelector('#session-rows tr[data-id="long"]');`); err != nil {
			return err
		}
		if err := b.Eval(ctx, nil, count+`location.hash = "#/s/long";`); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "every artifact shown", `return document.querySelectorAll("#transcript > [data-seq]").length === arguments[0];`, turns*4); err != nil {
			return err
		}
		return wantFew(ctx, "replay")
	})
	step("following the end while text streams", func(ctx context.Context) error {
		if err := b.WaitJS(ctx, "at the end", `const s = document.querySelector(".scroller"); return s.scrollHeight - s.scrollTop - s.clientHeight < 80;`); err != nil {
			return err
		}
		if err := b.Eval(ctx, nil, `window.__reads = 0; window.__frames = 0;`); err != nil {
			return err
		}
		e.sandboxPost(id, map[string]any{"type": "turn_started", "turnId": "live", "source": "user"})
		for i := 0; i < 100; i++ {
			e.sandboxPost(id, map[string]any{"type": "tool_output_delta", "id": "tool-live", "delta": fmt.Sprintf("line %d\n", i)})
		}
		if err := b.WaitTextIs(ctx, `#transcript [data-id="tool-live"] .tool-output`, func() string {
			var s strings.Builder
			for i := 0; i < 100; i++ {
				fmt.Fprintf(&s, "line %d\n", i)
			}
			return s.String()
		}()); err != nil {
			return err
		}
		if err := wantFew(ctx, "streaming"); err != nil {
			return err
		}
		return b.WaitJS(ctx, "still at the end", `const s = document.querySelector(".scroller"); return s.scrollHeight - s.scrollTop - s.clientHeight < 80;`)
	})
	step("a reader scrolled up stays put", func(ctx context.Context) error {
		if err := b.Eval(ctx, nil, `document.querySelector(".scroller").scrollTop = 0;`); err != nil {
			return err
		}
		e.sandboxPost(id, map[string]any{"type": "tool_output_delta", "id": "tool-live", "delta": "one more\n"})
		if _, err := b.WaitText(ctx, `#transcript [data-id="tool-live"] .tool-output`, "one more line", func(s string) bool { return strings.HasSuffix(s, "one more\n") }); err != nil {
			return err
		}
		// Two frames: the one after the change has run.
		var top int
		if err := b.Eval(ctx, nil, `await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));`); err != nil {
			return err
		}
		if err := b.Eval(ctx, &top, `return document.querySelector(".scroller").scrollTop;`); err != nil {
			return err
		}
		if top != 0 {
			return fmt.Errorf("scrollTop %d after a change; want 0: the reader was moved", top)
		}
		return nil
	})
}

// The session list is drawn once for a connection's whole snapshot, not
// once per session in it: redrawing every row for each of n sessions cost
// n² rows (a list of 1,000 sessions took 55 s to show). The test counts
// the redraws of the table's rows (no timing).
func TestBrowserListDrawsASnapshotOnce(t *testing.T) {
	chromium, driver := browserPaths(t)
	e := newEnv(t)
	const n = 200
	for i := range n {
		if _, err := e.c.CreateSession(e.ctx, fmt.Sprintf("s-%03d", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	b, ctx := e.atTokenForm(chromium, driver, e.srv.URL+"/")
	// Counted from before the list exists: signing in does not reload
	// the page.
	if err := b.Eval(ctx, nil, `window.__draws = 0;
		new MutationObserver((records) => {
			for (const r of records) if (r.target.id === "session-rows") window.__draws++;
		}).observe(document.querySelector("#app"), {childList: true, subtree: true});`); err != nil {
		t.Fatal(err)
	}
	if err := b.Type(ctx, "#token-input", clientToken); err != nil {
		t.Fatal(err)
	}
	if err := b.Click(ctx, "#token-submit"); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitTextIs(ctx, "#session-count", fmt.Sprintf("%d of %d", n, n)); err != nil {
		t.Fatal(err)
	}
	var draws int
	if err := b.Eval(ctx, &draws, `return window.__draws;`); err != nil {
		t.Fatal(err)
	}
	if draws > 5 {
		t.Fatalf("the rows were drawn %d times for a snapshot of %d sessions; want once or so", draws, n)
	}
}

// The network between a session's page and the server fails, and the
// session is deleted and created again under its id meanwhile, the new
// one passing the old one's revision. The page's EventSource reconnects
// by itself with Last-Event-ID, and the page cannot read
// Rein-Session-Created on that reconnection: resumed, it kept the old
// session's text under the new session's changes. The stream ticket in
// its URL names the session it followed, the server refuses it, and the
// page opens the new session afresh.
func TestBrowserSessionCreatedAgainWhileAway(t *testing.T) {
	w := createdAgainWhileAway(t, "again", "the old session's words")
	e, p, b, step, transcript := w.e, w.p, w.b, w.step, w.transcript
	e.sandboxPost(w.id, textDelta(1, "new one "), textDelta(2, "new two "), textDelta(3, "new three"))
	p.Restore()
	step("the new session, and nothing of the old", func(ctx context.Context) error {
		if err := b.WaitJS(ctx, "the new words shown", transcript, "new three"); err != nil {
			return err
		}
		return b.WaitJS(ctx, "the old words gone, the new session's first message shown",
			`const t = document.querySelector("#transcript").textContent; return !t.includes("the old session's words") && t.includes("new one");`)
	})
}

// A replay cut before its snapshot_complete is not resumed: EventSource
// would reconnect with the id of the last snapshot it got, and a replay
// that was full (a new EventSource's, here after the session was deleted
// and created again) would go on as a partial one, whose end drops
// nothing. The page held the old session's five messages, the new session
// has two, and the old session's last three stayed on screen as the new
// session's. The page starts such a stream afresh instead.
func TestBrowserReplayCutBeforeItsEndStartsAfresh(t *testing.T) {
	id := "cut"
	w := createdAgainWhileAway(t, id, "old message 1", "old message 2", "old message 3", "old message 4", "old message 5")
	e, p, b, step, transcript := w.e, w.p, w.b, w.step, w.transcript
	// The second message is long, so the replay takes several reads: the
	// first message's snapshot reaches the page before the cut.
	e.sandboxPost(id, textDelta(1, "new message one"))
	e.sandboxPost(id, textDelta(2, "new message two "+strings.Repeat("x", 200<<10)))
	// The new EventSource's request (the first without Last-Event-ID) is
	// the one whose replay breaks.
	p.BreakBefore(func(sent []byte) bool {
		return bytes.Contains(sent, []byte("GET /sessions/"+id+"/stream")) && !bytes.Contains(bytes.ToLower(sent), []byte("last-event-id"))
	}, "event: snapshot_complete")
	p.Restore()
	step("the new session's two messages, and nothing of the old", func(ctx context.Context) error {
		if err := b.WaitJS(ctx, "the new messages shown", transcript, "new message two"); err != nil {
			return err
		}
		return b.WaitJS(ctx, "no old message left, the page live",
			`return !document.querySelector("#transcript").textContent.includes("old message") && document.querySelector("#conn").textContent === "live";`)
	})
}

// Durations shown on the page (a tool call's, a turn's) never read "60 s"
// in a place a minute is due: 119.5 s read "1 min 60 s".
func TestBrowserDurations(t *testing.T) {
	chromium, driver := browserPaths(t)
	e := newEnv(t)
	b := e.browser(chromium, driver)
	if err := b.Navigate(e.ctx, e.srv.URL+"/"); err != nil {
		t.Fatal(err)
	}
	ms := []int{0, 999, 1000, 59_940, 59_950, 60_000, 119_499, 119_500, 119_999, 3_599_600}
	want := []string{"0 ms", "999 ms", "1.0 s", "59.9 s", "1 min 0 s", "1 min 0 s", "1 min 59 s", "2 min 0 s", "2 min 0 s", "60 min 0 s"}
	var got []string
	if err := b.Eval(e.ctx, &got, `return arguments[0].map(fmtDuration);`, ms); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("fmtDuration(%v) = %q; want %q", ms, got, want)
	}
}

// textDelta is a text_delta event of message m<seq>.
func textDelta(seq int, s string) map[string]any {
	return map[string]any{"type": "text_delta", "id": fmt.Sprintf("m%d", seq), "delta": s}
}

// awayPage is a session's page in a browser whose link to the server (p)
// is cut, while the session was deleted and created again (empty).
type awayPage struct {
	e          *env
	id         string
	p          *Proxy
	b          *Browser
	step       func(string, func(context.Context) error)
	transcript string // JS: whether the transcript holds arguments[0]
}

// createdAgainWhileAway creates session id with one message per text,
// shows it in a signed-in browser through a proxy, cuts the proxy, and
// deletes the session and creates it again; the test then gives the new
// session its events and restores the link.
func createdAgainWhileAway(t *testing.T, id string, texts ...string) awayPage {
	chromium, driver := browserPaths(t)
	e := newEnv(t)
	e.create(id, "")
	for i, s := range texts {
		e.sandboxPost(id, textDelta(i+1, s))
	}
	p, b, step := e.signedInThroughProxy(chromium, driver)
	w := awayPage{e: e, id: id, p: p, b: b, step: step,
		transcript: `return document.querySelector("#transcript").textContent.includes(arguments[0]);`}
	step("the old session", func(ctx context.Context) error {
		if err := b.Navigate(ctx, p.URL()+"/#/s/"+id); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "the old messages shown", w.transcript, texts[len(texts)-1]); err != nil {
			return err
		}
		return b.WaitTextIs(ctx, "#conn", "live")
	})
	p.Cut()
	step("the page notices", func(ctx context.Context) error {
		return b.WaitTextIs(ctx, "#conn", "reconnecting…")
	})
	if err := e.c.DeleteSession(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	e.create(id, "")
	return w
}
