package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/rein-ai/rein/server/app"
)

// The binary prints exactly one line on stdout with its URL, serves, and
// returns nil when its context ends (SIGINT/SIGTERM).
func TestRunPrintsURLAndShutsDown(t *testing.T) {
	t.Setenv("REIN_DB", ":memory:")
	t.Setenv("REIN_LOG_LEVEL", "warn")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, outW := io.Pipe()
	var stderr strings.Builder
	errc := make(chan error, 1)
	go func() {
		err := newApp(outW, &stderr).RunContext(ctx, []string{"rein-server", "--port", "0"})
		outW.Close()
		errc <- err
	}()
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		t.Fatalf("no output; stderr: %s; err: %v", stderr.String(), <-errc)
	}
	line := sc.Text()
	m := regexp.MustCompile(`^rein-server listening on (http://127\.0\.0\.1:\d+)$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("first line %q", line)
	}
	resp, err := http.Get(m[1] + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	cancel()
	if sc.Scan() {
		t.Fatalf("a second stdout line: %q", sc.Text())
	}
	if err := <-errc; err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--log-level", "loud"}, {"--port", "70000"}, {"--bootstrap-timeout", "soon"}, {"--sync", "off"}} {
		var out, errOut strings.Builder
		err := newApp(&out, &errOut).RunContext(context.Background(), append([]string{"rein-server", "--db", ":memory:"}, args...))
		if err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// TestNonPositiveDurationsRefused: a timeout of 0 or less is refused at
// start naming the flag, from the command line or the environment. The
// Options take zero for "the default", so --heartbeat-timeout 0s would
// otherwise run with 45s and say nothing.
func TestNonPositiveDurationsRefused(t *testing.T) {
	// Already cancelled: a server that does start stops at once, and the
	// test sees it started (err nil, the listening line printed).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, name := range []string{"bootstrap-timeout", "heartbeat-timeout", "write-timeout"} {
		for _, v := range []string{"0s", "-1s"} {
			var out, errOut strings.Builder
			err := newApp(&out, &errOut).RunContext(ctx, []string{"rein-server", "--db", ":memory:", "--port", "0", "--" + name, v})
			if err == nil || !strings.Contains(err.Error(), "--"+name) || out.Len() != 0 {
				t.Errorf("--%s %s: err %v, stdout %q; want a refusal naming the flag", name, v, err, out.String())
			}
		}
	}
	t.Setenv("REIN_HEARTBEAT_TIMEOUT", "0s")
	var out, errOut strings.Builder
	err := newApp(&out, &errOut).RunContext(ctx, []string{"rein-server", "--db", ":memory:", "--port", "0"})
	if err == nil || !strings.Contains(err.Error(), "--heartbeat-timeout") || out.Len() != 0 {
		t.Errorf("REIN_HEARTBEAT_TIMEOUT=0s: err %v, stdout %q; want a refusal naming the flag", err, out.String())
	}
}

// startApp runs rein-server with args (env set by the caller with
// t.Setenv) and returns its base URL; the app stops at cleanup.
func startApp(t *testing.T, args ...string) (string, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, outW := io.Pipe()
	stderr := &syncBuffer{}
	errc := make(chan error, 1)
	go func() {
		err := newApp(outW, stderr).RunContext(ctx, append([]string{"rein-server", "--port", "0", "--db", ":memory:"}, args...))
		outW.CloseWithError(fmt.Errorf("app returned: %v", err))
		errc <- err
	}()
	t.Cleanup(func() {
		cancel()
		_, _ = io.Copy(io.Discard, out)
		if err := <-errc; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		t.Fatalf("no output: %v; stderr: %s", sc.Err(), stderr.String())
	}
	m := regexp.MustCompile(`^rein-server listening on http://(.+):(\d+)$`).FindStringSubmatch(sc.Text())
	if m == nil {
		t.Fatalf("first line %q", sc.Text())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return "http://127.0.0.1:" + m[2], stderr
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func get(t *testing.T, method, url, token string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

const cliToken = "cli-test-token-0123456789abcdef"

func TestAPITokenFromEnv(t *testing.T) {
	t.Setenv("REIN_API_TOKEN", cliToken)
	url, stderr := startApp(t)
	if got := get(t, "GET", url+"/sessions", "").StatusCode; got != 401 {
		t.Fatalf("no token: %d", got)
	}
	if got := get(t, "GET", url+"/sessions", cliToken).StatusCode; got != 200 {
		t.Fatalf("REIN_API_TOKEN: %d", got)
	}
	if got := get(t, "GET", url+"/healthz", "").StatusCode; got != 200 {
		t.Fatalf("healthz: %d", got)
	}
	if strings.Contains(stderr.String(), cliToken) || strings.Contains(stderr.String(), "authentication is off") {
		t.Fatalf("stderr: %s", stderr.String())
	}
}

func TestAPITokenFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(cliToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REIN_API_TOKEN_FILE", file)
	url, _ := startApp(t)
	if got := get(t, "GET", url+"/sessions", cliToken).StatusCode; got != 200 {
		t.Fatalf("REIN_API_TOKEN_FILE (trimmed): %d", got)
	}
	url2, _ := startApp(t, "--api-token-file", file)
	if got := get(t, "GET", url2+"/sessions", "").StatusCode; got != 401 {
		t.Fatalf("--api-token-file, no token: %d", got)
	}
}

// A client token given by flag or environment is trimmed as the file's
// is: a Kubernetes secret or a value copied from a file ends in a newline,
// which no HTTP header can carry. Kept, the server looked healthy and no
// client could ever authenticate. A control character inside the token,
// or in the file's, is refused at start naming where it came from.
func TestAPITokenTrimmedOrRefused(t *testing.T) {
	t.Setenv("REIN_API_TOKEN", cliToken+"\n")
	url, _ := startApp(t)
	if got := get(t, "GET", url+"/sessions", cliToken).StatusCode; got != 200 {
		t.Errorf("REIN_API_TOKEN ending in a newline: %d; want 200 with the token", got)
	}
	url2, _ := startApp(t, "--api-token", " "+cliToken+"\r\n")
	if got := get(t, "GET", url2+"/sessions", cliToken).StatusCode; got != 200 {
		t.Errorf("--api-token in whitespace: %d; want 200 with the token", got)
	}

	dir := t.TempDir()
	twoLines := filepath.Join(dir, "two-lines")
	if err := os.WriteFile(twoLines, []byte(cliToken+"\r\nsecond\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(dir, "long")
	if err := os.WriteFile(long, []byte(strings.Repeat("k", 70<<10)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	nonASCII := filepath.Join(dir, "non-ascii")
	if err := os.WriteFile(nonASCII, []byte("cli-test-token-中文-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  string
		args []string
		want string
	}{
		{"cli-test\ntoken-0123456789abcdef", nil, "--api-token/REIN_API_TOKEN: the token contains a control character (byte 0x0a at 8); no HTTP header can carry it, so no client could authenticate"},
		{"", []string{"--api-token", "cli-test-token\x7f0123456789abcdef"}, "--api-token/REIN_API_TOKEN: the token contains a control character (byte 0x7f at 14)"},
		{"", []string{"--api-token-file", twoLines}, "--api-token-file " + twoLines + ": the token contains a control character (byte 0x0d at 31)"},
		{" \n", nil, "--api-token/REIN_API_TOKEN is empty"},
		// Not ASCII: a browser sends "é" as the byte 0xe9, not as the
		// file's UTF-8, and cannot send a character past U+00FF at all,
		// so the web view could never authenticate with it.
		{"", []string{"--api-token", "cli-test-tokén-0123456789abcdef"}, "--api-token/REIN_API_TOKEN: the token contains a byte that is not ASCII (0xc3 at 12)"},
		{"", []string{"--api-token-file", nonASCII}, "--api-token-file " + nonASCII + ": the token contains a byte that is not ASCII (0xe4 at 15)"},
		// Longer than the server reads of a request's headers (64 KiB):
		// every request with it was answered 431 before any handler.
		{"", []string{"--api-token-file", long}, "--api-token-file " + long + ": the token is 71680 bytes; at most 4096 are accepted"},
	} {
		t.Setenv("REIN_API_TOKEN", tc.env)
		// Already cancelled: a server that does start stops at once
		// (err nil, the listening line printed).
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var out, errOut strings.Builder
		err := newApp(&out, &errOut).RunContext(ctx, append([]string{"rein-server", "--db", ":memory:", "--port", "0"}, tc.args...))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || out.Len() != 0 {
			t.Errorf("REIN_API_TOKEN=%q %q: err %v, stdout %q; want an error starting %q", tc.env, tc.args, err, out.String(), tc.want)
		}
		if strings.Contains(fmt.Sprint(err), "0123456789") {
			t.Errorf("%q: the error shows the token: %v", tc.args, err)
		}
	}
	// A program embedding the server gets the same refusal.
	if a, err := app.New(app.Options{DBPath: ":memory:", APIToken: cliToken + "\n"}); err == nil || !strings.Contains(err.Error(), "API token: the token contains a control character (byte 0x0a at 31)") {
		if a != nil {
			a.Close()
		}
		t.Errorf("app.New with a token ending in a newline: %v; want a refusal", err)
	}
}

func TestNoAuthWarnsAndNeedsLoopback(t *testing.T) {
	_, stderr := startApp(t)
	if !strings.Contains(stderr.String(), "authentication is off") {
		t.Fatalf("no warning: %s", stderr.String())
	}
	var out, errOut strings.Builder
	err := newApp(&out, &errOut).RunContext(context.Background(), []string{"rein-server", "--db", ":memory:", "--port", "0", "--host", "0.0.0.0"})
	if err == nil || !strings.Contains(err.Error(), "--insecure-no-auth") || out.Len() != 0 {
		t.Fatalf("non-loopback without a token: %v, stdout %q", err, out.String())
	}
	t.Setenv("REIN_INSECURE_NO_AUTH", "true")
	url, stderr := startApp(t, "--host", "0.0.0.0")
	if got := get(t, "GET", url+"/sessions", "").StatusCode; got != 200 {
		t.Fatalf("--insecure-no-auth: %d", got)
	}
	if !strings.Contains(stderr.String(), "authentication is OFF on a non-loopback address") {
		t.Fatalf("no loud warning: %s", stderr.String())
	}
}

func TestCORSOriginsFromEnv(t *testing.T) {
	preflights := func(url string, want map[string]int) {
		t.Helper()
		for origin, status := range want {
			resp := get(t, "OPTIONS", url+"/sessions", "", "Origin", origin, "Access-Control-Request-Method", "GET")
			if resp.StatusCode != status {
				t.Errorf("preflight from %s: %d; want %d", origin, resp.StatusCode, status)
			}
		}
	}
	t.Setenv("REIN_CORS_ORIGINS", "https://a.example.com, https://b.example.com")
	url, _ := startApp(t)
	preflights(url, map[string]int{"https://a.example.com": 204, "https://b.example.com": 204, "https://c.example.com": 403})
	// Repeated flags; as with every flag, the command line replaces the env.
	url, _ = startApp(t, "--cors-origin", "https://c.example.com", "--cors-origin", "https://d.example.com")
	preflights(url, map[string]int{"https://a.example.com": 403, "https://c.example.com": 204, "https://d.example.com": 204})
}

func TestLimitFlagsFromEnv(t *testing.T) {
	t.Setenv("REIN_MAX_ARTIFACTS_PER_SESSION", "1")
	t.Setenv("REIN_MAX_SESSION_BYTES", "100000")
	url, _ := startApp(t)
	if got := get(t, "POST", url+"/sessions/a", "").StatusCode; got != 201 {
		t.Fatalf("create: %d", got)
	}
	post := func(body string) (int, string) {
		resp, err := http.Post(url+"/sessions/a/events", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if got, b := post(`{"type":"user_message","text":"1"}`); got != 202 {
		t.Fatalf("first artifact: %d %s", got, b)
	}
	if got, b := post(`{"type":"user_message","text":"2"}`); got != 413 || !strings.Contains(b, "--max-artifacts-per-session") {
		t.Fatalf("second artifact: %d %s", got, b)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"512MiB", 512 << 20, false},
		{"1GiB", 1 << 30, false},
		{"1 GiB", 1 << 30, false},
		{"2KB", 2000, false},
		{"4096", 4096, false},
		{"10B", 10, false},
		{"off", noLimit, false},
		{"OFF", noLimit, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"-1MiB", 0, true},
		{"0", 0, true},
		{"1.5GiB", 0, true},
		{"1mib", 0, true},
		{"99999999999TiB", 0, true},
	} {
		got, err := parseSize(tc.in)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("parseSize(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// The flag wins, GOMEMLIMIT (as the runtime applied it) comes next, the
// default last.
func TestMemoryLimitChoice(t *testing.T) {
	prev := debug.SetMemoryLimit(123 << 20)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	for _, tc := range []struct {
		flag string
		set  bool
		env  string
		want int64
	}{
		{"", false, "", defaultMemoryLimit},
		{"", false, "123MiB", 123 << 20},
		{"1GiB", true, "123MiB", 1 << 30},
		{"off", true, "", noLimit},
	} {
		got, err := memoryLimit(tc.flag, tc.set, tc.env)
		if err != nil || got != tc.want {
			t.Errorf("memoryLimit(%q, %v, %q) = %d, %v; want %d", tc.flag, tc.set, tc.env, got, err, tc.want)
		}
	}
	if got := stateCacheBytes(1 << 30); got != 256<<20 {
		t.Errorf("stateCacheBytes(1GiB) = %d; want a quarter", got)
	}
	if got := stateCacheBytes(noLimit); got != 0 {
		t.Errorf("stateCacheBytes(no limit) = %d; want 0 (the server's default)", got)
	}
}

// REIN_MEMORY_LIMIT reaches the runtime's soft limit.
func TestMemoryLimitFromEnv(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	t.Setenv("REIN_MEMORY_LIMIT", "300MiB")
	startApp(t)
	if got := debug.SetMemoryLimit(-1); got != 300<<20 {
		t.Fatalf("soft memory limit %d; want 300MiB", got)
	}
}

func TestSecurityFlagErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--api-token", cliToken, "--api-token-file", empty}, "not both"},
		{[]string{"--api-token-file", empty}, "is empty"},
		{[]string{"--api-token-file", filepath.Join(dir, "missing")}, "--api-token-file"},
		{[]string{"--api-token", "short"}, "at least 16"},
		{[]string{"--cors-origin", "*"}, "cors origin"},
		{[]string{"--cors-origin", "https://x.example.com/app"}, "cors origin"},
		{[]string{"--max-session-bytes", "0"}, "--max-session-bytes"},
		{[]string{"--max-artifacts-per-session", "-1"}, "--max-artifacts-per-session"},
		{[]string{"--max-body", "0"}, "--max-body"},
		{[]string{"--memory-limit", "12XB"}, "--memory-limit"},
		{[]string{"--memory-limit", "0"}, "--memory-limit"},
	} {
		var out, errOut strings.Builder
		err := newApp(&out, &errOut).RunContext(context.Background(), append([]string{"rein-server", "--db", ":memory:", "--port", "0"}, tc.args...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v; want an error containing %q", tc.args, err, tc.want)
		}
		if strings.Contains(fmt.Sprint(err), cliToken) {
			t.Errorf("%v: the error shows the token: %v", tc.args, err)
		}
	}
}

// Two real rein-server processes on one database file: the second exits
// with an error naming the file and the first one's pid; the first keeps
// serving.
func TestSecondProcessOnSameDatabaseRefuses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "rein-server")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	db := filepath.Join(dir, "rein.db")
	first := exec.Command(bin, "--port", "0", "--db", db, "--log-level", "error")
	stdout, err := first.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = first.Process.Signal(os.Interrupt)
		_ = first.Wait()
	})
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		t.Fatal("the first server printed nothing")
	}
	url := strings.TrimPrefix(sc.Text(), "rein-server listening on ")

	var stderr strings.Builder
	second := exec.Command(bin, "--port", "0", "--db", db)
	second.Stderr = &stderr
	err = second.Run()
	if err == nil {
		t.Fatal("the second server started on the same database file")
	}
	for _, want := range []string{db, fmt.Sprintf("pid %d", first.Process.Pid)} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q does not name %q", stderr.String(), want)
		}
	}
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the first server after the refusal: healthz %d", resp.StatusCode)
	}
}

// TestStreamTicketKeyShared: two servers given the same
// --stream-ticket-key-file honour each other's stream tickets (replicas,
// or a restart within a ticket's minute); a server with its own key
// refuses them. A short key is refused at start, naming the flag.
func TestStreamTicketKeyShared(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "ticket.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("k", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REIN_API_TOKEN", cliToken)
	issuer, _ := startApp(t, "--stream-ticket-key-file", keyFile)
	t.Setenv("REIN_STREAM_TICKET_KEY_FILE", keyFile)
	sharer, _ := startApp(t)
	t.Setenv("REIN_STREAM_TICKET_KEY_FILE", "")
	stranger, _ := startApp(t)

	req, _ := http.NewRequest("POST", issuer+"/sessions/stream-ticket", nil)
	req.Header.Set("Authorization", "Bearer "+cliToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tk struct{ Ticket string }
	if err := json.NewDecoder(resp.Body).Decode(&tk); err != nil || resp.StatusCode != 200 || tk.Ticket == "" {
		t.Fatalf("POST /sessions/stream-ticket: %d, %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	open := func(base string) int {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel() // ends the stream once its status is known
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/sessions/stream?ticket="+tk.Ticket, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode
	}
	if got := open(sharer); got != 200 {
		t.Errorf("a server sharing the key answered %d to the other's ticket; want 200", got)
	}
	if got := open(stranger); got != 401 {
		t.Errorf("a server with its own key answered %d; want 401", got)
	}

	short := filepath.Join(dir, "short.key")
	if err := os.WriteFile(short, []byte("too short"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	err = newApp(&out, &errOut).RunContext(context.Background(), []string{"rein-server", "--db", ":memory:", "--port", "0", "--stream-ticket-key-file", short})
	if err == nil || !strings.Contains(err.Error(), "--stream-ticket-key-file") || out.Len() != 0 {
		t.Fatalf("a 9-byte key: %v, stdout %q", err, out.String())
	}
}

// TestSecondSignalExitsAtOnce: SIGTERM starts a graceful shutdown, which
// waits (up to its deadline) for requests in flight; a second SIGTERM
// ends the process at once instead of being swallowed. The database
// opens again afterwards with what was committed, as after a crash.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "rein-server")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	db := filepath.Join(dir, "rein.db")
	srv := exec.Command(bin, "--port", "0", "--db", db)
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := srv.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
	})
	logs := make(chan string, 100)
	go func() {
		defer close(logs)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Log(sc.Text())
			logs <- sc.Text()
		}
	}()
	waitLog := func(want string) {
		t.Helper()
		for line := range logs {
			if strings.Contains(line, want) {
				return
			}
		}
		t.Fatalf("rein-server's stderr ended before %q", want)
	}
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		t.Fatal("rein-server printed nothing")
	}
	base := strings.TrimPrefix(sc.Text(), "rein-server listening on ")
	resp, err := http.Post(base+"/sessions/kept", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d", resp.StatusCode)
	}

	// A request in flight that the graceful shutdown waits for: its
	// handler reads a body that never comes (the 100 Continue says the
	// handler is reading it).
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /sessions/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n")
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(line, "100 Continue") {
		t.Fatalf("want 100 Continue, got %q, %v", line, err)
	}

	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog("shutting down")
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = srv.Wait()
	for range logs { // the reader has returned: no t.Log after the test
	}
	if st, ok := srv.ProcessState.Sys().(syscall.WaitStatus); !ok || !st.Signaled() || st.Signal() != syscall.SIGTERM {
		t.Fatalf("after a second SIGTERM rein-server exited with %v (%v); want it ended by the signal, not after the graceful shutdown", srv.ProcessState, err)
	}

	var out, errOut strings.Builder
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // start, check, stop
	if err := newApp(&out, &errOut).RunContext(ctx, []string{"rein-server", "--port", "0", "--db", db}); err != nil {
		t.Fatalf("the database after a forced exit: %v\n%s", err, errOut.String())
	}
}

// TestTokenTwiceNamesTheEnvironment: the README's authenticated setup
// exports REIN_API_TOKEN_FILE, which rein-server reads too; a server
// started from that shell with --api-token is refused naming the
// variable, not a --api-token-file the user never typed.
func TestTokenTwiceNamesTheEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "api-token")
	if err := os.WriteFile(file, []byte(cliToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REIN_API_TOKEN_FILE", file)
	var out, errOut strings.Builder
	err := newApp(&out, &errOut).RunContext(context.Background(), []string{"rein-server", "--db", ":memory:", "--port", "0", "--api-token", cliToken})
	if err == nil || !strings.Contains(err.Error(), "not both") || !strings.Contains(err.Error(), "REIN_API_TOKEN_FILE, set in the environment") {
		t.Errorf("--api-token with REIN_API_TOKEN_FILE set: %v", err)
	}
}
