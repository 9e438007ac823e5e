package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/internal/disktest"
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

// TestCreateTokenFileOnFullDisk: when the token file cannot be written
// (here a full tmpfs), the session it belongs to is removed again, so
// no session is left that no sandbox could ever connect to, and the
// command can be run again once there is room.
func TestCreateTokenFileOnFullDisk(t *testing.T) {
	dir := fullTmpfs(t)
	s := startServer(t, app.Options{})
	file := filepath.Join(dir, "tok")
	r := rein(t, s.URL(), "create", "s1", "--sandbox-token-file", file)
	if r.code == 0 || !strings.Contains(r.stderr, "no space left on device") || !strings.Contains(r.stderr, "session s1 was removed again") {
		t.Fatalf("create on a full disk: exit %d, stderr %q", r.code, r.stderr)
	}
	if list := mustRein(t, s.URL(), "sessions", "--json"); strings.Contains(list, `"s1"`) {
		t.Errorf("session s1 is still there:\n%s", list)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("token file left behind: %v", err)
	}
}

// fullTmpfs mounts a small tmpfs for the test and fills it: a file can
// still be created there, but nothing written. Mounting needs root; the
// test skips elsewhere, and fails on CI (CI set), which must run it.
func fullTmpfs(t *testing.T) string {
	t.Helper()
	dir := disktest.Mount(t, "64k")
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for range 1000 { // 64 KiB fill in 16; the bound keeps the loop finite
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return dir
			}
			t.Fatal(err)
		}
	}
	t.Fatal("a 64 KiB tmpfs took 4 MB without filling up")
	return ""
}

// sandboxStatus is the status of an event post with sandbox token tok.
func sandboxStatus(t *testing.T, s *app.App, id, tok string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL()+"/sessions/"+id+"/events", strings.NewReader(`{"type":"heartbeat"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestToken: rein token replaces a session's sandbox token, in the token
// file agentd reads or on stdout: the old one is refused from then on, the
// new one works.
func TestToken(t *testing.T) {
	s := startServer(t, app.Options{})
	file := filepath.Join(t.TempDir(), "s1.token")
	mustRein(t, s.URL(), "create", "s1", "--sandbox-token-file", file)
	read := func() string {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	old := read()
	if st := sandboxStatus(t, s, "s1", old); st != http.StatusAccepted {
		t.Fatalf("the created token: %d", st)
	}

	out := mustRein(t, s.URL(), "token", "s1", "--sandbox-token-file", file)
	tok := read()
	if tok == old || len(tok) != 43 || !strings.HasPrefix(out, "new sandbox token for s1 written to "+file+" (the old one no longer works); start agentd with it:\n  agentd --server") || strings.Contains(out, tok) {
		t.Fatalf("rein token --sandbox-token-file printed %q, file %q (old %q)", out, tok, old)
	}
	if st := sandboxStatus(t, s, "s1", old); st != http.StatusUnauthorized {
		t.Errorf("the old token after rein token: %d; want 401", st)
	}
	if st := sandboxStatus(t, s, "s1", tok); st != http.StatusAccepted {
		t.Errorf("the new token: %d; want 202", st)
	}

	out = mustRein(t, s.URL(), "token", "s1")
	printed := strings.TrimSuffix(strings.TrimPrefix(strings.SplitN(out, "\n", 2)[0], "new sandbox token for s1: "), " (the old one no longer works)")
	if len(printed) != 43 || !strings.Contains(out, "agentd --server") || sandboxStatus(t, s, "s1", printed) != http.StatusAccepted || sandboxStatus(t, s, "s1", tok) != http.StatusUnauthorized {
		t.Fatalf("rein token printed %q", out)
	}
	var body protocol.SandboxToken
	if err := json.Unmarshal([]byte(mustRein(t, s.URL(), "token", "s1", "--json")), &body); err != nil || sandboxStatus(t, s, "s1", body.SandboxToken) != http.StatusAccepted {
		t.Fatalf("rein token --json: %+v, %v", body, err)
	}
}

// TestTokenFileReadableByOthers: rein token writes the new token into an
// existing file in place, keeping its mode. One made with a plain echo
// (mode 0644) is readable by every user of the machine: the token is
// refused before the rotation, so the old token still works and the file
// is untouched; once it is 0600, the rotation goes through.
func TestTokenFileReadableByOthers(t *testing.T) {
	s := startServer(t, app.Options{})
	old := createSession(t, s, "s1")
	file := filepath.Join(t.TempDir(), "s1.token")
	if err := os.WriteFile(file, []byte(old+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o644); err != nil { // as umask 022 leaves it
		t.Fatal(err)
	}
	r := rein(t, s.URL(), "token", "s1", "--sandbox-token-file", file)
	if r.code != 1 || !strings.Contains(r.stderr, "readable or writable by other users (mode 0644)") || !strings.Contains(r.stderr, "chmod 600") {
		t.Errorf("rein token into a mode-0644 file: exit %d, stderr %q", r.code, r.stderr)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != old+"\n" {
		t.Errorf("the file now holds %q (%v); want the old token, untouched", b, err)
	}
	if st := sandboxStatus(t, s, "s1", old); st != http.StatusAccepted {
		t.Errorf("the old token after a refused rein token: %d; want 202 (not rotated)", st)
	}
	if err := os.Chmod(file, 0o600); err != nil {
		t.Fatal(err)
	}
	mustRein(t, s.URL(), "token", "s1", "--sandbox-token-file", file)
	if st := sandboxStatus(t, s, "s1", old); st != http.StatusUnauthorized {
		t.Errorf("the old token after rein token into a mode-0600 file: %d; want 401", st)
	}
}

// TestCreateTokenFileExists: a token file that exists already (the one
// an earlier run of the README's steps left, for a session since
// removed) is not overwritten and no session is created; the error says
// why and what to do, not just "file exists".
func TestCreateTokenFileExists(t *testing.T) {
	s := startServer(t, app.Options{})
	file := filepath.Join(t.TempDir(), "s1.token")
	if err := os.WriteFile(file, []byte("an earlier session's token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := rein(t, s.URL(), "create", "s1", "--sandbox-token-file", file)
	if r.code != 1 || !strings.Contains(r.stderr, file+" exists already") || !strings.Contains(r.stderr, "remove it or name another file") {
		t.Errorf("create with an existing token file: exit %d, stderr %q", r.code, r.stderr)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "an earlier session's token\n" {
		t.Errorf("the existing token file now holds %q (%v)", b, err)
	}
	if list := mustRein(t, s.URL(), "sessions", "--json"); list != "" {
		t.Errorf("a session was created:\n%s", list)
	}
}
