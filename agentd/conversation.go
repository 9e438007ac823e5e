package agentd

import (
	"log/slog"
	"sync"

	"github.com/rein-ai/rein/agentd/internal/outbox"
)

// conversation is the agent's own conversation id (Claude Code's session,
// Codex's thread, the ACP session, a native agent's conversation), so a
// restarted agent resumes its conversation instead of starting over. It
// lives in memory across crash restarts and, with a state dir, in its
// `conversation` file across agentd restarts.
type conversation struct {
	ob       *outbox.Log // nil without a state dir
	protocol string
	log      *slog.Logger

	mu sync.Mutex
	id string
	// reports counts the ids the agents reported, so a run that resumed
	// an id and never confirmed it can be told apart.
	reports int
}

func newConversation(ob *outbox.Log, protocol string, log *slog.Logger) *conversation {
	c := &conversation{ob: ob, protocol: protocol, log: log}
	if ob != nil {
		id, err := ob.Conversation(protocol)
		if err != nil {
			log.Warn("saved conversation id unreadable; the agent starts a new conversation", "err", err)
		}
		c.id = id
	}
	return c
}

// get is the id to resume ("" for a new conversation) and the count of
// reports so far.
func (c *conversation) get() (id string, reports int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id, c.reports
}

// report records the id the running agent reports for its conversation.
func (c *conversation) report(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reports++
	if id == c.id {
		return
	}
	c.id = id
	c.log.Info("agent conversation", "id", id)
	c.saveLocked()
}

// forget drops an id the agent could not resume, so the next start begins
// a new conversation rather than failing the same way forever.
func (c *conversation) forget(why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.id == "" {
		return
	}
	c.log.Warn("agent did not resume its conversation; the next start begins a new one", "id", c.id, "why", why)
	c.id = ""
	c.saveLocked()
}

func (c *conversation) saveLocked() {
	if c.ob == nil {
		return
	}
	if err := c.ob.SetConversation(c.protocol, c.id); err != nil {
		// Costs only the resume after an agentd restart.
		c.log.Warn("conversation id not saved; an agentd restart starts a new conversation", "err", err)
	}
}
