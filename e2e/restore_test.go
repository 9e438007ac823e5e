package e2e

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// backUp takes a backup of the server's database as an operator would:
// the server stopped, its files copied into a new directory, the server
// started again; it returns once session id's sandbox is back.
func (e *env) backUp(t *testing.T, id string) (dir string) {
	t.Helper()
	e.srv.Stop(15 * time.Second)
	dir = t.TempDir()
	copyDatabase(t, e.srv.DB, dir)
	if err := e.srv.Restart(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.waitSandboxBack(id)
	return dir
}

// copyDatabase copies the SQLite database at db (with its WAL and shared
// memory files, when there) into dir: a backup of a stopped server.
func copyDatabase(t *testing.T, db, dir string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		from, err := os.Open(db + suffix)
		if os.IsNotExist(err) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		to, err := os.Create(filepath.Join(dir, filepath.Base(db)+suffix))
		if err == nil {
			_, err = io.Copy(to, from)
			err = errors.Join(err, to.Close())
		}
		from.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// restoreDatabase puts the backup copyDatabase made in dir back at db.
func restoreDatabase(t *testing.T, dir, db string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(db + suffix); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	copyDatabase(t, filepath.Join(dir, filepath.Base(db)), filepath.Dir(db))
}

// TestBrowserShowsARestoredHistory: the server comes back from an older
// backup while the web view shows a session, so the session's history
// went back below what the page shows. The page must show the session as
// the server now has it, not keep the turn the backup lacks as if it had
// happened; and so must the Go client (the Follower, which resumes with a
// Last-Event-ID above the restored revision).
func TestBrowserShowsARestoredHistory(t *testing.T) {
	sqliteOnly(t)
	chromium, driver := browserPaths(t)
	e := newEnv(t)
	id := "restored"
	d, f := e.session(id)
	e.prompt(id, "before the backup")
	waitTurns(t, e.ctx, f, 1)
	e.waitIdle(id)

	backup := e.backUp(t, id)

	b, step := e.signedIn(chromium, driver, e.srv.URL)
	step("open the session", func(ctx context.Context) error {
		if err := b.Navigate(ctx, e.srv.URL+"/#/s/"+id); err != nil {
			return err
		}
		return b.WaitTextIs(ctx, `#transcript [data-id="t1"] .pill`, "completed")
	})
	e.prompt(id, "after the backup")
	step("the turn after the backup shown", func(ctx context.Context) error {
		return b.WaitTextIs(ctx, `#transcript [data-id="t2"] .pill`, "completed")
	})
	waitTurns(t, e.ctx, f, 2)

	killSandbox(t, d)
	e.srv.Stop(15 * time.Second)
	restoreDatabase(t, backup, e.srv.DB)
	if err := e.srv.Restart(e.ctx); err != nil {
		t.Fatal(err)
	}
	step("the page shows the restored history", func(ctx context.Context) error {
		return b.WaitJS(ctx, "turn t1 shown and turn t2 gone",
			`const t = document.querySelector("#transcript");
			 return !!t.querySelector('[data-id="t1"]') && !t.querySelector('[data-id="t2"]') &&
			   !t.textContent.includes("after the backup");`)
	})
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	if err := f.WaitFor(ctx, "the restored history", func(arts []*protocol.Artifact) bool {
		return !slices.ContainsFunc(arts, func(a *protocol.Artifact) bool { return a.ID == "t2" })
	}); err != nil {
		t.Fatalf("%v: the Go client keeps the turn the backup lacks", err)
	}
	e.assertModelMatchesServer(f, id)
}

// TestPromptAfterARestoredBackup: the server comes back from an older
// backup while agentd runs on, so agentd has taken a command the
// restored database no longer holds, under the id the server gives its
// next command. A prompt accepted after the restore must run, once: not
// be skipped by agentd as one it already had while the server counts it
// acknowledged.
func TestPromptAfterARestoredBackup(t *testing.T) {
	sqliteOnly(t)
	e := newEnv(t)
	id := "restored-commands"
	_, f := e.session(id)
	e.prompt(id, "before the backup")
	waitTurns(t, e.ctx, f, 1)
	e.waitNoPending(id)

	backup := e.backUp(t, id)
	e.prompt(id, "after the backup")
	waitTurns(t, e.ctx, f, 2)
	e.waitNoPending(id)

	// agentd keeps running: it reconnects to the restored server with
	// the cursor of the history the backup lacks.
	e.srv.Stop(15 * time.Second)
	restoreDatabase(t, backup, e.srv.DB)
	if err := e.srv.Restart(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.waitSandboxBack(id)
	// The follower must be back before the prompt: it resumes after the
	// revision it saw, which the restored session reaches again with the
	// prompt's turn, and a resume after a revision the session has
	// passed again sends only what changed above it, keeping the turn
	// the backup lacks. Below that revision the server replays the whole
	// restored history (full), which drops that turn.
	if err := f.WaitFor(e.ctx, "the restored history", func(arts []*protocol.Artifact) bool {
		return !slices.ContainsFunc(arts, func(a *protocol.Artifact) bool { return a.ID == "t2" })
	}); err != nil {
		t.Fatal(err)
	}
	e.prompt(id, "after the restore")
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	if err := f.WaitFor(ctx, "the prompt after the restore run", func(arts []*protocol.Artifact) bool {
		return userMessages(arts, "after the restore") == 1 && textAfter(arts, "after the restore") == "You said: after the restore"
	}); err != nil {
		rec, _ := e.c.Session(e.ctx, id)
		t.Fatalf("%v (session: acked %d, pending %d)\nmodel:\n%s", err, rec.AckedCommandID, rec.PendingCommands, strings.Join(render(f.Artifacts()), "\n"))
	}
	e.waitNoPending(id)
	e.waitIdle(id)
	arts := e.assertModelMatchesServer(f, id)
	for _, text := range []string{"before the backup", "after the restore"} {
		if n := userMessages(arts, text); n != 1 {
			t.Errorf("prompt %q ran %d times; want once:\n%s", text, n, strings.Join(render(arts), "\n"))
		}
	}
}

// textAfter is the text of the first assistant message after the user
// message with text ("" when none).
func textAfter(arts []*protocol.Artifact, text string) string {
	seen := false
	for _, a := range arts {
		switch {
		case a.Type == protocol.ArtifactUserMessage && a.String("text") == text:
			seen = true
		case seen && a.Type == protocol.ArtifactAssistantText:
			return a.String("text")
		}
	}
	return ""
}
