package e2e

import (
	"context"
	"strings"
	"testing"
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
