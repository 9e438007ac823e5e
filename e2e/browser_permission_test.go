package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// A permission request answered from elsewhere (the API here; `rein inbox
// approve`, another tab or the Needs-you card alike) is shown answered on
// the session page, with the command that answered it, in place of its
// buttons: until its agent takes the answer the request still waits, and
// a click would only get a 409. That holds for the page open as the
// answer is stored, for a page opened after it, across the network
// failing meanwhile, and after the token form.
func TestBrowserSessionPageShowsAnAnswerFromElsewhere(t *testing.T) {
	chromium, driver := browserPaths(t)
	// The fake sandbox sends no heartbeats: the session must stay live.
	e := newEnv(t, "--heartbeat-timeout", "10m")
	id := "asked"
	e.create(id, "")
	e.askPermission(id, "t1", "perm-1", "May I restart the database?")
	e.holdCommands(id)
	p, b, step := e.signedInThroughProxy(chromium, driver)
	art := func(req, sel string) string { return fmt.Sprintf(`#transcript [data-id=%q] %s`, req, sel) }
	// answered waits until request req shows text and no button.
	answered := func(ctx context.Context, req, text string) error {
		return b.WaitJS(ctx, req+" answered", `const el = document.querySelector(arguments[0]);
			return !!el && !el.querySelector("button") && el.querySelector(".perm-answered")?.textContent === arguments[1];`,
			fmt.Sprintf(`#transcript [data-id=%q]`, req), text)
	}

	step("the request's buttons", func(ctx context.Context) error {
		if err := b.Navigate(ctx, p.URL()+"/#/s/"+id); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, art("perm-1", "button.approve"), "Approve"); err != nil {
			return err
		}
		return b.WaitTextIs(ctx, "#conn", "live")
	})
	one, err := e.c.AnswerPermission(e.ctx, id, "perm-1", "allow")
	if err != nil {
		t.Fatal(err)
	}
	want1 := fmt.Sprintf("answered: Allow (command %d), waiting for the agent", one)
	step("answered while the page is open", func(ctx context.Context) error {
		return answered(ctx, "perm-1", want1)
	})

	// Answered while the network is down: the page's streams resume.
	e.sandboxPost(id, map[string]any{"type": "permission_requested", "id": "perm-2", "title": "And the cache?", "options": []map[string]any{
		{"id": "allow", "name": "Allow", "kind": "allow_once"}, {"id": "deny", "name": "Deny", "kind": "reject_once"},
	}})
	step("the second request's buttons", func(ctx context.Context) error {
		return b.WaitTextIs(ctx, art("perm-2", "button.deny"), "Deny")
	})
	p.Cut()
	step("the page notices", func(ctx context.Context) error {
		return b.WaitTextIs(ctx, "#conn", "reconnecting…")
	})
	two, err := e.c.CancelPermission(e.ctx, id, "perm-2")
	if err != nil {
		t.Fatal(err)
	}
	want2 := fmt.Sprintf("answered: dismissed (command %d), waiting for the agent", two)
	p.Restore()
	step("answered while the network was down", func(ctx context.Context) error {
		if err := answered(ctx, "perm-2", want2); err != nil {
			return err
		}
		return answered(ctx, "perm-1", want1)
	})

	step("a page opened after the answers", func(ctx context.Context) error {
		if err := b.Navigate(ctx, "about:blank"); err != nil {
			return err
		}
		if err := b.Navigate(ctx, p.URL()+"/#/s/"+id); err != nil {
			return err
		}
		if err := answered(ctx, "perm-1", want1); err != nil {
			return err
		}
		return answered(ctx, "perm-2", want2)
	})

	step("after the token form", func(ctx context.Context) error {
		if err := b.Click(ctx, "#forget"); err != nil {
			return err
		}
		if err := b.Type(ctx, "#token-input", clientToken); err != nil {
			return err
		}
		if err := b.Click(ctx, "#token-submit"); err != nil {
			return err
		}
		if err := answered(ctx, "perm-1", want1); err != nil {
			return err
		}
		if err := answered(ctx, "perm-2", want2); err != nil {
			return err
		}
		// Still waiting for the agent, as the artifact says.
		return b.WaitTextIs(ctx, art("perm-1", ".perm-head .pill"), "answered")
	})

	// The agent takes the answers: the outcome replaces the note.
	e.sandboxPost(id,
		map[string]any{"type": "permission_resolved", "id": "perm-1", "outcome": "selected", "optionId": "allow"},
		map[string]any{"type": "permission_resolved", "id": "perm-2", "outcome": "cancelled"},
	)
	step("resolved", func(ctx context.Context) error {
		if err := b.WaitTextIs(ctx, art("perm-1", ".perm-result"), "Approved: Allow"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, art("perm-2", ".perm-result"), "Dismissed"); err != nil {
			return err
		}
		return b.WaitJS(ctx, "no answer notes", `return !document.querySelector("#transcript .perm-answered");`)
	})
}

