package agentd

import (
	"log/slog"
	"slices"
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
	// before are the commands after the cursor that an earlier agentd's
	// agent took (outbox.Log.Taken), not yet received again: an abort
	// handed over while the prompt before it waited for the turn it
	// aborted. The command stream gives them again (they are after the
	// cursor), and they must not reach the new agent: the abort would
	// stop a turn nobody aborted.
	before map[int64]bool
}

type trackedCommand struct {
	c     protocol.Command
	taken bool
}

func newCommandLog(ob *outbox.Log, log *slog.Logger) *commandLog {
	l := &commandLog{ob: ob, log: log, before: map[int64]bool{}}
	if ob != nil {
		l.cursor, l.saved = ob.Cursor()
		for _, id := range ob.Taken() {
			l.before[id] = true
		}
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

// received records a command read from the stream. again reports a
// command the agent of an earlier agentd took: it counts as taken, and
// must not be given to the agent.
func (l *commandLog) received(c protocol.Command) (again bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.saved {
		// The first command of a fresh state dir: those before it were
		// not for this sandbox.
		l.save(c.ID - 1)
	}
	if l.before[c.ID] {
		delete(l.before, c.ID)
		l.cmds = append(l.cmds, trackedCommand{c: c, taken: true})
		l.advance()
		return true
	}
	l.cmds = append(l.cmds, trackedCommand{c: c})
	return false
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
	l.saveTaken()
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
	l.saveTaken()
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

// saveTaken persists the commands taken after the cursor (those the
// cursor could not pass, and those of an earlier agentd not received
// again yet), when there are any; l.mu is held. A file left listing
// commands the cursor has passed since says nothing more than the
// cursor. A failed write is logged: the cost is a command given to the
// agent again after a restart.
func (l *commandLog) saveTaken() {
	if l.ob == nil {
		return
	}
	var ids []int64
	for _, t := range l.cmds {
		if t.taken {
			ids = append(ids, t.c.ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	for id := range l.before {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if err := l.ob.SetTaken(ids); err != nil {
		l.log.Error("commands taken after the cursor not saved", "ids", ids, "err", err)
	}
}

// save records and persists the cursor; l.mu is held. A failed write is
// logged: the cost is a command replayed after a restart, not one lost.
// The cursor is known all the same (a fresh state dir's first command
// set it): left unknown, the next command would set it again, just
// before itself, past the first one although it was not taken, and the
// next write that succeeds would persist that.
// Without a state dir the cursor is kept in memory only, for acked.
func (l *commandLog) save(id int64) {
	l.cursor, l.saved = id, true
	if l.ob == nil {
		return
	}
	if err := l.ob.SetCursor(id); err != nil {
		l.log.Error("command cursor not saved", "id", id, "err", err)
	}
}
