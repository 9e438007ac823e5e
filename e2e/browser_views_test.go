package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// sandboxPost posts events to session id the way its sandbox does, with
// the session's sandbox token, but without agentd: the browser test uses
// it to put exactly the content it wants (hostile text, waiting
// permission requests) into a transcript.
func (e *env) sandboxPost(id string, events ...map[string]any) {
	e.t.Helper()
	tok, err := os.ReadFile(e.tokens[id])
	if err != nil {
		e.t.Fatalf("sandbox token of %s: %v", id, err)
	}
	// The sandbox's credential, not the client's: a plain request.
	if err := postOne(e.ctx, e.c.Base(), strings.TrimSpace(string(tok)), "fake-"+id, id, events...); err != nil {
		e.t.Fatalf("post events to %s: %v", id, err)
	}
}

// holdCommands opens session id's command stream as its sandbox would
// (the instance sandboxPost posts as), so commands to it are stored; the
// stream closes when the test ends.
func (e *env) holdCommands(id string) {
	e.t.Helper()
	tok, err := os.ReadFile(e.tokens[id])
	if err != nil {
		e.t.Fatalf("sandbox token of %s: %v", id, err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.c.Base()+"/sessions/"+url.PathEscape(id)+"/commands", nil)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	req.Header.Set("Rein-Instance", "fake-"+id)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		e.t.Fatalf("command stream of %s: %v", id, err)
	}
	e.t.Cleanup(func() { cancel(); res.Body.Close() })
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("command stream of %s: %s", id, res.Status)
	}
}

// askPermission starts a turn in session id and has it wait on a
// permission request, as a sandbox would.
func (e *env) askPermission(id, turn, request, title string) {
	e.t.Helper()
	e.sandboxPost(id,
		map[string]any{"type": "turn_started", "turnId": turn, "source": "user"},
		map[string]any{"type": "permission_requested", "id": request, "title": title, "options": []map[string]any{
			{"id": "allow", "name": "Allow", "kind": "allow_once"}, {"id": "deny", "name": "Deny", "kind": "reject_once"},
		}},
	)
}

// xss is HTML that runs script if it is ever parsed as HTML: each part
// sets window.__pwned, which the test asserts stays unset.
const xss = `<img src=x onerror="window.__pwned='img'"><script>window.__pwned='script'</script><svg onload="window.__pwned='svg'"></svg>`

// hostileMarkdown is Markdown as an agent might write it, with every
// trick a transcript must survive mixed in.
const hostileMarkdown = "# Heading\n\n" +
	"Some **bold** text, a [good link](https://example.com/docs), a [bad link](javascript:window.__pwned='link'), " +
	"an ![image](javascript:window.__pwned='image'), a [data link](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX19wd25lZD0nZGF0YSc8L3NjcmlwdD4=) " +
	"and raw HTML: " + xss + ` <a href="javascript:window.__pwned='raw'">raw link</a>.` + "\n\n" +
	"- first\n- second <b>not bold</b>\n\n" +
	"```\nconst s = \"<img src=x onerror=alert(1)>\";\n```\n\n" +
	"<div onmouseover=\"window.__pwned='block'\">block html</div>\n\n" +
	"Write to <mailto:dev@example.com>.\n"

