package agentd

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/rein-ai/rein/agentd/internal/outbox"
	"github.com/rein-ai/rein/protocol"
)

// The first command a fresh state dir receives sets the cursor just
// before it; when that cursor is not written (the disk refused it), the
// next command must not set it again just before itself: the first one,
// not taken, would then be behind a cursor written once the disk takes
// writes again, and a restarted agentd would never get it. Here the
// cursor's new file cannot be created (a directory holds its name) until
// it is removed.
func TestCursorOfAFreshStateDirIsSetOnce(t *testing.T) {
	dir := t.TempDir()
	ob, err := outbox.Open(outbox.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	block := filepath.Join(dir, "cursor.tmp")
	if err := os.Mkdir(block, 0o700); err != nil {
		t.Fatal(err)
	}
	l := newCommandLog(ob, slog.New(slog.DiscardHandler))
	prompt := func(id int64) protocol.Command {
		return protocol.Command{ID: id, Type: protocol.CommandPrompt, Text: "p"}
	}
	l.received(prompt(1)) // the cursor, 0, is not written
	l.received(prompt(2))
	if err := os.Remove(block); err != nil {
		t.Fatal(err)
	}
	l.received(prompt(3))
	if id, ok := ob.Cursor(); ok && id > 0 {
		t.Fatalf("cursor written as %d while no prompt was taken: a restarted agentd would skip prompts 1 to %d", id, id)
	}
	l.turnStarted()
	if id, ok := ob.Cursor(); !ok || id != 1 {
		t.Fatalf("cursor after prompt 1 was taken = %d, %v; want 1", id, ok)
	}
	if id, ok := l.acked(); !ok || id != 1 {
		t.Fatalf("cursor told the server = %d, %v; want 1", id, ok)
	}
}
