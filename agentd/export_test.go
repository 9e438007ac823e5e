package agentd

import (
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// SetAgentCommandBuffer makes the channel of commands waiting for the
// agent n deep for tb's duration, so a test fills it with a few commands.
func SetAgentCommandBuffer(tb testing.TB, n int) {
	old := agentCommandBuffer
	agentCommandBuffer = n
	tb.Cleanup(func() { agentCommandBuffer = old })
}

// OnRepost has f called each time agentd re-posts agent_started after a
// command stream (re)connect, just before it queues it, with the number
// of events queued then, for tb's duration.
func OnRepost(tb testing.TB, f func(queued int)) {
	testHookReposting = f
	tb.Cleanup(func() { testHookReposting = nil })
}

// OnQueued has f called with each event of the agent's once it is
// queued, for tb's duration.
func OnQueued(tb testing.TB, f func(protocol.Event)) {
	testHookQueued = f
	tb.Cleanup(func() { testHookQueued = nil })
}
