package claude_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rein-ai/rein/agentd/internal/claude"
)

// TestReplay feeds the transcripts recorded against the real CLI (see
// TestClaudeTurns, TestClaudeAbort and -record) through the adapter and
// expects the very events those runs produced.
func TestReplay(t *testing.T) {
	for name, want := range scenarios {
		t.Run(name, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", name+".jsonl"))
			if err != nil {
				t.Fatalf("%v (record it: make test-agent-claude RECORD=1)", err)
			}
			defer f.Close()
			cwd, err := os.ReadFile(filepath.Join("testdata", name+".cwd"))
			if err != nil {
				t.Fatal(err)
			}
			evs, err := claude.Replay(f, string(cwd))
			if err != nil {
				t.Fatal(err)
			}
			if got := format(evs, string(cwd)); got != want {
				t.Errorf("replayed %s events:\n got:\n%s\nwant:\n%s", name, got, want)
			}
		})
	}
}
