package acp_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/rein-ai/rein/agentd/internal/acp"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

// discard is an agent's stdin that takes every write.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) Close() error                { return nil }

// An agent whose output ends at once (it died as it started) ends Serve
// with the handshake's error. The SDK's reader met that end, and logged
// it, while Serve was still giving the SDK its logger: a data race the
// race detector caught in agentd's TestSlowHandshakeReportsAgentStarted
// on a loaded machine. Nothing reaches the SDK's reader now before its
// logger is set; under -race this fails without that.
func TestAgentGoneAtOnce(t *testing.T) {
	for range 20 {
		err := acp.Serve(context.Background(), acp.Options{
			Stdin: discard{}, Stdout: io.NopCloser(strings.NewReader("")),
			Commands: make(chan protocol.Command), Emit: func(context.Context, protocol.Event) error { return nil },
			Name: "gone", Cwd: "/work", Logger: fakeserver.Logger(t, 0),
		})
		if err == nil || !strings.Contains(err.Error(), "initialize") {
			t.Fatalf("Serve = %v, want the handshake's initialize error", err)
		}
	}
}
