package acp_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rein-ai/rein/agentd/internal/fakemodel"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
)

// geminiModel is the model Gemini CLI is started with: a fixed one, so it
// does not first ask a router model which to use.
const geminiModel = "gemini-2.5-pro"

// geminiEnv runs Gemini CLI against api only, with its state and settings
// in a temporary HOME (no update check, no usage statistics).
func geminiEnv(t *testing.T, api *fakemodel.Gemini) []string {
	t.Helper()
	home := t.TempDir()
	settings := `{"general": {"disableAutoUpdate": true, "disableUpdateNag": true},
 "privacy": {"usageStatisticsEnabled": false}, "telemetry": {"enabled": false},
 "tools": {"shell": {"enableInteractiveShell": false}}}`
	if err := os.MkdirAll(filepath.Join(home, ".gemini"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".gemini", "settings.json"), []byte(settings), 0o644); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "GEMINI_") || strings.HasPrefix(k, "GOOGLE_") || k == "HOME" {
			continue // no real credentials or settings leak into the test
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "GEMINI_API_KEY=dummy", "GOOGLE_GEMINI_BASE_URL="+api.URL)
}

// geminiCommand is the Gemini CLI (REIN_GEMINI_BIN, set by `make
// test-agent-gemini`) in ACP mode, or skips.
func geminiCommand(t *testing.T) []string {
	t.Helper()
	bin := os.Getenv("REIN_GEMINI_BIN")
	if bin == "" {
		t.Skip("REIN_GEMINI_BIN is not set: run `make test-agent-gemini` (the replay covers the adapter without the CLI)")
	}
	return []string{bin, "--acp", "-m", geminiModel}
}

// TestGeminiMatrix runs @google/gemini-cli over ACP through agentd
// against the fake Gemini API, row by row. No --acp-mode: its default mode
// ("default") asks already.
func TestGeminiMatrix(t *testing.T) {
	cmd := geminiCommand(t)
	api := fakemodel.NewGemini(t)
	l := startLiveACPCmd(t, fakeserver.New(t, "acp-live"), t.TempDir(), "", cmd, geminiEnv(t, api), modes["gemini"])
	acpMatrix(t, l, nil)
	l.stop()
	checkAgentVersion(t, l, cliVersion(t, cmd[0]))
	// Memory, at the model: the request of the "recall" turn carried the
	// first turn's prompt.
	if !requestWith(api.Requests(), "think", "recall") {
		t.Errorf("no request carried the first turn with the recall prompt: %q", api.Requests())
	}
	recordACP(t, l, "gemini")
}
