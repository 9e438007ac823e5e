package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/client"
)

// wantOneCommandSent checks what the AnswerDropper saw of one command
// sent by a client whose first `dropped` answers were lost: every send
// carried the same Idempotency-Key, the server answered each 202, and the
// last got through.
func wantOneCommandSent(t *testing.T, seen []Dropped, dropped int) {
	t.Helper()
	if len(seen) < dropped+1 {
		t.Fatalf("command sends seen: %+v; want at least %d (%d answers lost, then one that got through)", seen, dropped+1, dropped)
	}
	for i, s := range seen {
		if s.Key == "" || s.Key != seen[0].Key || s.Status != 202 || s.Dropped != (i < dropped) {
			t.Fatalf("command sends seen: %+v; want one Idempotency-Key, every answer 202, the first %d lost", seen, dropped)
		}
	}
}

// wantPromptsRan checks the session's transcript: these prompts, each
// run once, in this order, each in its own turn.
func (e *env) wantPromptsRan(f *Follower, id string, prompts ...string) {
	e.t.Helper()
	waitTurns(e.t, e.ctx, f, len(prompts))
	e.waitNoPending(id)
	arts := e.assertModelMatchesServer(f, id)
	var got []string
	turns := 0
	for _, a := range arts {
		switch a.Type {
		case protocol.ArtifactUserMessage:
			got = append(got, a.String("text"))
		case protocol.ArtifactTurn:
			turns++
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(prompts) || turns != len(prompts) {
		e.t.Fatalf("prompts ran: %q in %d turns; want %q, once each:\n%s", got, turns, prompts, strings.Join(render(arts), "\n"))
	}
}

// dropAnswers puts an AnswerDropper of command answers in front of
// target until the test ends, and returns it with a client of it.
func dropAnswers(t *testing.T, target string) (*AnswerDropper, *client.Client) {
	t.Helper()
	d, err := NewAnswerDropper(target, CommandPosts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	c, err := client.New(d.URL(), clientToken)
	if err != nil {
		t.Fatal(err)
	}
	return d, c
}

// The answers to a prompt are lost twice on the way back, after the
// server stored it: the product's client sends it again with its
// Idempotency-Key, gets the stored command's id, and the agent runs the
// prompt once.
func TestLostAnswerPromptRunsOnce(t *testing.T) {
	e := newEnv(t)
	id := "lost-answer"
	_, f := e.session(id)
	d, c := dropAnswers(t, e.srv.URL)
	var resends []string
	c.OnRetry = func(err error, wait time.Duration) { resends = append(resends, fmt.Sprintf("%v after %v", wait, err)) }

	d.DropNext(2)
	n, err := c.Prompt(e.ctx, id, "only once")
	if err != nil || n != 1 {
		t.Fatalf("prompt whose answers were lost: id %d, %v; want command 1", n, err)
	}
	wantOneCommandSent(t, d.Seen(), 2)
	t.Logf("resends the client reported: %q (net/http may resend some itself)", resends)
	e.prompt(id, "next")
	e.wantPromptsRan(f, id, "only once", "next")
}

// signedIn starts Chromium on base's web view, signed in with the client
// token, and returns it with a step runner that gives each wait its own
// deadline (so a failure names the step that hung).
func (e *env) signedIn(chromium, driver, base string) (*Browser, func(string, func(context.Context) error)) {
	e.t.Helper()
	b := e.browser(chromium, driver)
	step := func(name string, f func(ctx context.Context) error) {
		e.t.Helper()
		ctx, cancel := context.WithTimeout(e.ctx, 90*time.Second)
		defer cancel()
		if err := f(ctx); err != nil {
			e.t.Fatalf("%s: %v", name, err)
		}
	}
	step("sign in", func(ctx context.Context) error {
		if err := b.Navigate(ctx, base+"/"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, "#token-form h1", "Connect to rein-server"); err != nil {
			return err
		}
		if err := b.Type(ctx, "#token-input", clientToken); err != nil {
			return err
		}
		return b.Click(ctx, "#token-submit")
	})
	return b, step
}

// signedInThroughProxy puts a Proxy in front of the env's server, as the
// network a test cuts and restores, and signs a browser in through it.
func (e *env) signedInThroughProxy(chromium, driver string) (*Proxy, *Browser, func(string, func(context.Context) error)) {
	e.t.Helper()
	p, err := NewProxy(strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(p.Close)
	b, step := e.signedIn(chromium, driver, p.URL())
	return p, b, step
}

// The web view sends a prompt whose answer is lost after the server stored
// it: the page sends it again with the same Idempotency-Key, clears the
// prompt box, and the agent runs the prompt once.
func TestBrowserResendsALostPrompt(t *testing.T) {
	resendsOnce(t, "web-lost", "from a flaky network", func(d *AnswerDropper) { d.DropNext(1) })
}

// The answer to a prompt breaks off after its status and headers (the
// server stored it; the body never arrives): the page cannot tell, so it
// sends it again with the same Idempotency-Key, clears the prompt box,
// and the agent runs the prompt once.
func TestBrowserResendsAPromptWhoseAnswerBroke(t *testing.T) {
	resendsOnce(t, "web-broken", "over a link that fails", func(d *AnswerDropper) { d.BreakNext(1) })
}

// resendsOnce opens session id's page through an AnswerDropper, has lose
// make it lose the next prompt's answer, sends text from the page, and
// wants the prompt box cleared and no error shown, one command sent
// (resends carry its key) and the agent to run it once.
func resendsOnce(t *testing.T, id, text string, lose func(*AnswerDropper)) {
	t.Helper()
	chromium, driver := browserPaths(t)
	e := newEnv(t)
	_, f := e.session(id)
	d, _ := dropAnswers(t, e.srv.URL)
	b, step := e.signedIn(chromium, driver, d.URL())
	step("open the session", func(ctx context.Context) error {
		if err := b.Navigate(ctx, d.URL()+"/#/s/"+id); err != nil {
			return err
		}
		return b.WaitTextIs(ctx, "#session-status", "idle")
	})
	lose(d)
	step("send a prompt whose answer is lost", func(ctx context.Context) error {
		if err := b.Type(ctx, "#prompt", text+"\uE007"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, `#transcript [data-id="t1"] .pill`, "completed"); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "prompt box cleared", `return document.querySelector("#prompt").value === "";`); err != nil {
			return err
		}
		return b.WaitTextIs(ctx, "#composer-error", "")
	})
	wantOneCommandSent(t, d.Seen(), 1)
	e.prompt(id, "next")
	e.wantPromptsRan(f, id, text, "next")
}

// Every answer to a prompt is lost, the page's resends' too, after the
// server stored it: the page says it cannot reach the server and keeps
// the prompt in its box. Sending it again (Enter) is the same prompt sent
// again, not a second one: it goes with the same Idempotency-Key, the
// server answers with the stored command, and the agent runs it once.
func TestBrowserSendAgainAfterLostAnswersSendsOnce(t *testing.T) {
	chromium, driver := browserPaths(t)
	e := newEnv(t)
	id := "web-send-again"
	_, f := e.session(id)
	d, _ := dropAnswers(t, e.srv.URL)
	b, step := e.signedIn(chromium, driver, d.URL())
	step("open the session", func(ctx context.Context) error {
		if err := b.Navigate(ctx, d.URL()+"/#/s/"+id); err != nil {
			return err
		}
		return b.WaitTextIs(ctx, "#session-status", "idle")
	})
	// Every answer is lost until the page gives up: the page sends five
	// times, and Chromium itself may send a request again on a new
	// connection when one closes without an answer.
	d.DropNext(1000)
	step("send a prompt whose every answer is lost", func(ctx context.Context) error {
		if err := b.Type(ctx, "#prompt", "through a dead link\uE007"); err != nil {
			return err
		}
		if _, err := b.WaitText(ctx, "#composer-error", "the page giving up", func(s string) bool {
			return strings.HasPrefix(s, "cannot reach the server") && strings.HasSuffix(s, "(network)")
		}); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "Send enabled, the prompt kept", `return !document.querySelector("#send").disabled && document.querySelector("#prompt").value === arguments[0];`, "through a dead link"); err != nil {
			return err
		}
		// It was stored: the agent runs it.
		return b.WaitTextIs(ctx, `#transcript [data-id="t1"] .pill`, "completed")
	})
	lost := len(d.Seen())
	d.DropNext(0)
	step("send it again", func(ctx context.Context) error {
		if err := b.Type(ctx, "#prompt", "\uE007"); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "prompt box cleared", `return document.querySelector("#prompt").value === "";`); err != nil {
			return err
		}
		return b.WaitTextIs(ctx, "#composer-error", "")
	})
	wantOneCommandSent(t, d.Seen(), lost)
	e.prompt(id, "next")
	e.wantPromptsRan(f, id, "through a dead link", "next")
}

// A session whose create answer was lost has a sandbox token nobody holds:
// creating it again from the web view is a conflict, and the page offers a
// new token. Taking it shows the connect card with the new token, the old
// one is refused, and the pasted command connects a sandbox.
func TestBrowserNewTokenForALostCreate(t *testing.T) {
	chromium, driver := browserPaths(t)
	e := newEnv(t)
	id := "lost-create"
	e.create(id, "") // its token stands for the one in the lost answer
	old, err := os.ReadFile(e.tokens[id])
	if err != nil {
		t.Fatal(err)
	}
	b, step := e.signedIn(chromium, driver, e.srv.URL)
	step("create it again: a conflict, and the offer", func(ctx context.Context) error {
		if err := b.Click(ctx, "#new-session"); err != nil {
			return err
		}
		if err := b.Type(ctx, "#new-id", id); err != nil {
			return err
		}
		if err := b.Click(ctx, "#new-submit"); err != nil {
			return err
		}
		if _, err := b.WaitText(ctx, "#new-error", "the conflict", func(s string) bool { return strings.HasSuffix(s, "(conflict)") }); err != nil {
			return err
		}
		_, err := b.WaitText(ctx, "#new-rotate-row", "the offer of a new token", func(s string) bool {
			return strings.Contains(s, "do not have its sandbox token") && strings.Contains(s, "An agentd using its current token stops.")
		})
		return err
	})
	screenshot(t, e.ctx, b, "web-view-new-token-offer.png")
	var command string
	step("take a new token", func(ctx context.Context) error {
		if err := b.Click(ctx, "#new-rotate"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, "#connect h2", "Session "+id+": a new sandbox token"); err != nil {
			return err
		}
		var err error
		command, _, err = b.Text(ctx, "#connect-command")
		return err
	})
	if code, err := postAs(e.ctx, e.srv.URL, id, strings.TrimSpace(string(old)), "i-old", `{"type":"heartbeat"}`); code != protocol.CodeUnauthorized {
		t.Fatalf("the lost token after the new one: %v, %v; want unauthorized", code, err)
	}
	e.runConnectCommand(command, t.TempDir())
	e.waitIdle(id)
}

// Enter pressed again while a prompt is on its way (a slow answer, or the
// page resending it) must not send it a second time: the agent runs the
// prompt once. The two key presses are dispatched in one script, so the
// second comes before any answer to the first.
func TestBrowserEnterTwiceSendsOnce(t *testing.T) {
	chromium, driver := browserPaths(t)
	e := newEnv(t)
	id := "web-twice"
	_, f := e.session(id)
	b, step := e.signedIn(chromium, driver, e.srv.URL)
	step("open the session", func(ctx context.Context) error {
		if err := b.Navigate(ctx, e.srv.URL+"/#/s/"+id); err != nil {
			return err
		}
		return b.WaitTextIs(ctx, "#session-status", "idle")
	})
	step("Enter, Enter", func(ctx context.Context) error {
		if err := b.Eval(ctx, nil, `const p = document.querySelector("#prompt");
			p.value = "only once";
			for (let i = 0; i < 2; i++) p.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter", bubbles: true, cancelable: true}));`); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, `#transcript [data-id="t1"] .pill`, "completed"); err != nil {
			return err
		}
		return b.WaitJS(ctx, "prompt box cleared", `return document.querySelector("#prompt").value === "";`)
	})
	e.prompt(id, "next")
	e.wantPromptsRan(f, id, "only once", "next")
}

