package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// agentGone is the notice of the agent_exited a restarted agentd posts
// for the agent that died with the agentd before it.
const agentGone = "notice error: agent exited: agentd stopped while this agent ran (agentd was killed, or its machine or container stopped): the agent is gone, and what it left open ends with it"

// agentScript writes a native agent, a POSIX shell script, into the
// test's directory.
func agentScript(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// A permission request asked outside a turn (after the agent ended its
// turn) does not outlive the agent that asked it when agentd and its
// agent are killed and agentd restarts on the same state dir: it is the
// same instance, so the server sees no takeover and closes nothing, and
// the request stayed in GET /approvals for good, an answer accepted (202)
// and then told as not applied by the new agentd. The new agentd knows
// from its state dir that the agent ran when it died, and posts its exit.
func TestAgentdRestartEndsWhatTheGoneAgentLeftOpen(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	const id = "restartperm"
	e.create(id, "")
	f := Follow(e.ctx, e.c, id)
	t.Cleanup(f.Close)
	asker := agentScript(t, "asker", `echo '{"type":"agent_started","agent":{"name":"asker","protocol":"native"}}'
echo '{"type":"turn_started","turnId":"a1","source":"agent"}'
echo '{"type":"turn_completed","turnId":"a1","stopReason":"end_turn"}'
echo '{"type":"permission_requested","id":"late","title":"asked after its turn","options":[{"id":"allow","name":"Allow","kind":"allow_once"}]}'
while IFS= read -r line; do case $line in *'"type":"shutdown"'*) exit 0 ;; esac; done
`)
	d := e.agentd(e.srv.URL, id, nil, nil, asker)
	var asked *protocol.Artifact
	if err := f.WaitFor(e.ctx, "the request asked after the turn", func(arts []*protocol.Artifact) bool {
		asked = pendingPermission(arts, "asked after its turn")
		return asked != nil
	}); err != nil {
		t.Fatal(err)
	}
	killSandbox(t, d)

	next := agentScript(t, "next", `echo '{"type":"agent_started","agent":{"name":"next","protocol":"native"}}'
echo '{"type":"notice","level":"info","message":"the next agent runs"}'
while IFS= read -r line; do case $line in *'"type":"shutdown"'*) exit 0 ;; esac; done
`)
	e.agentd(e.srv.URL, id, nil, nil, next)
	if err := f.WaitFor(e.ctx, "the next agent's notice", func(arts []*protocol.Artifact) bool {
		for _, a := range arts {
			if a.Type == protocol.ArtifactNotice && a.String("message") == "the next agent runs" {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}

	approvals, err := e.c.Approvals(e.ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range approvals {
		if a.SessionID == id {
			t.Errorf("GET /approvals still lists %q of the agent gone with the killed agentd: %+v", a.RequestID, a)
		}
	}
	if p := pendingPermission(f.Artifacts(), "asked after its turn"); p != nil {
		t.Errorf("the request is still pending in the transcript:\n%s", strings.Join(render(f.Artifacts()), "\n"))
	}
	if _, err := e.c.AnswerPermissionAt(e.ctx, id, asked.ID, asked.Seq, "allow"); protocol.CodeOf(err) != protocol.CodeConflict {
		t.Errorf("an answer to the gone agent's request: %v; want 409 conflict", err)
	}
	arts := e.assertModelMatchesServer(f, id)
	wantTranscript(t, id, arts, []string{
		"turn completed end_turn",
		`permission cancelled "asked after its turn" option=`,
		agentGone,
		"notice info: the next agent runs",
	})
}