// postHostileTranscript fills session id with hostile Markdown and HTML in
// every field the web view renders.
func (e *env) postHostileTranscript(id string) {
	e.t.Helper()
	e.sandboxPost(id,
		map[string]any{"type": "session_info", "summary": xss},
		map[string]any{"type": "turn_started", "turnId": "t1", "source": "user"},
		map[string]any{"type": "user_message", "id": "u1", "text": xss + " **not markdown**"},
		map[string]any{"type": "reasoning_delta", "id": "r1", "delta": hostileMarkdown},
		map[string]any{"type": "reasoning_end", "id": "r1"},
		map[string]any{"type": "text_delta", "id": "m1", "delta": hostileMarkdown[:40]},
		map[string]any{"type": "text_delta", "id": "m1", "delta": hostileMarkdown[40:]},
		map[string]any{"type": "text_end", "id": "m1"},
		map[string]any{"type": "tool_call_start", "id": "tool-read", "name": xss, "kind": "read",
			"title": "Read `" + xss + "` and " + xss + " [t](javascript:window.__pwned='title')", "input": map[string]any{"path": xss}},
		map[string]any{"type": "tool_output_delta", "id": "tool-read", "delta": xss},
		map[string]any{"type": "tool_call_end", "id": "tool-read", "status": "failed", "error": xss},
		map[string]any{"type": "tool_call_start", "id": "tool-raw", "name": "raw", "input": map[string]any{"path": xss}},
		// locations is any JSON array: not every element is a {path}.
		map[string]any{"type": "tool_call_update", "id": "tool-raw", "locations": []any{nil, map[string]any{"path": xss}, 7}},
		map[string]any{"type": "tool_call_end", "id": "tool-raw", "status": "completed"},
		map[string]any{"type": "tool_call_start", "id": "tool-exec", "name": "shell", "kind": "execute", "title": xss},
		map[string]any{"type": "tool_call_end", "id": "tool-exec", "status": "completed", "exitCode": 0},
		map[string]any{"type": "plan_updated", "id": "plan-x", "entries": []map[string]any{
			{"content": "**bold step** " + xss, "status": "in_progress"},
			{"content": "[x](javascript:window.__pwned='plan')", "status": "pending", "priority": xss},
		}},
		map[string]any{"type": "file_changed", "path": xss, "change": "update", "diff": xss},
		map[string]any{"type": "notice", "level": "warning", "message": xss, "code": "x"},
		map[string]any{"type": "permission_requested", "id": "perm-x", "title": xss, "input": map[string]any{"cmd": xss}, "options": []map[string]any{
			{"id": "allow", "name": xss, "kind": "allow_once"}, {"id": "deny", "name": "Deny", "kind": "reject_once"}, {"id": "always", "name": xss, "kind": "allow_always"},
		}},
	)
}

// assertNothingRan checks that no hostile part became live DOM or ran:
// the flag is unset, no element the hostile text named exists, no
// element carries an event handler attribute, and every link is http,
// https or mailto (the page's own "#/" links aside) with
// rel="noopener noreferrer" inside the transcript.
func assertNothingRan(ctx context.Context, b *Browser) error {
	var got struct {
		Pwned    *string  `json:"pwned"`
		Elements []string `json:"elements"`
		Handlers []string `json:"handlers"`
		BadLinks []string `json:"badLinks"`
		Links    []string `json:"links"`
	}
	err := b.Eval(ctx, &got, `
		const all = [...document.querySelectorAll("*")];
		return {
			pwned: window.__pwned === undefined ? null : String(window.__pwned),
			elements: [...document.querySelectorAll("img, svg, iframe, object, embed, div[onmouseover], b, script:not([src^='/ui/'])")].map(e => e.outerHTML),
			handlers: all.filter(el => [...el.attributes].some(a => a.name.startsWith("on"))).map(e => e.outerHTML),
			badLinks: [...document.querySelectorAll("a[href]")].map(a => a.getAttribute("href")).filter(h => !/^(https?:|mailto:|#)/.test(h)),
			links: [...document.querySelectorAll("#transcript a[href]")].map(a => a.getAttribute("href") + " " + a.rel + " " + a.target),
		};`)
	if err != nil {
		return err
	}
	if got.Pwned != nil || len(got.Elements) > 0 || len(got.Handlers) > 0 || len(got.BadLinks) > 0 {
		return fmt.Errorf("hostile content got through: pwned=%v elements=%q handlers=%q bad links=%q", got.Pwned, got.Elements, got.Handlers, got.BadLinks)
	}
	for _, l := range got.Links {
		if !strings.HasSuffix(l, " noopener noreferrer _blank") {
			return fmt.Errorf("link %q: want rel=noopener noreferrer, target=_blank", l)
		}
	}
	return nil
}

// runConnectCommand runs the command the web view showed for connecting a
// sandbox, as a user would paste it into a shell in dir, with agentd and
// the demo agent on PATH standing in for YOUR-AGENT.
func (e *env) runConnectCommand(command, dir string) *Proc {
	e.t.Helper()
	script := "cd " + dir + " && " + strings.ReplaceAll(command, "YOUR-AGENT", "demo-agent")
	path := "PATH=" + filepath.Dir(bins.Agentd) + string(os.PathListSeparator) + os.Getenv("PATH")
	// Its own state dir: the default (~/.local/state) outlives the test,
	// and a command cursor left there by an earlier run would make this
	// agentd skip the new server's first commands.
	state := "XDG_STATE_HOME=" + filepath.Join(e.dir, "pasted-state")
	p, err := Start(e.t.Logf, "pasted agentd", []string{path, state}, "sh", "-c", script)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { p.Stop(15 * time.Second) })
	return p
}

// jsonString is s as JSON.stringify writes it.
func jsonString(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(buf.String(), "\n")
}
