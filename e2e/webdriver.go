package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// Browser is a headless Chromium driven over the W3C WebDriver protocol by
// a chromedriver child process: plain HTTP and JSON, so driving a real
// browser needs no Node and no Go dependency.
type Browser struct {
	driver  *Proc
	tmp     string // chromedriver's and the browser's TMPDIR
	base    string // http://127.0.0.1:PORT/session/ID
	http    *http.Client
	timeout time.Duration
}

// BrowserConfig says which programs to run and how big the window is.
type BrowserConfig struct {
	Chromium     string // the browser binary (Debian: /usr/bin/chromium)
	Chromedriver string // Debian: /usr/bin/chromedriver
	ProfileDir   string // a fresh, empty --user-data-dir
	Width        int    // window size; default 1280x800
	Height       int
}

// chromiumArgs work as root in a container: no sandbox (it needs user
// namespaces), no GPU, and nothing that reaches the network by itself.
var chromiumArgs = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
}

const driverReady = "started successfully on port "

// StartBrowser starts chromedriver on a free port and opens a browser
// session. Close ends both.
func StartBrowser(ctx context.Context, logf Logf, cfg BrowserConfig) (*Browser, error) {
	if cfg.Width == 0 {
		cfg.Width, cfg.Height = 1280, 800
	}
	// Stopped, chromedriver and the browser now and then leave a scoped
	// temporary directory behind (org.chromium.Chromium.scoped_dir.*):
	// 22 had piled up in /tmp from make test runs. They get a TMPDIR of
	// their own, removed by Close. Short, under the system's, since the
	// browser puts its singleton socket in it and a Unix socket's path is
	// at most 107 bytes (one in t.TempDir() was too long: the browser
	// exited at start).
	tmp, err := os.MkdirTemp("", "rein-chromium-")
	if err != nil {
		return nil, fmt.Errorf("start browser: %w", err)
	}
	p, line, err := startDriver(ctx, logf, cfg.Chromedriver, []string{"TMPDIR=" + tmp})
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, err
	}
	port := strings.TrimSuffix(strings.TrimSpace(line[strings.Index(line, driverReady)+len(driverReady):]), ".")
	b := &Browser{driver: p, tmp: tmp, http: &http.Client{}, timeout: time.Minute}
	args := append(append([]string(nil), chromiumArgs...), "--user-data-dir="+cfg.ProfileDir, fmt.Sprintf("--window-size=%d,%d", cfg.Width, cfg.Height))
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName":        "chrome",
		"goog:chromeOptions": map[string]any{"binary": cfg.Chromium, "args": args},
	}}}
	var created struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call(ctx, http.MethodPost, "http://127.0.0.1:"+port+"/session", caps, &created); err != nil {
		p.Kill() // see Close
		_ = os.RemoveAll(tmp)
		return nil, fmt.Errorf("start browser: %w", err)
	}
	b.base = "http://127.0.0.1:" + port + "/session/" + created.SessionID
	if err := b.viewport(ctx, cfg.Width, cfg.Height); err != nil {
		b.Close()
		return nil, fmt.Errorf("start browser: %w", err)
	}
	return b, nil
}

// startDriver starts chromedriver on a free port and returns it with its
// ready line. With --port=0 chromedriver takes a free IPv6 port and then
// the same port on IPv4, which another process may hold already (the
// suite's servers and clients take ports all the time): it then exits,
// "IPv4 port not available", and one more try picks another port. A
// driver that does not start three times is an error.
func startDriver(ctx context.Context, logf Logf, bin string, env []string) (*Proc, string, error) {
	for attempt := 1; ; attempt++ {
		p, err := Start(logf, "chromedriver", env, bin, "--port=0")
		if err != nil {
			return nil, "", err
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		line, err := p.WaitLine(wctx, driverReady)
		cancel()
		if err == nil {
			return p, line, nil
		}
		p.Kill()
		if attempt == 3 || ctx.Err() != nil {
			return nil, "", err
		}
		logf("chromedriver did not start (%v); trying again", err)
	}
}

// viewport makes the page area (what a screenshot shows) w x h:
// --window-size sets the outer window, which headless Chromium still
// makes larger than the page.
func (b *Browser) viewport(ctx context.Context, w, h int) error {
	var inner [2]int
	if err := b.Eval(ctx, &inner, `return [window.innerWidth, window.innerHeight];`); err != nil {
		return err
	}
	var rect struct{ Width, Height int }
	if err := b.cmd(ctx, http.MethodGet, "/window/rect", nil, &rect); err != nil {
		return err
	}
	return b.cmd(ctx, http.MethodPost, "/window/rect", map[string]int{"width": rect.Width + w - inner[0], "height": rect.Height + h - inner[1]}, nil)
}

// Close ends the browser session and stops chromedriver.
func (b *Browser) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_ = b.call(ctx, http.MethodDelete, b.base, nil, nil)
	// chromedriver does not exit on SIGINT (every Stop waited out its
	// grace and killed it), and with its session deleted it holds
	// nothing to save: Stop would count a hang that is not ours.
	b.driver.Kill()
	_ = os.RemoveAll(b.tmp)
}

// WebDriverError is an error answer: error is the W3C error code, such as
// "no such element" or "stale element reference".
type WebDriverError struct {
	Status  int
	Code    string `json:"error"`
	Message string `json:"message"`
}