// The Needs-you card answers the request it shows, or none. Its agent
// withdraws the request and asks another under the same id while the
// page has not heard of it yet (the network holds the page's streams), and
// the user clicks Allow on what the page shows: the answer names the
// request's seq, so the server refuses it (the card says why) instead of
// allowing the request nobody saw, which gets buttons of its own.
func TestBrowserInboxAnswersOnlyTheRequestShown(t *testing.T) {
	chromium, driver := browserPaths(t)
	e := newEnv(t, "--heartbeat-timeout", "10m")
	id := "reused"
	e.create(id, "")
	e.askPermission(id, "t1", "perm-1", "May I read the logs?")
	e.holdCommands(id)
	p, b, step := e.signedInThroughProxy(chromium, driver)
	row := fmt.Sprintf(`#inbox-list li[data-session=%q][data-request="perm-1"]`, id)
	step("the request in the inbox", func(ctx context.Context) error {
		return b.WaitTextIs(ctx, row+` button[data-kind="allow_once"]`, "Allow")
	})
	p.Pause()
	e.sandboxPost(id,
		map[string]any{"type": "permission_resolved", "id": "perm-1", "outcome": "cancelled"},
		map[string]any{"type": "turn_completed", "turnId": "t1", "stopReason": "cancelled"},
	)
	e.askPermission(id, "t2", "perm-1", "May I drop the database?")
	step("Allow on the request the page shows", func(ctx context.Context) error {
		if err := b.Click(ctx, row+` button[data-kind="allow_once"]`); err != nil {
			return err
		}
		return b.WaitJS(ctx, "the buttons disabled", `return !!document.querySelector(arguments[0] + ' button[disabled]');`, row)
	})
	p.Restore()
	step("refused, and the new request has its buttons", func(ctx context.Context) error {
		if _, err := b.WaitText(ctx, "#inbox-error", "the server's refusal", func(s string) bool {
			return strings.Contains(s, "requestSeq") && strings.Contains(s, "May I drop the database?") && strings.Contains(s, "(conflict)")
		}); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, row+" .inbox-title", "May I drop the database?"); err != nil {
			return err
		}
		return b.WaitTextIs(ctx, row+` button[data-kind="allow_once"]`, "Allow")
	})
	if rec, err := e.c.Session(e.ctx, id); err != nil || rec.PendingCommands != 0 {
		t.Fatalf("session %s: %+v (%v); want no answer stored", id, rec, err)
	}
}

