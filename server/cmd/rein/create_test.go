package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rein-ai/rein/server/app"
)

// TestCreateSaysBootstrapTimeout: rein create warns that the session is
// removed if no sandbox connects in time, with or without a token file.
func TestCreateSaysBootstrapTimeout(t *testing.T) {
	s := startServer(t, app.Options{})
	for _, args := range [][]string{{"create", "b1"}, {"create", "b2", "--sandbox-token-file", t.TempDir() + "/b2.token"}} {
		out := mustRein(t, s.URL(), args...)
		if !strings.HasSuffix(out, "If no sandbox connects within the server's bootstrap timeout (--bootstrap-timeout, default 3m), the session is removed.\n") {
			t.Errorf("rein %v printed\n%s", args, out)
		}
	}
}

// TestCreateJSONTokenFile: with --sandbox-token-file, create --json
// prints the session record without a sandboxToken key (it printed
// "sandboxToken":""), the same record rein sessions --json prints; the
// token is in the file.
func TestCreateJSONTokenFile(t *testing.T) {
	s := startServer(t, app.Options{})
	file := filepath.Join(t.TempDir(), "tok")
	out := mustRein(t, s.URL(), "create", "s1", "--json", "-p", "web", "--sandbox-token-file", file)
	var rec map[string]any
	if err := json.Unmarshal([]byte(out), &rec); err != nil || rec["id"] != "s1" {
		t.Fatalf("create --json printed %q (%v)", out, err)
	}
	if _, ok := rec["sandboxToken"]; ok {
		t.Errorf("create --json --sandbox-token-file printed a sandboxToken: %s", out)
	}
	if list := mustRein(t, s.URL(), "sessions", "--json"); list != out {
		t.Errorf("create --json printed\n%s\nsessions --json prints\n%s", out, list)
	}
	if b, err := os.ReadFile(file); err != nil || len(strings.TrimSpace(string(b))) != 43 {
		t.Errorf("token file: %q, %v", b, err)
	}
}