func (e *WebDriverError) Error() string {
	msg, _, _ := strings.Cut(e.Message, "\n") // the rest is a stack trace
	return fmt.Sprintf("webdriver %d %s: %s", e.Status, e.Code, msg)
}

// call sends one WebDriver command and decodes the answer's "value".
func (b *Browser) call(ctx context.Context, method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(j)
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("webdriver %s %s: %d, undecodable answer: %w", method, url, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		we := &WebDriverError{Status: resp.StatusCode}
		_ = json.Unmarshal(env.Value, we)
		return we
	}
	if out != nil {
		return json.Unmarshal(env.Value, out)
	}
	return nil
}

func (b *Browser) cmd(ctx context.Context, method, path string, body, out any) error {
	return b.call(ctx, method, b.base+path, body, out)
}

// Navigate opens url.
func (b *Browser) Navigate(ctx context.Context, url string) error {
	return b.cmd(ctx, http.MethodPost, "/url", map[string]string{"url": url}, nil)
}

// Eval runs a script (a function body: use return) with args and decodes
// its result into out.
func (b *Browser) Eval(ctx context.Context, out any, script string, args ...any) error {
	if args == nil {
		args = []any{}
	}
	return b.cmd(ctx, http.MethodPost, "/execute/sync", map[string]any{"script": script, "args": args}, out)
}

// element finds the first element matching the CSS selector.
func (b *Browser) element(ctx context.Context, css string) (string, error) {
	var el map[string]string
	if err := b.cmd(ctx, http.MethodPost, "/element", map[string]string{"using": "css selector", "value": css}, &el); err != nil {
		return "", err
	}
	for _, id := range el { // one key: the W3C element identifier
		return id, nil
	}
	return "", fmt.Errorf("find %s: empty element reference", css)
}

// Screenshot returns a PNG of the viewport.
func (b *Browser) Screenshot(ctx context.Context) ([]byte, error) {
	var s string
	if err := b.cmd(ctx, http.MethodGet, "/screenshot", nil, &s); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(s)
}

// poll calls try every 50 ms until it returns nil or a permanent error,
// or ctx ends; then it returns the last error.
func poll(ctx context.Context, what string, try func() (done bool, err error)) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		done, err := try()
		if done {
			return err
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", what, ctx.Err(), last)
		case <-t.C:
		}
	}
}

// retryable says whether a WebDriver error may go away as the page
// changes (the element is not there yet, or was just replaced).
func retryable(err error) bool {
	var we *WebDriverError
	if !errors.As(err, &we) {
		return false
	}
	switch we.Code {
	case "no such element", "stale element reference", "element not interactable", "element click intercepted":
		return true
	}
	return false
}

// Click waits until the element matching css exists and can be clicked,
// and clicks it the way a user does (WebDriver scrolls it into view and
// clicks its centre; a covered or disabled-looking element is an error).
func (b *Browser) Click(ctx context.Context, css string) error {
	return poll(ctx, "click "+css, func() (bool, error) {
		id, err := b.element(ctx, css)
		if err == nil {
			err = b.cmd(ctx, http.MethodPost, "/element/"+id+"/click", map[string]any{}, nil)
		}
		return err == nil || !retryable(err), err
	})
}

// Type waits for the element matching css and types text into it, as key
// presses. "\uE007" is Enter.
func (b *Browser) Type(ctx context.Context, css, text string) error {
	return poll(ctx, "type into "+css, func() (bool, error) {
		id, err := b.element(ctx, css)
		if err == nil {
			err = b.cmd(ctx, http.MethodPost, "/element/"+id+"/value", map[string]string{"text": text}, nil)
		}
		return err == nil || !retryable(err), err
	})
}

// Text returns the textContent of the first element matching css; ok is
// false when there is none.
func (b *Browser) Text(ctx context.Context, css string) (text string, ok bool, err error) {
	var v *string
	if err := b.Eval(ctx, &v, `const el = document.querySelector(arguments[0]); return el ? el.textContent : null;`, css); err != nil {
		return "", false, err
	}
	if v == nil {
		return "", false, nil
	}
	return *v, true, nil
}

// WaitText waits until the element matching css exists and its text
// satisfies cond; it returns the text. what describes cond for errors.
func (b *Browser) WaitText(ctx context.Context, css, what string, cond func(string) bool) (string, error) {
	var got string
	var found bool
	err := poll(ctx, fmt.Sprintf("%s to be %s", css, what), func() (bool, error) {
		var err error
		got, found, err = b.Text(ctx, css)
		if err != nil {
			return true, err
		}
		if found && cond(got) {
			return true, nil
		}
		if !found {
			return false, fmt.Errorf("no element %s", css)
		}
		return false, fmt.Errorf("text is %q", got)
	})
	return got, err
}

// WaitTextIs waits until the element matching css has exactly the text want.
func (b *Browser) WaitTextIs(ctx context.Context, css, want string) error {
	_, err := b.WaitText(ctx, css, fmt.Sprintf("%q", want), func(s string) bool { return s == want })
	return err
}

// WaitJS waits until script (a function body) returns true.
func (b *Browser) WaitJS(ctx context.Context, what, script string, args ...any) error {
	return poll(ctx, what, func() (bool, error) {
		var ok bool
		if err := b.Eval(ctx, &ok, script, args...); err != nil {
			return true, err
		}
		return ok, nil
	})
}
