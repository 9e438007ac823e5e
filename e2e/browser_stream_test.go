package e2e

import (
	"context"
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
	p, err := NewProxy(strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	b, step := e.signedIn(chromium, driver, p.URL())
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