// An answer on its way keeps its request's buttons disabled wherever the
// request is drawn, for as long as the send takes: the Needs-you card
// draws its list again (every few seconds, on every change of the inbox),
// the session page draws the request again, and a page built anew after
// navigating draws it from scratch. Buttons drawn enabled meanwhile would
// let a second click send a second answer, which the server refuses.
// Each session gets one answer.
func TestBrowserAnswerOnItsWayKeepsButtonsDisabled(t *testing.T) {
	chromium, driver := browserPaths(t)
	e := newEnv(t, "--heartbeat-timeout", "10m")
	for _, id := range []string{"from-inbox", "from-page"} {
		e.create(id, "")
		e.askPermission(id, "t1", "perm-1", "May I restart "+id+"?")
		e.holdCommands(id)
	}
	d, _ := dropAnswers(t, e.srv.URL)
	b, step := e.signedIn(chromium, driver, d.URL())
	row := func(id string) string {
		return fmt.Sprintf(`#inbox-list li[data-session=%q][data-request="perm-1"]`, id)
	}
	card := `#transcript [data-id="perm-1"]`
	// sendingIn reports whether every button under css is disabled and the
	// one for option busy, with what the page says of it (what).
	sendingIn := func(ctx context.Context, css, option, what string) error {
		var got string
		if err := b.Eval(ctx, &got, `const el = document.querySelector(arguments[0]);
			if (!el) return "no " + arguments[0];
			const bs = [...el.querySelectorAll("button")];
			return bs.map(b => b.dataset.option + (b.disabled ? ":disabled" : ":enabled") + (b.classList.contains("busy") ? ":busy" : "")).join(" ") +
				" | " + (el.querySelector(arguments[1])?.textContent ?? "");`, css, ".inbox-sending"); err != nil {
			return err
		}
		want := fmt.Sprintf("%s:disabled:busy deny:disabled | %s", option, what)
		if got != want {
			return fmt.Errorf("%s: buttons %q; want %q", css, got, want)
		}
		return nil
	}
	waitArrived := func(ctx context.Context, arrived <-chan struct{}) error {
		select {
		case <-arrived:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("the answer never reached the proxy: %w", ctx.Err())
		}
	}

	step("the inbox's buttons", func(ctx context.Context) error {
		return b.WaitTextIs(ctx, row("from-inbox")+` button[data-kind="allow_once"]`, "Allow")
	})
	arrived, release := d.HoldNext()
	t.Cleanup(release)
	step("Allow in the inbox, held on its way", func(ctx context.Context) error {
		if err := b.Click(ctx, row("from-inbox")+` button[data-kind="allow_once"]`); err != nil {
			return err
		}
		return waitArrived(ctx, arrived)
	})
	step("the inbox drawn again", func(ctx context.Context) error {
		// A request of another session joins the list: the card draws
		// every row again.
		e.create("later", "")
		e.askPermission("later", "t1", "perm-1", "And later?")
		if err := b.WaitTextIs(ctx, row("later")+` button[data-kind="allow_once"]`, "Allow"); err != nil {
			return err
		}
		return sendingIn(ctx, row("from-inbox"), "allow", "sending…")
	})
	step("the session page of the request on its way", func(ctx context.Context) error {
		if err := b.Click(ctx, row("from-inbox")+" a.inbox-session"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, card+" button.approve", "Approve"); err != nil {
			return err
		}
		return sendingIn(ctx, card, "allow", "")
	})

	arrived2, release2 := d.HoldNext()
	t.Cleanup(release2)
	step("Approve on a session page, held on its way", func(ctx context.Context) error {
		if err := b.Navigate(ctx, d.URL()+"/#/s/from-page"); err != nil {
			return err
		}
		if err := b.Click(ctx, card+" button.approve"); err != nil {
			return err
		}
		return waitArrived(ctx, arrived2)
	})
	step("the inbox, and the session page built anew", func(ctx context.Context) error {
		if err := b.Navigate(ctx, d.URL()+"/#/"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, row("later")+` button[data-kind="allow_once"]`, "Allow"); err != nil {
			return err
		}
		if err := sendingIn(ctx, row("from-page"), "allow", "sending…"); err != nil {
			return err
		}
		if err := b.Navigate(ctx, d.URL()+"/#/s/from-page"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, card+" button.approve", "Approve"); err != nil {
			return err
		}
		return sendingIn(ctx, card, "allow", "")
	})

	release()
	release2()
	step("both answers stored, once each", func(ctx context.Context) error {
		if err := b.WaitJS(ctx, "the answer in place of the buttons", `const el = document.querySelector(arguments[0]);
			return !!el && !el.querySelector("button") && el.querySelector(".perm-answered")?.textContent === "answered: Allow (command 1), waiting for the agent";`, card); err != nil {
			return err
		}
		if err := b.Navigate(ctx, d.URL()+"/#/"); err != nil {
			return err
		}
		for _, id := range []string{"from-inbox", "from-page"} {
			if err := b.WaitTextIs(ctx, row(id)+" .inbox-done", "answered: Allow, waiting for the agent"); err != nil {
				return err
			}
		}
		return b.WaitTextIs(ctx, "#inbox-error", "")
	})
	for _, id := range []string{"from-inbox", "from-page"} {
		if rec, err := e.c.Session(e.ctx, id); err != nil || rec.PendingCommands != 1 {
			t.Errorf("session %s: %+v (%v); want one answer stored", id, rec, err)
		}
	}
	if seen := d.Seen(); len(seen) != 2 || seen[0].Status != 202 || seen[1].Status != 202 {
		t.Errorf("answers sent: %+v; want two, each accepted", seen)
	}
}
