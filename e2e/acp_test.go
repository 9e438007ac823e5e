package e2e

import (
	"os"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// 10. The ACP SDK's example agent, driven through agentd end to end: its
// scripted turn streams text, runs two tool calls and asks permission for
// the second, which a client approves.
func TestACPExampleAgent(t *testing.T) {
	agent := os.Getenv("REIN_ACP_AGENT")
	if agent == "" {
		t.Skip("REIN_ACP_AGENT is not set: run through `make test`, which builds the ACP example agent into bin/tools")
	}
	e := newEnv(t)
	e.create("acp", "")
	f := Follow(e.ctx, e.c, "acp")
	defer f.Close()
	e.agentd(e.srv.URL, "acp", nil, []string{"--protocol", "acp"}, agent)
	e.waitIdle("acp")
	e.prompt("acp", "fix the config")
	reqID := waitPermission(t, e.ctx, f)
	if _, err := e.c.Command(e.ctx, "acp", protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: reqID, OptionID: "allow"}); err != nil {
		t.Fatal(err)
	}
	waitTurns(t, e.ctx, f, 1)
	arts := e.assertModelMatchesServer(f, "acp")
	wantTranscript(t, "acp", arts, []string{
		"turn completed end_turn",
		"user: fix the config",
		"text done: ACP Go Example Agent — demo only (no AI model).I'll help you with that. Let me start by reading some files to understand the current situation.",
		// ACP tool content is the tool's output (what rein watch and the
		// web view show).
		`tool read completed exit=<nil> output="# My Project\n\nThis is a sample project..."`,
		"text done:  Now I understand the project structure. I need to make some changes to improve it.",
		`tool edit completed exit=<nil> output=""`,
		`permission approved "Modifying critical configuration file" option=allow`,
		"text done:  Perfect! I've successfully updated the configuration. The changes have been applied.",
	})
}