// The server comes back with another client token while a prompt is being
// written: the page asks for the token again, and once it has it, the
// prompt box still holds what was typed.
func TestBrowserKeepsADraftAcrossTheTokenForm(t *testing.T) {
	chromium, driver := browserPaths(t)
	e := newEnv(t)
	id := "web-draft"
	e.create(id, "")
	b, step := e.signedIn(chromium, driver, e.srv.URL)
	step("write a prompt", func(ctx context.Context) error {
		if err := b.Navigate(ctx, e.srv.URL+"/#/s/"+id); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, "#session-status", "bootstrapping"); err != nil {
			return err
		}
		return b.Type(ctx, "#prompt", "a long prompt, half written")
	})
	const rotated = "e2e-client-token-rotated-0123456789"
	e.srv.Stop(15 * time.Second)
	if err := os.WriteFile(filepath.Join(e.dir, "api-token"), []byte(rotated+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Restart(e.ctx); err != nil {
		t.Fatal(err)
	}
	step("the token form, then the session again", func(ctx context.Context) error {
		if err := b.WaitTextIs(ctx, "#token-error", "The server did not accept that token."); err != nil {
			return err
		}
		if err := b.Type(ctx, "#token-input", rotated); err != nil {
			return err
		}
		if err := b.Click(ctx, "#token-submit"); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, "#session-status", "bootstrapping"); err != nil {
			return err
		}
		return b.WaitJS(ctx, "the draft in the prompt box", `return document.querySelector("#prompt").value === arguments[0];`, "a long prompt, half written")
	})
}

