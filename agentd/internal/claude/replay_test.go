package claude_test

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rein-ai/rein/agentd/internal/claude"
)

// TestReplay feeds the transcripts recorded against the real CLI (see
// TestClaudeTurns, TestClaudeAbort, TestClaudeMatrix and -record) through
// the adapter and expects the very events those runs produced: the
// scenarios here, or testdata/<name>.events.jsonl.
func TestReplay(t *testing.T) {
	want := maps.Clone(scenarios)
	files, _ := filepath.Glob(filepath.Join("testdata", "*.events.jsonl"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want[strings.TrimSuffix(filepath.Base(f), ".events.jsonl")] = string(b)
	}
	if _, ok := want["matrix"]; !ok {
		t.Errorf("testdata/matrix.events.jsonl is missing (record it: make test-agent-claude RECORD=1)")
	}
	for name, want := range want {
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
