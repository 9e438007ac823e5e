package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
	"github.com/rein-ai/rein/server/internal/hub"
	"github.com/rein-ai/rein/server/store"
)

// Command acknowledgement, initial and queued prompts, and the turn a
// superseded sandbox instance left open.
//
// The server keeps per session the id of the last command the sandbox
// acknowledged (AckedCommandID): it and every command before it were taken
// by the agent. The current holder of the command stream says so twice:
// with Last-Event-ID when it opens the stream (agentd's persisted command
// cursor; see resumeAck) and with the protocol.HeaderCommandCursor header
// on its event posts (heartbeats included), which moves it as the agent
// takes commands. Its latest word counts, even one lower than before. A
// connection without Last-Event-ID (a new instance, or one with no cursor
// yet) gets every command after the acknowledged one, so a prompt
// accepted with 202 and never taken reaches whichever sandbox comes next.

// setAcked records that the sandbox acknowledged the commands up to n,
// clamped to the commands that exist; it reports whether the record
// changed.
func (e *entry) setAcked(n int64) bool {
	n = min(max(n, 0), e.rec.LastCommandID)
	if n == e.rec.AckedCommandID && e.rec.PendingCommands == e.rec.LastCommandID-n {
		return false
	}
	e.rec.AckedCommandID = n
	e.rec.PendingCommands = e.rec.LastCommandID - n
	return true
}

// maxSeenCommandID bounds the command id a sandbox can make the session
// number its next commands after (seen): ids stay numbers every client
// reads exactly (JavaScript's safe integers), and far from overflowing.
const maxSeenCommandID = 1<<53 - 1

// seen raises the session's last command id to n, the id of a command the
// sandbox says it was given (Last-Event-ID) or took (its cursor), when n
// is above every command the server holds: the database went back under
// the sandbox (restored from an older backup, or commits lost with a
// disk synced less than fully), and the commands up to n it lacks were
// delivered before. agentd skips a command whose id is not above the
// last one it was given (a replay overlapping what it has), so the next
// command numbered from the restored history would never reach the
// agent while its cursor said it was taken. Numbered after n, it does.
// It reports whether the record changed; setAcked then counts the
// pending commands again.
func (e *entry) seen(n int64) bool {
	if n <= e.rec.LastCommandID || n > maxSeenCommandID {
		return false
	}
	e.rec.LastCommandID = n
	return true
}

// seen is e.seen(n), logged once committed: a database that went back
// under a running sandbox is worth an operator's look, and a replica's
// view that was merely behind another's commit is redone, not logged.
func (w *writer) seen(g *group, id string, e *entry, n int64) {
	last := e.rec.LastCommandID
	if e.seen(n) {
		g.onCommit(func() {
			w.log.Warn("the sandbox had commands this session no longer holds (its database went back: restored from a backup, or commits lost): numbering the next ones after them",
				slog.String("session", id), slog.Int64("sandboxHad", n), slog.Int64("lastStored", last))
		})
	}
}

// resumeAck is what a command stream opened with Last-Event-ID after
// acknowledges, acked being the session's acknowledged command so far.
// From an instance other than the current one (a new agentd, or an opener
// with no Rein-Instance) it is the word. From the current instance, the
// one that last opened the stream (same), whether its stream is still
// open or not, and so also an agentd restarted on its state dir, which
// keeps its instance id, it can only lower acked: agentd's in-process
// reconnection sends the last command it received, which the agent may
// not have taken yet; what it took comes with the cursor header.
func resumeAck(same bool, after, acked int64) int64 {
	if same {
		return min(after, acked)
	}
	return after
}

// addCommand gives cmd the session's next id, adds it to the group and
// returns it, its stream message (published after the commit) and the
// time it is stored with. The stored
// command never carries Queue: that is between the client and the server.
// It cannot fail, so a request that adds a command after other writes
// (createReq) never has to undo them: a Command is strings, integers and
// a bool, which always encode.
// key is the client's Idempotency-Key ("" for none), stored with it.
func (w *writer) addCommand(g *group, id string, e *entry, cmd protocol.Command, key string) (protocol.Command, *hub.Message, int64) {
	cmd.ID = e.rec.LastCommandID + 1
	cmd.Queue = false
	body, _ := json.Marshal(cmd)
	e.rec.LastCommandID = cmd.ID
	e.rec.PendingCommands = e.rec.LastCommandID - e.rec.AckedCommandID
	at := w.opts.Now().UnixMilli()
	g.ops = append(g.ops, store.AddCommand{SessionID: id, Command: store.Command{ID: cmd.ID, Body: body, CreatedAt: at, Key: key}})
	if key != "" {
		if g.keyed == nil {
			g.keyed = map[string]map[string]protocol.Command{}
		}
		if g.keyed[id] == nil {
			g.keyed[id] = map[string]protocol.Command{}
		}
		g.keyed[id][key] = cmd
	}
	return cmd, &hub.Message{Event: protocol.SSECommand, Data: body, Seq: cmd.ID}, at
}