// browser starts a headless browser for the test, closed at its end.
func (e *env) browser(chromium, driver string) *Browser {
	e.t.Helper()
	b, err := StartBrowser(e.ctx, e.t.Logf, BrowserConfig{Chromium: chromium, Chromedriver: driver, ProfileDir: e.t.TempDir()})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(b.Close)
	return b
}

// atTokenForm starts a browser on page and waits for the token form; ctx
// bounds the test's further steps.
func (e *env) atTokenForm(chromium, driver, page string) (b *Browser, ctx context.Context) {
	e.t.Helper()
	b = e.browser(chromium, driver)
	ctx, cancel := context.WithTimeout(e.ctx, 90*time.Second)
	e.t.Cleanup(cancel)
	if err := b.Navigate(ctx, page); err != nil {
		e.t.Fatal(err)
	}
	if err := b.WaitTextIs(ctx, "#token-form h1", "Connect to rein-server"); err != nil {
		e.t.Fatal(err)
	}
	return b, ctx
}

// A sandbox token given to the page as the client token is refused with
// 403 on every request: the page puts the token form up again with the
// server's reason, where it said "Cannot reach rein-server" and offered
// to try the same token again.
func TestBrowserSandboxTokenAsClientToken(t *testing.T) {
	chromium, driver := browserPaths(t)
	e := newEnv(t)
	id := "web-wrong-token"
	e.create(id, "")
	sbx, err := os.ReadFile(e.tokens[id])
	if err != nil {
		t.Fatal(err)
	}
	b, ctx := e.atTokenForm(chromium, driver, e.srv.URL+"/#/s/"+id)
	if err := b.Type(ctx, "#token-input", string(sbx)); err != nil {
		t.Fatal(err)
	}
	if err := b.Click(ctx, "#token-submit"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitText(ctx, "#token-error", "the server's reason", func(s string) bool {
		return strings.Contains(s, "sandbox token may only")
	}); err != nil {
		t.Fatal(err)
	}
}

// A token typed or pasted with a character that is not ASCII is refused
// by the form, saying why: a client token is printable ASCII (rein-server
// refuses any other at start), and a browser cannot send a character past
// U+00FF in a header at all. The page kept it and said "Cannot reach
// rein-server" on every try, offering to try the same token again.
func TestBrowserTokenThatIsNotASCII(t *testing.T) {
	chromium, driver := browserPaths(t)
	e := newEnv(t)
	b, ctx := e.atTokenForm(chromium, driver, e.srv.URL+"/")
	if err := b.Type(ctx, "#token-input", clientToken+"中"); err != nil {
		t.Fatal(err)
	}
	if err := b.Click(ctx, "#token-submit"); err != nil {
		t.Fatal(err)
	}
	// Whichever the page says: the form's error, or the card that
	// replaces it.
	if err := b.WaitJS(ctx, "the token form's error or the boot error", `
		const e = document.querySelector("#token-error"), h = document.querySelector("#app h1");
		return !!(e && e.textContent) || !!(h && h.textContent !== "Connect to rein-server");`); err != nil {
		t.Fatal(err)
	}
	var got struct{ Title, Error string }
	if err := b.Eval(ctx, &got, `return {Title: document.querySelector("#app h1")?.textContent || "", Error: document.querySelector("#token-error")?.textContent || ""};`); err != nil {
		t.Fatal(err)
	}
	if got.Title != "Connect to rein-server" || !strings.Contains(got.Error, "printable ASCII") {
		t.Fatalf("after a token with a CJK character: heading %q, error %q; want the token form saying a client token is printable ASCII", got.Title, got.Error)
	}
	// The right token then gets in.
	if err := b.Eval(ctx, nil, `document.querySelector("#token-input").value = "";`); err != nil {
		t.Fatal(err)
	}
	if err := b.Type(ctx, "#token-input", clientToken); err != nil {
		t.Fatal(err)
	}
	if err := b.Click(ctx, "#token-submit"); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitTextIs(ctx, "#conn", "live"); err != nil {
		t.Fatal(err)
	}
}

// A prompt sent from the web view while no sandbox holds the session is
// refused (409 no_sandbox), and the server's message says to send it with
// "queue": true. The page offers that: the prompt stays in the box and
// "Queue it" sends it queued, with the Idempotency-Key the refused send
// carried (the refusal stored nothing under it). The queued send's answer
// is lost; its resend carries the same key, so the prompt is stored once,
// and the agent that connects runs it once.
func TestBrowserQueuesAPromptRefusedForWantOfASandbox(t *testing.T) {
	chromium, driver := browserPaths(t)
	e := newEnv(t)
	id := "web-queue"
	e.create(id, "")
	d, _ := dropAnswers(t, e.srv.URL)
	b, step := e.signedIn(chromium, driver, d.URL())
	text := "for when a sandbox connects"
	step("send a prompt with no sandbox connected", func(ctx context.Context) error {
		if err := b.Navigate(ctx, d.URL()+"/#/s/"+id); err != nil {
			return err
		}
		if err := b.WaitTextIs(ctx, "#conn", "live"); err != nil {
			return err
		}
		if err := b.Type(ctx, "#prompt", text+"\uE007"); err != nil {
			return err
		}
		if _, err := b.WaitText(ctx, "#composer-error", "the refusal", func(s string) bool {
			return strings.HasPrefix(s, "No sandbox is connected to this session")
		}); err != nil {
			return err
		}
		return b.WaitJS(ctx, "the offer, the prompt kept", `return !document.querySelector("#queue-offer").hidden && document.querySelector("#prompt").value === arguments[0];`, text)
	})
	d.DropNext(1)
	step("queue it", func(ctx context.Context) error {
		if err := b.Click(ctx, "#queue-prompt"); err != nil {
			return err
		}
		if err := b.WaitJS(ctx, "prompt box cleared, the offer gone", `return document.querySelector("#prompt").value === "" && document.querySelector("#queue-offer").hidden;`); err != nil {
			return err
		}
		return b.WaitTextIs(ctx, "#composer-error", "")
	})
	seen := d.Seen()
	if len(seen) < 3 || seen[0].Status != 409 || seen[0].Dropped {
		t.Fatalf("command sends seen: %+v; want the refusal (409), then the queued send (its answer lost) and its resend", seen)
	}
	for _, s := range seen {
		if s.Key == "" || s.Key != seen[0].Key {
			t.Fatalf("command sends seen: %+v; want every one with the refused send's Idempotency-Key", seen)
		}
	}
	wantOneCommandSent(t, seen[1:], 1)
	if rec, err := e.c.Session(e.ctx, id); err != nil || rec.PendingCommands != 1 {
		t.Fatalf("session %s: %+v (%v); want the prompt queued once", id, rec, err)
	}
	f := Follow(e.ctx, e.c, id)
	defer f.Close()
	e.agentd(e.srv.URL, id, nil, nil)
	e.wantPromptsRan(f, id, text)
}
