package agentd

import "testing"

// SetAgentCommandBuffer makes the channel of commands waiting for the
// agent n deep for tb's duration, so a test fills it with a few commands.
func SetAgentCommandBuffer(tb testing.TB, n int) {
	old := agentCommandBuffer
	agentCommandBuffer = n
	tb.Cleanup(func() { agentCommandBuffer = old })
}