// Idempotency keys. A client that sent a command and lost the answer (a
// timeout, a cut connection, a replica that died after its commit) cannot
// tell whether it was stored; sending it again without a key may give the
// agent the same prompt twice. With protocol.HeaderIdempotencyKey the
// retry is safe: the key is stored with the command (one per session, a
// unique index in both backends), and a command whose key the session
// already has is answered with the stored command's id instead of being
// stored again, or refused when it is a different command.
//
// The lookup runs in the writer, before the command would be added, so
// two sends of one key never both store: within a group the second finds
// the first in group.keyed; across groups the first is committed and the
// store has it. On replicas, a replica whose view of the session is older
// than another replica's commit of the key expects the older version and
// is redone (writer.redo), and the redo finds the key. The unique index
// is the backstop: a commit that would store a key twice fails whole.

// replay answers r when its key names a command the session already has
// (stored, or added earlier in this group): the same command gets that
// command's id, marked replayed; a different one is a conflict. It
// reports whether r was answered (or is, after the group's commit).
func (r *commandReq) replay(w *writer, g *group) (bool, error) {
	prev, pending := g.keyed[r.id][r.key]
	if !pending {
		if g.removed[r.id] {
			// Deleted in this group, so created again in it: nothing
			// stored is the new session's.
			return false, nil
		}
		ctx, cancel := w.storeCtx()
		defer cancel()
		c, ok, err := w.store.CommandByKey(ctx, r.id, r.key)
		if err != nil {
			return false, unavailable("find command by key session="+r.id, err)
		}
		if !ok {
			return false, nil
		}
		if err := json.Unmarshal(c.Body, &prev); err != nil {
			return false, fmt.Errorf("decode stored command session=%s id=%d: %w", r.id, c.ID, err)
		}
		prev.ID = c.ID
	}
	want := r.cmd
	want.ID, want.Queue = prev.ID, false
	// The request's event is the server's word, not part of what the
	// client sent.
	want.RequestInstance, want.RequestAgentSeq = prev.RequestInstance, prev.RequestAgentSeq
	if want.RequestSeq == 0 {
		// The server named the request an answer without one was
		// checked against (commandReq.apply).
		want.RequestSeq = prev.RequestSeq
	}
	if want != prev {
		return false, protocol.Errorf(protocol.CodeConflict, "%s header: %q was already used for command %d of session %q (a %s), and this is a different command; send a new command with a new key",
			protocol.HeaderIdempotencyKey, r.key, prev.ID, r.id, prev.Type)
	}
	sent := SentCommand{ID: prev.ID, Replayed: true}
	answer := func() {
		// Info, not a warning: a client did what it should after a
		// lost answer. Many of them say the network in between is bad.
		w.log.Info("command resent: answered with the stored one", slog.String("session", r.id), slog.Int64("command", prev.ID), slog.String("type", string(prev.Type)))
		w.obs.CommandAccepted(true)
		r.reply.ok(sent)
	}
	if !pending {
		answer()
		return true, nil
	}
	// The first is not committed yet: answer with it.
	failOn(g, r.reply)
	g.onCommit(answer)
	return true, nil
}

// commandsChanged publishes the session's acknowledged and pending
// command counts after the commit.
func (w *writer) commandsChanged(g *group, e *entry) {
	acked, pending := e.rec.AckedCommandID, e.rec.PendingCommands
	data, err := json.Marshal(protocol.SessionUpdated{ID: e.rec.ID, Fields: protocol.SessionFields{AckedCommandID: &acked, PendingCommands: &pending}})
	if err != nil {
		w.log.Error("encode session_updated", slog.Any("err", err))
		return
	}
	msg := &hub.Message{Event: protocol.SSESessionUpdated, Data: data, Key: deref(e.rec.Project)}
	g.onCommit(func() { w.hub.Publish(sessionsTopic, msg) })
}

// ackReq is a sandbox's command cursor as it came with an event post.
type ackReq struct {
	id     string
	from   Sandbox // who sent it; see admitSandbox
	cursor int64
	reply  reply[struct{}]
}

// apply takes the cursor only from the current instance, the one that
// last opened the command stream; a post with no Rein-Instance counts only
// while the current instance has none either. Any other instance's cursor
// is ignored, and a superseded one is refused (admitSandbox): its word on
// commands no longer counts.
func (r *ackReq) apply(w *writer, g *group) {
	e, stale, err := admitSandbox(w, g, r.id, r.from)
	if err != nil {
		r.reply.fail(err)
		return
	}
	if stale {
		applyAgain(g, r.id, r.reply)
		return
	}
	if r.from.Instance == e.rec.CurrentInstance {
		w.seen(g, r.id, e, r.cursor)
		if e.setAcked(r.cursor) {
			w.commandsChanged(g, e)
		}
	}
	failOn(g, r.reply)
	g.onCommit(func() { r.reply.ok(struct{}{}) })
}

