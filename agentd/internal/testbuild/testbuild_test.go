package testbuild

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A program built for a test has the race detector exactly when the test
// binary has it, as go version -m reads the program's build settings.
func TestBuildMatchesTheTestBinary(t *testing.T) {
	out := filepath.Join(t.TempDir(), "demo-agent")
	if err := Build(".", out, "github.com/rein-ai/rein/agentd/cmd/demo-agent"); err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command("go", "version", "-m", out).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, b)
	}
	if got := strings.Contains(string(b), "-race=true"); got != Race() {
		t.Fatalf("the test binary has -race %v, the program built for it %v:\n%s", Race(), got, b)
	}
}
