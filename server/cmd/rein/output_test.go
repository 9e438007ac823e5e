package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/server/app"
)

// TestOutputThatCannotBeWritten: rein's standard output is a file on a
// full disk (/dev/full fails every write with ENOSPC). A command whose
// output is its result (rein watch > transcript, a list, a verification)
// exits 1 saying so, and one that follows a stream stops at once rather
// than follow on unseen: rein watch --until-idle exited 0 with nothing
// written, and rein sessions --watch followed until it was stopped. A
// command whose output only confirms what it did (a prompt sent) did it:
// it exits 0, so a script does not send the prompt again, and says on
// stderr that its output is incomplete.
func TestOutputThatCannotBeWritten(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full to write to: %v", err)
	}
	defer full.Close()
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")
	postEvents(t, s, "s1", tok, scripted)
	postEvents(t, s, "s1", tok, `[{"type":"turn_started","turnId":"t2","source":"user"},
		{"type":"permission_requested","id":"perm-2","title":"rm -rf build","options":[{"id":"allow","name":"Allow","kind":"allow_once"}]}]`)
	postEvents(t, s, "s1", tok, `[{"type":"permission_resolved","id":"perm-2","outcome":"selected","optionId":"allow"},
		{"type":"turn_completed","turnId":"t2","stopReason":"end_turn"}]`)
	// A pending request, for the inbox to list.
	postEvents(t, s, "s1", tok, `[{"type":"turn_started","turnId":"t3","source":"user"},
		{"type":"permission_requested","id":"perm-3","title":"push","options":[{"id":"allow","name":"Allow","kind":"allow_once"}]}]`)

	runTo := func(args ...string) result {
		t.Helper()
		var errOut syncBuffer
		ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
		defer cancel()
		e := &env{stdout: full, stderr: &errOut, now: time.Now}
		code := run(ctx, append([]string{"rein", "--server", s.URL(), "--token", testToken}, args...), e)
		return result{"", errOut.String(), code}
	}
	const failed = "rein: write standard output: write /dev/full: no space left on device\n"
	for _, args := range [][]string{
		{"watch", "s1"},
		{"watch", "--json", "s1"},
		{"sessions"},
		{"sessions", "--json"},
		{"sessions", "--watch"},
		{"inbox"},
		{"inbox", "--follow"},
		{"inbox", "--follow", "--json"},
		{"verify", "s1"},
		{"verify", "--json", "s1"},
	} {
		if r := runTo(args...); r.code != 1 || r.stderr != failed {
			t.Errorf("rein %s > /dev/full: exit %d, stderr %q; want 1, %q", strings.Join(args, " "), r.code, r.stderr, failed)
		}
	}

	r := runTo("prompt", "--queue", "s1", "fix it")
	if want := "rein: write standard output: write /dev/full: no space left on device: the command was carried out, but what it printed is incomplete\n"; r.code != 0 || r.stderr != want {
		t.Errorf("rein prompt > /dev/full: exit %d, stderr %q; want 0, %q", r.code, r.stderr, want)
	}
	if rec := storedSession(t, s, "s1"); rec.PendingCommands != 1 {
		t.Errorf("pending commands after the prompt: %d; want 1", rec.PendingCommands)
	}
}
