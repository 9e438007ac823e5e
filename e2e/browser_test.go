package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/server/client"
)

// browserPaths returns Chromium and chromedriver, from REIN_CHROMIUM and
// REIN_CHROMEDRIVER or Debian's paths; the test is skipped, saying how to
// install them, only when they are not there.
func browserPaths(t *testing.T) (chromium, driver string) {
	t.Helper()
	find := func(env, def, name string) string {
		if p := os.Getenv(env); p != "" {
			return p
		}
		if _, err := os.Stat(def); err == nil {
			return def
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		return def
	}
	chromium = find("REIN_CHROMIUM", "/usr/bin/chromium", "chromium")
	driver = find("REIN_CHROMEDRIVER", "/usr/bin/chromedriver", "chromedriver")
	for _, p := range []string{chromium, driver} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("SKIP browser test: %s is not installed (%v). Run `make browser-deps` (Debian: apt-get install chromium chromium-driver) or set REIN_CHROMIUM and REIN_CHROMEDRIVER.", p, err)
		}
	}
	return chromium, driver
}

// screenshotDir is where the test's screenshots go: REIN_SCREENSHOT_DIR,
// else e2e/testdata/screenshots (not committed).
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("REIN_SCREENSHOT_DIR")
	if dir == "" {
		dir = filepath.Join("testdata", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func screenshot(t *testing.T, ctx context.Context, b *Browser, name string) string {
	t.Helper()
	png, err := b.Screenshot(ctx)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(screenshotDir(t), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(p)
	t.Logf("screenshot: %s (%d bytes)", abs, len(png))
	return p
}

// TestBrowser drives the web view in headless Chromium against the real
// server (authentication on), agentd and demo-agent: the token form, the
// live session list and its project filter, a session created from the
// page and connected with the exact command it shows, "needs you" badges
// for sessions waiting on a permission request, hostile Markdown and HTML
// in every rendered field, then a session: a prompt streamed back as
// Markdown, a real command as a tool call, a permission approved with its
// button, a slow turn aborted, the page following the server across a
// restart (which voids its stream tickets), and a session deleted after
// a confirmation.
func TestBrowser(t *testing.T) {
	chromium, driver := browserPaths(t)
	// Sessions with a fake sandbox send no heartbeats: they must stay live
	// for as long as the test looks at them.
	e := newEnv(t, "--heartbeat-timeout", "10m")
	ctx := e.ctx
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// step gives each wait its own deadline, so a failure says which step
	// hung instead of eating the whole test's time. The deadline is
	// generous: a step may include a server restart and agentd's backoff
	// before it reconnects, which took more than 30 s on a machine
	// loaded to 15 runnable threads per core.
	step := func(name string, f func(ctx context.Context) error) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		if err := f(sctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}

	e.create("web-1", "demo")
	e.agentd(e.srv.URL, "web-1", nil, nil)
	e.waitIdle("web-1")
	e.create("api-7", "backend") // no agentd: stays bootstrapping

	b, err := StartBrowser(ctx, t.Logf, BrowserConfig{Chromium: chromium, Chromedriver: driver, ProfileDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)

	// The page asks for the client token: auth is on.
	must(b.Navigate(ctx, e.srv.URL+"/"))
	step("token form", func(ctx context.Context) error {
		if err := b.WaitTextIs(ctx, "#token-form h1", "Connect to rein-server"); err != nil {
			return err
		}
		if err := b.Type(ctx, "#token-input", "not-the-token"); err != nil {
			return err
		}
		if err := b.Click(ctx, "#token-submit"); err != nil {
			return err
		}
		return b.WaitTextIs(ctx, "#token-error", "The server did not accept that token.")
	})
	step("sign in", func(ctx context.Context) error {
		if err := b.Type(ctx, "#token-input", clientToken); err != nil {
			return err
		}
		return b.Click(ctx, "#token-submit")
	})

	// An invalid id in the URL is refused by the page, before any request:
	// fetch would resolve "/sessions/.." away and post to another route.
	step("invalid session id in the URL", func(ctx context.Context) error {
		if err := b.Navigate(ctx, e.srv.URL+"/#/s/.."); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, "#bad-id-reason", "A session id may not be made only of dots."); err != nil {
			return err
		}
		return b.Navigate(ctx, e.srv.URL+"/#/")
	})

	// The session list, live from the session stream.
	row := func(id, col string) string { return fmt.Sprintf(`#session-rows tr[data-id=%q] td.%s`, id, col) }
	step("session list", func(ctx context.Context) error {
		for _, c := range [][3]string{
			{"web-1", "status", "idle"}, {"web-1", "project", "demo"}, {"web-1", "summary", "no prompt yet"},
			{"api-7", "status", "bootstrapping"}, {"api-7", "project", "backend"},
		} {
			if err := b.WaitTextIs(ctx, row(c[0], c[1]), c[2]); err != nil {
				return err
			}
		}
		return b.WaitTextIs(ctx, "#session-count", "2 of 2")
	})
	rowIDs := `return [...document.querySelectorAll("#session-rows tr")].map(r => r.dataset.id).join(",") === arguments[0];`
	step("project filter", func(ctx context.Context) error {
		if err := b.Click(ctx, `#project-filter option[value="demo"]`); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "only web-1 listed", rowIDs, "web-1"); err != nil {
			return err
		}
		return b.WaitTextIs(ctx, "#session-count", "1 of 2")
	})
	step("list updates live", func(ctx context.Context) error {
		e.create("web-2", "demo")
		if err := b.WaitTextIs(ctx, row("web-2", "status"), "bootstrapping"); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "web-2 listed first (newest)", rowIDs, "web-2,web-1"); err != nil {
			return err
		}
		if err := e.c.DeleteSession(ctx, "web-2"); err != nil {
			return err
		}
		return b.WaitJS(ctx, "web-2 gone", rowIDs, "web-1")
	})

	// A session created from the page, and connected by pasting the
	// command it shows into a shell.
	step("create: bad input", func(ctx context.Context) error {
		if err := b.Click(ctx, "#new-session"); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "project prefilled from the filter", `return document.querySelector("#new-project").value === "demo";`); err != nil {
			return err
		}
		if err := b.Type(ctx, "#new-id", "bad id!"); err != nil {
			return err
		}
		if err := b.Click(ctx, "#new-submit"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, "#new-error", "Session id: 1-128 letters, digits, '.', '_' or '-'."); err != nil {
			return err
		}
		// The server's own refusal is shown with its code.
		if err := b.Eval(ctx, nil, `document.querySelector("#new-id").value = "web-1";`); err != nil {
			return err
		}
		if err := b.Click(ctx, "#new-submit"); err != nil {
			return err
		}
		_, err := b.WaitText(ctx, "#new-error", "the server's conflict", func(s string) bool { return strings.HasSuffix(s, "(conflict)") })
		return err
	})
	var command string
	step("create", func(ctx context.Context) error {
		if err := b.Eval(ctx, nil, `document.querySelector("#new-id").value = "web-new";`); err != nil {
			return err
		}
		if err := b.Click(ctx, "#new-submit"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, `#connect-state[data-state="waiting"]`, "waiting for a sandbox"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, row("web-new", "status"), "bootstrapping"); err != nil {
			return err
		}
		token, _, err := b.Text(ctx, "#connect-token")
		if err != nil {
			return err
		}
		if len(token) != 43 {
			return fmt.Errorf("sandbox token %q: want 43 characters", token)
		}
		command, _, err = b.Text(ctx, "#connect-command")
		if err != nil {
			return err
		}
		want := fmt.Sprintf("(umask 077; echo %s > web-new.token)\nagentd --server %s --session web-new --token-file web-new.token -- YOUR-AGENT", token, e.srv.URL)
		if command != want {
			return fmt.Errorf("command\n%s\nwant\n%s", command, want)
		}
		if _, err := b.WaitText(ctx, "#connect-timeout", "the bootstrap timeout", func(s string) bool {
			return strings.Contains(s, "bootstrap timeout") && strings.Contains(s, "the session is removed")
		}); err != nil {
			return err
		}
		if err := b.Click(ctx, "#copy-command"); err != nil {
			return err
		}
		// Headless Chromium may refuse the clipboard; then the command is
		// selected for Ctrl+C. Either way the user is told.
		return b.WaitJS(ctx, "copy reported", `const b = document.querySelector("#copy-command");
			return b.dataset.copied === "yes" ? b.textContent === "Copied" :
				b.dataset.copied === "selected" && b.textContent === "Selected: press Ctrl+C" && String(getSelection()) === arguments[0];`, command)
	})
	screenshot(t, ctx, b, "web-view-create.png")
	step("connect with the pasted command", func(ctx context.Context) error {
		e.runConnectCommand(command, t.TempDir())
		e.waitIdle("web-new")
		if err := b.WaitTextIs(ctx, `#connect-state[data-state="connected"] .pill`, "idle"); err != nil {
			return err
		}
		return b.WaitTextIs(ctx, "#connect-open", "Open web-new")
	})

	// "Needs you": sessions with a permission request waiting get a badge
	// in the list, whichever session is open or not. Four sessions with a
	// fake sandbox plus web-new: more live sessions than the page watches
	// with streams, so the others are polled.
	needs := func(id string) string { return fmt.Sprintf(`#session-rows tr[data-id=%q] td.status .needs`, id) }
	step("needs you", func(ctx context.Context) error {
		if err := b.Click(ctx, `#project-filter option[value=""]`); err != nil {
			return err
		}
		for i := 1; i <= 4; i++ {
			id := fmt.Sprintf("ops-%d", i)
			e.create(id, "ops")
			e.askPermission(id, "t1", "perm-1", "May I restart the database?")
		}
		e.prompt("web-new", "ask: May I deploy?")
		for _, id := range []string{"ops-1", "ops-2", "ops-3", "ops-4", "web-new"} {
			if err := b.WaitTextIs(ctx, needs(id), "needs you"); err != nil {
				return err
			}
		}
		if err := b.WaitTextIs(ctx, "#needs-summary", "5 sessions need you"); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "title counts them", `return document.title === "(5) Rein";`); err != nil {
			return err
		}
		// A second request in one session counts twice.
		e.sandboxPost("ops-2", map[string]any{"type": "permission_requested", "id": "perm-2", "title": "And the cache?", "options": []map[string]any{{"id": "allow", "name": "Allow", "kind": "allow_once"}}})
		if err := b.WaitTextIs(ctx, needs("ops-2"), "needs you ×2"); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "waiting sessions listed first", `return [...document.querySelectorAll("#session-rows tr")].slice(0, 5).every(r => r.dataset.needs === "yes");`); err != nil {
			return err
		}
		// The "needs you" list (GET /approvals/stream): every request of
		// every session, oldest first, one-time options first.
		if err := b.WaitJS(ctx, "six requests in the inbox", `return [...document.querySelectorAll("#inbox-list li")].map(li => li.dataset.session + "/" + li.dataset.request).join(" ") === arguments[0];`,
			"ops-1/perm-1 ops-2/perm-1 ops-3/perm-1 ops-4/perm-1 web-new/perm-1 ops-2/perm-2"); err != nil {
			return err
		}
		for _, c := range [][2]string{
			{`#inbox-list li[data-session="ops-1"] .inbox-title`, "May I restart the database?"},
			{`#inbox-list li[data-session="web-new"] button[data-kind="allow_once"]`, "Allow"},
			{`#inbox-list li[data-session="web-new"] button[data-kind="reject_once"]`, "Deny"},
		} {
			if err := b.WaitTextIs(ctx, c[0], c[1]); err != nil {
				return err
			}
		}
		return nil
	})
	screenshot(t, ctx, b, "web-view-sessions.png")
	screenshot(t, ctx, b, "inbox.png") // docs/inbox.png
	step("needs you: answered", func(ctx context.Context) error {
		// Answered by another client (another device): until its agent
		// takes the answer the request stays listed, with the answer in
		// place of its buttons, and it no longer counts as needing
		// anyone.
		e.holdCommands("ops-1")
		if _, err := e.c.AnswerPermission(ctx, "ops-1", "perm-1", "allow"); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "the answer in place of ops-1's buttons", `const li = document.querySelector('#inbox-list li[data-session="ops-1"]');
			return !!li && !li.querySelector("button") && li.querySelector(".inbox-done")?.textContent === "answered: Allow, waiting for the agent";`); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "ops-1 not counted", `return !document.querySelector(arguments[0]) && document.title === "(5) Rein" &&
			document.querySelector("#needs-summary").textContent === "4 sessions need you";`, needs("ops-1")); err != nil {
			return err
		}
		// Answered from the inbox (its agent resolves it), resolved by
		// the sandbox, or cancelled with the end of the turn: the badges
		// and the inbox entries go.
		if err := b.Click(ctx, `#inbox-list li[data-session="web-new"] button[data-kind="allow_once"]`); err != nil {
			return err
		}
		for i := 1; i <= 4; i++ {
			id := fmt.Sprintf("ops-%d", i)
			if i%2 == 1 {
				e.sandboxPost(id, map[string]any{"type": "permission_resolved", "id": "perm-1", "outcome": "selected", "optionId": "allow"})
			} else {
				e.sandboxPost(id, map[string]any{"type": "turn_completed", "turnId": "t1", "stopReason": "end_turn"})
			}
		}
		if err := b.WaitJS(ctx, "no badges", `return document.querySelectorAll("#session-rows .needs").length === 0 && document.title === "Rein";`); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "no summary", `return document.querySelector("#needs-summary").hidden;`); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "an empty, hidden inbox", `return document.querySelector("#inbox").hidden && document.querySelectorAll("#inbox-list li").length === 0;`); err != nil {
			return err
		}
		hist, err := e.c.ApprovalHistory(ctx, "", 0)
		if err != nil {
			return err
		}
		for _, d := range hist {
			if d.SessionID == "web-new" && (d.DecidedBy != "client" || d.OptionID != "allow") {
				return fmt.Errorf("web-new's decision %+v; want allow by client", d)
			}
		}
		return nil
	})

	// Hostile Markdown and HTML in every field the page renders.
	step("hostile content", func(ctx context.Context) error {
		e.create("evil", "")
		e.postHostileTranscript("evil")
		must(b.Navigate(ctx, e.srv.URL+"/#/s/evil"))
		rec, err := e.c.Session(ctx, "evil")
		if err != nil || rec.Summary == nil || !strings.HasPrefix(xss, strings.TrimSuffix(*rec.Summary, "…")) {
			return fmt.Errorf("summary of evil: %v, %v", rec.Summary, err)
		}
		summary := *rec.Summary // cut to 80 characters
		art := func(id, sel string) string { return fmt.Sprintf(`#transcript [data-id=%q] %s`, id, sel) }
		for _, c := range [][2]string{
			{"#session-summary", summary},
			{art("u1", ".user-text"), xss + " **not markdown**"},
			{art("m1", ".text h1"), "Heading"},
			{art("m1", ".text strong"), "bold"},
			{art("m1", ".text li:nth-child(2)"), "second <b>not bold</b>"},
			{art("m1", ".text pre code"), "const s = \"<img src=x onerror=alert(1)>\";\n"},
			{art("r1", ".reasoning-text strong"), "bold"},
			{art("tool-read", ".tool-name"), xss},
			{art("tool-read", ".tool-title code"), xss},
			{art("tool-raw", ".tool-input"), "{\n  \"path\": " + jsonString(xss) + "\n}"},
			{art("tool-raw", ".pill"), "completed"},
			{art("tool-raw", ".tool-locations"), "null" + xss + "7"},
			{art("tool-read", ".tool-output"), xss},
			{art("tool-read", ".tool-error"), xss},
			{art("tool-exec", ".tool-title"), xss},
			{art("plan-x", ".plan li:first-child .plan-text strong"), "bold step"},
			{art("plan-x", ".plan li:nth-child(2) .tag"), xss},
			{art("perm-x", ".perm-title"), xss},
			{art("perm-x", ".tool-input"), "{\n  \"cmd\": " + jsonString(xss) + "\n}"},
			{art("perm-x", `button[data-option="always"]`), xss},
			{"#transcript .art-notice .notice-text", xss},
			{"#transcript .art-file_change .tool-title", xss},
		} {
			if err := b.WaitTextIs(ctx, c[0], c[1]); err != nil {
				got, _, _ := b.Text(e.ctx, c[0])
				return fmt.Errorf("%s: %w (text %q)", c[0], err, got)
			}
		}
		// The raw HTML in the Markdown is shown as text.
		if _, err := b.WaitText(ctx, art("m1", ".text"), "the raw HTML as text", func(s string) bool {
			return strings.Contains(s, xss) && strings.Contains(s, `<a href="javascript:window.__pwned='raw'">raw link</a>`) && strings.Contains(s, `<div onmouseover="window.__pwned='block'">block html</div>`)
		}); err != nil {
			return err
		}
		// The links that survive are the two safe ones.
		if err := b.WaitJS(ctx, "only the safe links", `return [...document.querySelectorAll("#transcript a[href]")].map(a => a.getAttribute("href")).join(" ") === arguments[0];`,
			"https://example.com/docs mailto:dev@example.com https://example.com/docs mailto:dev@example.com"); err != nil {
			return err
		}
		// Clicking what was a javascript: link runs nothing.
		if err := b.Eval(ctx, nil, `[...document.querySelectorAll("#transcript a")].find(a => a.textContent === "bad link").click();`); err != nil {
			return err
		}
		if err := assertNothingRan(ctx, b); err != nil {
			return err
		}
		must(b.Navigate(ctx, e.srv.URL+"/#/"))
		if err := b.WaitTextIs(ctx, row("evil", "summary"), summary); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, needs("evil"), "needs you"); err != nil {
			return err
		}
		// The inbox shows the hostile request as text.
		for _, c := range [][2]string{
			{`#inbox-list li[data-session="evil"] .inbox-title`, xss},
			{`#inbox-list li[data-session="evil"] button[data-option="allow"]`, xss},
		} {
			if err := b.WaitTextIs(ctx, c[0], c[1]); err != nil {
				return err
			}
		}
		if err := assertNothingRan(ctx, b); err != nil {
			return err
		}
		// And its turn history: the prompt and tool names as text.
		must(b.Navigate(ctx, e.srv.URL+"/#/s/evil/turns"))
		for _, c := range [][2]string{
			{`#turn-rows tr[data-turn="t1"] td.prompt`, xss + " **not markdown**"},
			{`#turn-rows tr[data-turn="t1"] td.tools code:first-child`, xss},
			{`#turn-rows tr[data-turn="t1"] td.digest`, "running"},
		} {
			if err := b.WaitTextIs(ctx, c[0], c[1]); err != nil {
				return err
			}
		}
		if err := assertNothingRan(ctx, b); err != nil {
			return err
		}
		must(b.Navigate(ctx, e.srv.URL+"/#/"))
		return b.WaitTextIs(ctx, needs("evil"), "needs you")
	})

	// The session page.
	art := func(id, sel string) string { return fmt.Sprintf(`#transcript [data-id=%q] %s`, id, sel) }
	step("open session", func(ctx context.Context) error {
		if err := b.Click(ctx, `#session-rows tr[data-id="web-1"] td.id a`); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, "#session-id", "web-1"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, "#session-status", "idle"); err != nil {
			return err
		}
		return b.WaitTextIs(ctx, "#transcript-empty", "Nothing yet. Send a prompt below.")
	})

	step("prompt streams an answer", func(ctx context.Context) error {
		if err := b.Type(ctx, "#prompt", "hello from the **browser**"); err != nil {
			return err
		}
		if err := b.Click(ctx, "#send"); err != nil {
			return err
		}
		// The prompt is shown as typed; the agent's echo as Markdown.
		for _, c := range [][2]string{
			{art("u1", ".user-text"), "hello from the **browser**"},
			{art("m1", ".text"), "You said: hello from the browser"},
			{art("m1", ".text strong"), "browser"},
			{art("t1", ".pill"), "completed"},
			{"#session-summary", "hello from the **browser**"},
			{"#session-status", "idle"},
		} {
			if err := b.WaitTextIs(ctx, c[0], c[1]); err != nil {
				return err
			}
		}
		return b.WaitJS(ctx, "prompt box cleared", `return document.querySelector("#prompt").value === "";`)
	})

	step("plan", func(ctx context.Context) error {
		if err := b.Type(ctx, "#prompt", "plan: read the code; write the fix; run the tests\uE007"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, art("m2", ".text"), "Plan done."); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, art("plan-2", ".plan-head .muted"), "3/3 done"); err != nil {
			return err
		}
		return b.WaitJS(ctx, "a checklist of three completed entries",
			`return [...document.querySelectorAll(arguments[0])].map(li => li.dataset.status + ":" + li.textContent).join("|") === arguments[1];`,
			art("plan-2", ".plan li"), "completed:read the code|completed:write the fix|completed:run the tests")
	})

	step("tool call", func(ctx context.Context) error {
		// Enter sends, like the Send button.
		if err := b.Type(ctx, "#prompt", "run: echo hi\uE007"); err != nil {
			return err
		}
		for _, c := range [][2]string{
			{art("m3", ".text"), "Running echo hi"},
			{art("m3", ".text code"), "echo hi"}, // Markdown
			{art("tool-3", ".tool-name"), "shell"},
			{art("tool-3", ".tool-title"), "echo hi"},
			{art("tool-3", ".pill"), "completed"},
			{art("tool-3", ".tool-output"), "hi\n"},
			{art("tool-3", ".exit"), "exit 0"},
			{art("m3-2", ".text"), "Exit code 0."},
			{art("t3", ".pill"), "completed"},
		} {
			if err := b.WaitTextIs(ctx, c[0], c[1]); err != nil {
				return err
			}
		}
		return nil
	})

	// Turn history: the three turns so far, each with the digest recorded
	// when it ended.
	step("turn history", func(ctx context.Context) error {
		if err := b.Click(ctx, "#turns-link"); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "three turns", `return document.querySelectorAll("#turn-rows tr").length === 3;`); err != nil {
			return err
		}
		turns, err := e.c.Turns(ctx, "web-1")
		if err != nil || len(turns) != 3 || turns[2].Digest == nil {
			return fmt.Errorf("turns %+v: %v", turns, err)
		}
		for _, c := range [][2]string{
			{`#turn-rows tr[data-turn="t1"] td.prompt`, "hello from the **browser**"},
			{`#turn-rows tr[data-turn="t1"] td.status .pill`, "completed"},
			{`#turn-rows tr[data-turn="t3"] td.tools code`, "shell"},
			{`#turn-rows tr[data-turn="t3"] td.digest`, (*turns[2].Digest)[:12] + "… recorded"},
		} {
			if err := b.WaitTextIs(ctx, c[0], c[1]); err != nil {
				return err
			}
		}
		screenshot(t, ctx, b, "web-view-turns.png")
		must(b.Navigate(ctx, e.srv.URL+"/#/s/web-1"))
		return b.WaitTextIs(ctx, art("t3", ".pill"), "completed")
	})

	step("permission approved", func(ctx context.Context) error {
		if err := b.Type(ctx, "#prompt", "ask: May I deploy to staging?\uE007"); err != nil {
			return err
		}
		for _, c := range [][2]string{
			{art("perm-4", ".perm-title"), "May I deploy to staging?"},
			{art("perm-4", ".pill"), "needs approval"},
			{art("perm-4", "button.approve"), "Approve"},
			{art("perm-4", "button.deny"), "Deny"},
		} {
			if err := b.WaitTextIs(ctx, c[0], c[1]); err != nil {
				return err
			}
		}
		// The picture for the README: a tool call's output and a
		// permission waiting for an answer.
		screenshot(t, ctx, b, "web-view.png")
		if err := b.Click(ctx, art("perm-4", "button.approve")); err != nil {
			return err
		}
		for _, c := range [][2]string{
			{art("perm-4", ".pill"), "approved"},
			{art("perm-4", ".perm-result"), "Approved: Allow"},
			{art("m4", ".text"), "Permission granted."},
			{art("t4", ".pill"), "completed"},
		} {
			if err := b.WaitTextIs(ctx, c[0], c[1]); err != nil {
				return err
			}
		}
		return b.WaitJS(ctx, "buttons gone", `return document.querySelectorAll("#transcript button").length === 0;`)
	})

	step("abort a slow turn", func(ctx context.Context) error {
		if err := b.Type(ctx, "#prompt", "slow: 500\uE007"); err != nil {
			return err
		}
		if _, err := b.WaitText(ctx, art("m5", ".text"), `"w1 w2 w3 …"`, func(s string) bool { return strings.HasPrefix(s, "w1 w2 w3 ") }); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, art("t5", ".pill"), "running"); err != nil {
			return err
		}
		if err := b.Click(ctx, "#abort"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, art("t5", ".pill"), "cancelled"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, art("m5", ".tag"), "interrupted"); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "Abort disabled", `return document.querySelector("#abort").disabled;`); err != nil {
			return err
		}
		text, _, err := b.Text(ctx, art("m5", ".text"))
		if err != nil {
			return err
		}
		if n := len(strings.Fields(text)); n < 3 || n >= 500 || text != words(n)+" " && text != words(n) {
			return fmt.Errorf("interrupted text %q: want the first words of slow: 500", text)
		}
		return b.WaitTextIs(ctx, "#session-status", "idle")
	})
	screenshot(t, ctx, b, "web-view-session.png")

	// A server restart voids every stream ticket: the page's EventSource
	// gets 401 on its reconnect and gives up, and the page must get a new
	// ticket, reopen, and rebuild from the snapshot without doubling
	// anything.
	step("server restart", func(ctx context.Context) error {
		e.srv.Stop(15 * time.Second)
		if err := e.srv.Restart(ctx); err != nil {
			return err
		}
		e.waitSandboxBack("web-1")
		if err := b.WaitTextIs(ctx, "#conn", "live"); err != nil {
			return err
		}
		if err := b.Type(ctx, "#prompt", "still there?\uE007"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, art("m6", ".text"), "You said: still there?"); err != nil {
			return err
		}
		arts, err := e.c.Artifacts(ctx, "web-1")
		if err != nil {
			return err
		}
		var want []string
		for _, a := range arts {
			want = append(want, fmt.Sprint(a.Seq))
		}
		return b.WaitJS(ctx, "one element per artifact, in seq order",
			`return [...document.querySelectorAll("#transcript > [data-seq]")].map(e => e.dataset.seq).join(",") === arguments[0];`, strings.Join(want, ","))
	})

	// Deleting asks first; Cancel keeps the session.
	step("delete", func(ctx context.Context) error {
		must(b.Navigate(ctx, e.srv.URL+"/#/s/evil"))
		if err := b.WaitTextIs(ctx, art("perm-x", ".perm-title"), xss); err != nil {
			return err
		}
		if err := b.Click(ctx, "#delete"); err != nil {
			return err
		}
		if err := b.Click(ctx, "#delete-no"); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "confirmation closed", `return document.querySelector("#delete-confirm").hidden && !document.querySelector("#delete").disabled;`); err != nil {
			return err
		}
		if _, err := e.c.Session(ctx, "evil"); err != nil {
			return fmt.Errorf("after Cancel: %w", err)
		}
		if err := b.Click(ctx, "#delete"); err != nil {
			return err
		}
		if _, err := b.WaitText(ctx, "#delete-confirm", "the question", func(s string) bool { return strings.HasPrefix(s, "Delete session evil? ") }); err != nil {
			return err
		}
		if err := b.Click(ctx, "#delete-yes"); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "back on the list, evil gone", `return location.hash === "#/" && document.querySelector('#session-rows tr[data-id="web-1"]') && !document.querySelector('#session-rows tr[data-id="evil"]');`); err != nil {
			return err
		}
		var he *client.Error
		if _, err := e.c.Session(ctx, "evil"); !errors.As(err, &he) || he.Status != 404 {
			return fmt.Errorf("GET /sessions/evil after Delete: %v; want 404", err)
		}
		return nil
	})

	// make web-screenshot refreshes the README's pictures from this run.
	if docs := os.Getenv("REIN_DOCS_SCREENSHOT"); docs != "" {
		for from, to := range map[string]string{"web-view.png": docs, "web-view-sessions.png": strings.TrimSuffix(docs, ".png") + "-sessions.png",
			"inbox.png": filepath.Join(filepath.Dir(docs), "inbox.png")} {
			png, err := os.ReadFile(filepath.Join(screenshotDir(t), from))
			must(err)
			must(os.MkdirAll(filepath.Dir(to), 0o755))
			must(os.WriteFile(to, png, 0o644))
			t.Logf("screenshot copied to %s", to)
		}
	}
}
