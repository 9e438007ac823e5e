package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
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
	for _, args := range [][]string{{"--log-level", "loud"}, {"--port", "70000"}, {"--bootstrap-timeout", "soon"}} {
		var out, errOut strings.Builder
		err := newApp(&out, &errOut).RunContext(context.Background(), append([]string{"rein-server", "--db", ":memory:"}, args...))
		if err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
