package agentd

import (
	"log/slog"
	"sync"

	"github.com/rein-ai/rein/agentd/internal/outbox"
	"github.com/rein-ai/rein/protocol"
)

// commandLog follows each command from the stream until the agent took it
// and keeps the command cursor: the id of the last command such that it
// and every one before it were taken. A prompt is taken when a user turn
// starts (its turn_started); an abort or a permission answer when it is
// handed to a live agent; a command agentd drops on purpose (an answer for
// an agent that died) counts as taken. With a state dir the cursor is
// persisted, and a restarted agentd resumes the command stream after it,
// so commands accepted but not taken come again, while a prompt whose turn
// had started does not.
type commandLog struct {
	ob  *outbox.Log // nil: nothing persisted
	log *slog.Logger

	mu     sync.Mutex
	cmds   []trackedCommand // received and not yet behind the cursor, in id order
	saved  bool             // a cursor is known (persisted by this or an earlier agentd, or set in memory)
	cursor int64            // the cursor, also without a state dir: the server hears it (acked)
}

type trackedCommand struct {
	c     protocol.Command
	taken bool
}

func newCommandLog(ob *outbox.Log, log *slog.Logger) *commandLog {
	l := &commandLog{ob: ob, log: log}
	if ob != nil {
		l.cursor, l.saved = ob.Cursor()
	}
	return l
}

// acked is the cursor as the server is told it on every event post
// (protocol.HeaderCommandCursor); ok is false while none is known.
func (l *commandLog) acked() (id int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cursor, l.saved
}

// resume is where the command stream starts: ok is false for a state dir
// with no cursor yet (only commands sent from now on are ours).
func (l *commandLog) resume() (after int64, ok bool) {
	if l.ob == nil {
		return 0, false
	}
	return l.ob.Cursor()
}

// received records a command read from the stream.
func (l *commandLog) received(c protocol.Command) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.saved {
		// The first command of a fresh state dir: those before it were
		// not for this sandbox.
		l.save(c.ID - 1)
	}
	l.cmds = append(l.cmds, trackedCommand{c: c})
}

// took marks the command with id as taken.
func (l *commandLog) took(id int64) {
	if id == 0 {
		return // agentd's own shutdown
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.cmds {
		if l.cmds[i].c.ID == id {
			l.cmds[i].taken = true
			break
		}
	}
	l.advance()
}

// turnStarted marks the oldest prompt not yet taken as taken: agents run
// prompts in the order they get them.
func (l *commandLog) turnStarted() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.cmds {
		if !l.cmds[i].taken && l.cmds[i].c.Type == protocol.CommandPrompt {
			l.cmds[i].taken = true
			break
		}
	}
	l.advance()
}

// prompts are the prompts received and not taken, in order: what a newly
// started agent must get.
func (l *commandLog) prompts() []protocol.Command {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []protocol.Command
	for _, t := range l.cmds {
		if !t.taken && t.c.Type == protocol.CommandPrompt {
			out = append(out, t.c)
		}
	}
	return out
}

// advance moves the cursor over the taken prefix; l.mu is held.
func (l *commandLog) advance() {
	n := 0
	for n < len(l.cmds) && l.cmds[n].taken {
		n++
	}
	if n == 0 {
		return
	}
	last := l.cmds[n-1].c.ID
	l.cmds = l.cmds[n:]
	l.save(last)
}

// save records and persists the cursor; l.mu is held. A failed write is
// logged: the cost is a command replayed after a restart, not one lost.
// Without a state dir the cursor is kept in memory only, for acked.
func (l *commandLog) save(id int64) {
	l.cursor = id
	if l.ob == nil {
		l.saved = true
		return
	}
	if err := l.ob.SetCursor(id); err != nil {
		l.log.Error("command cursor not saved", "id", id, "err", err)
		return
	}
	l.saved = true
}