// noteTurn keeps the instance of the event le when its changes cs
// started a turn.
func (s *state) noteTurn(le store.Event, cs []reducer.Change) {
	for _, c := range cs {
		if c.Kind == reducer.Created && c.Artifact.Type == protocol.ArtifactTurn {
			s.turnBy = le.Instance
		}
	}
}

// interruptTurn closes the session's open turn, if any, as interrupted: a
// new sandbox instance took over, so whatever ran the turn is gone and the
// turn will never end by itself. The server writes a turn_completed
// {stopReason: interrupted} into the event log through the same stages as
// events a sandbox posts (instance "", agentSeq 0), so the transcript,
// replay from the log and resume all agree. With no turn open it closes
// what is open outside any turn the same way. A turn the new instance
// started itself is left open: agentd posts before its command stream is
// open, its agent's own turns included, and that turn goes on. It reports
// an error only when the session's state cannot be read.
func (w *writer) interruptTurn(g *group, id string, e *entry, newInstance string) error {
	st, err := w.state(g, id)
	if err != nil {
		return unavailable("interrupt turn session="+id, err)
	}
	if !st.st.Open() || (st.st.TurnOpen() && st.turnBy == newInstance) {
		return nil
	}
	now := w.opts.Now()
	by := fmt.Sprintf("sandbox instance %q", newInstance)
	if newInstance == "" {
		by = "a command stream without " + protocol.HeaderInstance
	}
	ev := protocol.Event{
		Type: protocol.EventTurnCompleted, Ts: now.UnixMilli(), StopReason: protocol.StopInterrupted,
		Error: fmt.Sprintf("%s took over the session; %q, which ran the turn, is gone", by, e.rec.CurrentInstance),
	}
	events := []protocol.Event{ev}
	if !st.st.TurnOpen() {
		// What the gone instance left open outside any turn (a
		// permission request asked between turns, say) would wait for
		// good: the new instance never heard of it, and the gone one's
		// posts are refused. A turn_completed naming no turn closes it,
		// as it does when a sandbox sends one; the notice says why,
		// which a turn's end says in its own notice.
		events = []protocol.Event{{
			Type: protocol.EventNotice, Ts: now.UnixMilli(), Level: protocol.LevelWarning, NoticeCode: "sandbox_taken_over",
			Message: fmt.Sprintf("sandbox instance %q took over the session; what %q left open (a permission request, a tool call) ends with it", newInstance, e.rec.CurrentInstance),
		}, {Type: protocol.EventTurnCompleted, Ts: now.UnixMilli(), StopReason: protocol.StopInterrupted}}
	}
	r := &eventsReq{id: id, events: events, reply: newReply[protocol.EventsAccepted]()}
	b := &ingest{st: st, keep: make([]int, len(events))}
	for i := range b.keep {
		b.keep[i] = i
	}
	if err := r.stamp(b, now.UnixMilli()); err != nil {
		return err
	}
	f, err := r.fold(g, b, now.UnixMilli())
	if err != nil {
		g.abort(err)
		return unavailable("interrupt turn session="+id, err)
	}
	// The turn's end cancels the requests its agent made: they leave
	// the inbox as they do when a sandbox ends a turn.
	w.observeApprovals(g, e, st.st, f.changes)
	// The status is the opening's (takenOver: live), set next in the
	// same commit: the idle this turn's end implies would be told on the
	// session stream though the database never holds it.
	f.implied = ""
	r.record(w, g, e, b, f, now)
	r.publish(w, g, b, f)
	return nil
}

// AckCommands records a sandbox's command cursor (the
// protocol.HeaderCommandCursor of an event post) from the sandbox from;
// from.Token, when set, must still be the session's sandbox token.
func (s *Server) AckCommands(ctx context.Context, id string, from Sandbox, cursor int64) error {
	r := newReply[struct{}]()
	if _, err := call(ctx, s.w, &ackReq{id: id, from: from, cursor: cursor, reply: r}, r); err != nil {
		return fmt.Errorf("acknowledge commands session=%s: %w", id, err)
	}
	return nil
}

// CreateSessionWithPrompt is CreateSession with an initial prompt: it is
// stored as command 1 and delivered when a sandbox first connects.
// prompt "" means none.
func (s *Server) CreateSessionWithPrompt(ctx context.Context, id, project, prompt string) (CreatedSession, error) {
	return s.createSession(ctx, id, project, prompt)
}
