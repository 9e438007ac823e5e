package acp_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rein-ai/rein/agentd/internal/fakemodel"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
)

// opencodeModel is the model opencode is configured with: Anthropic's
// provider, its base URL pointed at the fake.
const opencodeModel = "anthropic/claude-sonnet-4-5"

// opencodeEnv runs opencode against api only: its config (provider,
// model, permissions that ask) in OPENCODE_CONFIG_CONTENT, its state in
// temporary HOME and XDG dirs, no models.dev fetch, update or share.
func opencodeEnv(t *testing.T, api *fakemodel.Anthropic) []string {
	t.Helper()
	cfg, err := json.Marshal(map[string]any{
		"$schema":    "https://opencode.ai/config.json",
		"model":      opencodeModel,
		"autoupdate": false,
		"share":      "disabled",
		"provider": map[string]any{"anthropic": map[string]any{
			"options": map[string]any{"baseURL": api.URL + "/v1", "apiKey": "dummy"},
		}},
		// Ask before running commands and editing, as a Rein user
		// expects to be asked.
		"permission": map[string]any{"bash": "ask", "edit": "ask"},
	})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "OPENCODE_") || strings.HasPrefix(k, "ANTHROPIC_") || strings.HasPrefix(k, "XDG_") || k == "HOME" {
			continue // no real credentials or settings leak into the test
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+filepath.Join(root, "home"), "OPENCODE_CONFIG_CONTENT="+string(cfg),
		"OPENCODE_DISABLE_MODELS_FETCH=1", "OPENCODE_DISABLE_AUTOUPDATE=1", "OPENCODE_DISABLE_SHARE=1",
		"OPENCODE_DISABLE_LSP_DOWNLOAD=1", "OPENCODE_DISABLE_DEFAULT_PLUGINS=1")
	for _, d := range []string{"HOME", "CONFIG", "DATA", "CACHE", "STATE"} {
		if err := os.MkdirAll(filepath.Join(root, strings.ToLower(d)), 0o755); err != nil {
			t.Fatal(err)
		}
		if d != "HOME" {
			env = append(env, "XDG_"+d+"_HOME="+filepath.Join(root, strings.ToLower(d)))
		}
	}
	return env
}

// opencodeCommand is opencode (REIN_OPENCODE_BIN, set by `make
// test-agent-opencode`) as an ACP agent, or skips.
func opencodeCommand(t *testing.T) []string {
	t.Helper()
	bin := os.Getenv("REIN_OPENCODE_BIN")
	if bin == "" {
		t.Skip("REIN_OPENCODE_BIN is not set: run `make test-agent-opencode` (the replay covers the adapter without the CLI)")
	}
	return []string{bin, "acp"}
}

// TestOpencodeMatrix runs opencode-ai's `opencode acp` through agentd
// against the fake Anthropic API, row by row.
func TestOpencodeMatrix(t *testing.T) {
	cmd := opencodeCommand(t)
	api := fakemodel.NewAnthropic(t)
	l := startLiveACPCmd(t, fakeserver.New(t, "acp-live"), t.TempDir(), "", cmd, opencodeEnv(t, api), modes["opencode"])
	acpMatrix(t, l, nil)
	l.stop()
	checkAgentVersion(t, l, cliVersion(t, cmd[0]))
	if !requestWith(api.Requests(), "think", "recall") {
		t.Errorf("no request carried the first turn with the recall prompt: %q", api.Requests())
	}
	recordACP(t, l, "opencode")
}

// TestOpencodeResume: a restarted agentd's opencode loads the session of
// the one before (session/load); see acpResume.
func TestOpencodeResume(t *testing.T) {
	cmd := opencodeCommand(t)
	acpResume(t, cmd, opencodeEnv(t, fakemodel.NewAnthropic(t)), "opencode")
}
