package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
	"github.com/rein-ai/rein/server/internal/hub"
	"github.com/rein-ai/rein/server/store"
)

// The writer's requests. Each apply either answers at once (a domain
// error, nothing written) or adds writes to the group and answers after
// the commit.

// createdAt is a new session's createdAt: now, or a millisecond after the
// latest one this writer gave or loaded when the clock has not passed it.
// A session deleted and created again under its id within one
// millisecond (a script's delete then create, on loopback), or after the
// clock stepped back, thus still gets a createdAt of its own, and
// protocol.HeaderSessionCreated tells the old session's sandbox from the
// new one's. Only a burst of more than a thousand creates a second moves
// createdAt ahead of the clock, by as much as the burst outran it.
func (w *writer) createdAt() int64 {
	w.lastCreated = max(w.opts.Now().UnixMilli(), w.lastCreated+1)
	return w.lastCreated
}

type createReq struct {
	id      string
	project *string
	prompt  *string  // the initial prompt, stored as command 1
	sandbox [32]byte // the new session's sandbox token hash
	reply   reply[protocol.Session]
}

func (r *createReq) apply(w *writer, g *group) {
	if g.entry(r.id) != nil {
		// On a shared database the session may have been deleted through
		// another replica a moment ago, the announcement not heard here
		// yet (a script's delete then create, sent to two replicas): the
		// row is read before a refusal, and a cache found behind makes
		// the group run again on what the database holds.
		behind, err := w.behind(g, r.id, "check session exists")
		if err != nil {
			r.reply.fail(err)
			return
		}
		if behind {
			if g.retries < maxRetries {
				applyAgain(g, r.id, r.reply)
				return
			}
			r.reply.fail(unavailable("check session exists session="+r.id, errors.New("the session keeps changing on another server")))
			return
		}
		r.reply.fail(protocol.Errorf(protocol.CodeConflict, "session %q already exists", r.id))
		return
	}
	status, _ := nextStatus("", created, facts{})
	rec := protocol.Session{ID: r.id, Status: status, Project: r.project, CreatedAt: w.createdAt()}
	w.clock++
	h := r.sandbox
	e := &entry{rec: store.Session{Session: rec}, order: w.clock, sandbox: &h, bootFrom: w.opts.Now()}
	g.put(r.id, e)
	g.ops = append(g.ops, store.CreateSession{Session: rec}, store.SetSandboxToken{SessionID: r.id, Hash: h, At: rec.CreatedAt})
	if r.prompt != nil {
		// Nobody is subscribed yet: the first sandbox gets it as a
		// pending command (see commands.go).
		w.addCommand(g, r.id, e, protocol.Command{Type: protocol.CommandPrompt, Text: *r.prompt}, "")
		rec = e.rec.Session
	}
	// A new session has an empty log: install its state rather than read
	// a log that, within this group, may still hold a deleted namesake's.
	w.states[r.id] = &state{st: reducer.New(), maxSeq: map[string]int64{}, nextPos: 1, used: w.clock, policy: newArtifactPolicy()}
	g.states[r.id] = true
	delete(g.dirty, r.id)
	data, _ := json.Marshal(protocol.SessionPayload{Session: rec})
	msg := &hub.Message{Event: protocol.SSESessionCreated, Data: data, Key: deref(r.project)}
	failOn(g, r.reply)
	g.onCommit(func() {
		w.log.Info("session created", slog.String("session", r.id), slog.String("project", deref(r.project)))
		w.obs.SessionCreated()
		w.index.set(r.id, h)
		w.hub.Publish(sessionsTopic, msg)
		r.reply.ok(rec)
	})
}

type deleteReq struct {
	id    string
	reply reply[struct{}]
}

func (r *deleteReq) apply(w *writer, g *group) {
	e := g.entry(r.id)
	if e == nil {
		r.reply.fail(g.missing(r.id))
		return
	}
	w.remove(g, r.id, e)
	failOn(g, r.reply)
	g.onCommit(func() { r.reply.ok(struct{}{}) })
}

func notFound(id string) error {
	return protocol.Errorf(protocol.CodeNotFound, "session %q not found", id)
}

type commandReq struct {
	id    string
	cmd   protocol.Command
	key   string // its Idempotency-Key, "" for none
	reply reply[SentCommand]
}

func (r *commandReq) apply(w *writer, g *group) {
	e := g.entry(r.id)
	if e == nil {
		r.reply.fail(g.missing(r.id))
		return
	}
	if r.key != "" {
		// Before no_sandbox: a command stored while a sandbox was
		// there was accepted, whatever holds the stream now.
		done, err := r.replay(w, g)
		if err != nil {
			r.reply.fail(err)
			return
		}
		if done {
			return
		}
	}
	if !r.cmd.Queue {
		held, err := w.held(g, r.id, e)
		if err != nil {
			r.reply.fail(err)
			return
		}
		if !held {
			r.reply.fail(noSandboxErr(r.id, r.cmd.Type))
			return
		}
	}
	cmd := r.cmd
	cmd.RequestInstance, cmd.RequestAgentSeq = "", 0 // the server's to say
	if r.cmd.Type == protocol.CommandPermissionResponse {
		// After the replay: the retry of an answer that was stored
		// gets its 202 again, though its request is answered now.
		stale, err := w.answerable(g, r.id, r.cmd)
		if err != nil {
			r.reply.fail(err)
			return
		}
		if stale {
			applyAgain(g, r.id, r.reply)
			return
		}
		seq, by, err := w.askedBy(g, r.id, r.cmd)
		if err != nil {
			r.reply.fail(err)
			return
		}
		cmd.RequestInstance, cmd.RequestAgentSeq = by.instance, by.agentSeq
		// Stored naming the request it was checked against, so an
		// answer read back from the store (a restart, another replica)
		// is matched to its request by seq, not by comparing its time
		// with the request's: those are two clocks (two replicas, or
		// one stepped back between them), and an answer whose time
		// came out earlier was taken for one to an earlier request
		// with the id and dropped.
		cmd.RequestSeq = seq
	}
	cmd, msg, at := w.addCommand(g, r.id, e, cmd, r.key)
	if cmd.Type == protocol.CommandPermissionResponse {
		if g.answers == nil {
			g.answers = map[approvalKey]int64{}
		}
		g.answers[approvalKey{r.id, cmd.RequestID}] = cmd.ID
	}
	w.commandsChanged(g, e)
	failOn(g, r.reply)
	project := e.rec.Project
	g.onCommit(func() {
		if cmd.Type == protocol.CommandPermissionResponse {
			// At the stored command's time, as other replicas and a
			// restart read it back (recordAnswers).
			if n, ok := w.approvals.answered(r.id, cmd, at, false); ok {
				w.publishPending(r.id, project, n)
			}
		}
		w.hub.Publish(commandTopic(r.id), msg)
		w.obs.CommandAccepted(false)
		r.reply.ok(SentCommand{ID: cmd.ID})
	})
}

type eventsReq struct {
	id     string
	from   Sandbox // who sent it; see admitSandbox
	events []protocol.Event
	// raws[i], when not nil, is events[i] as the sandbox sent it: stored
	// with receivedAt added instead of encoded again (json.Marshal of each
	// event was ~11% of batched ingest). It decodes to the same Event.
	raws  [][]byte
	reply reply[protocol.EventsAccepted]
}

// apply ingests a batch in stages, each its own method: admit (the session
// exists, the token is current, the instance not superseded), dedupe,
// stamp (receivedAt, the stored bytes), caps, fold (reducer and event
// log), record (the session row and its status) and publish. The stages
// before fold change nothing, so a refusal there leaves every state as it
// was.
func (r *eventsReq) apply(w *writer, g *group) {
	e, stale, err := admitSandbox(w, g, r.id, r.from)
	if err != nil {
		r.reply.fail(err)
		return
	}
	if stale {
		applyAgain(g, r.id, r.reply)
		return
	}
	now := w.opts.Now()
	ms := now.UnixMilli()
	b, err := r.dedupe(w, g)
	if err != nil {
		r.reply.fail(err)
		return
	}
	if err := r.stamp(b, ms); err != nil {
		r.reply.fail(err)
		return
	}
	if err := r.checkCaps(w, b); err != nil {
		r.reply.fail(err)
		return
	}
	f, err := r.fold(g, b, ms)
	if err != nil {
		// The state took part of the batch: the whole group fails, and
		// with it the state (see writer.fail).
		failOn(g, r.reply)
		g.abort(err)
		return
	}
	if b.st != nil {
		w.observeApprovals(g, e, b.st.st, f.changes)
	}
	r.record(w, g, e, b, f, now)
	r.publish(w, g, b, f)
}

// ingest is a batch on its way through the stages.
type ingest struct {
	st        *state // nil when the batch holds only heartbeats
	res       protocol.EventsAccepted
	heartbeat bool
	keep      []int         // indices into events of the events to store
	logged    []store.Event // keep's log entries, from stamp on
	bytes     int64         // their stored size
	fromRev   int64         // the session's revision before the batch (record)
}

// folded is what the reducer made of the kept events.
type folded struct {
	changes []reducer.Change
	implied protocol.SessionStatus
	summary *string
}

// admitSandbox finds the session a sandbox request names and refuses it
// when the session is gone, the sandbox token it came with was rotated
// (from.Token, see entry.accepts), its instance was superseded, or it
// belongs to a session deleted since and created again with the same id
// (from.Created, see sameSession). A superseded agentd must not act on
// the session: on the command stream it would flip-flop with the
// instance that replaced it forever. stale reports instead that this
// replica's view of the session is behind the database: the group is to
// be applied again once it has read the session again.
func admitSandbox(w *writer, g *group, id string, from Sandbox) (e *entry, stale bool, err error) {
	e = g.entry(id)
	if e == nil {
		return nil, false, g.missing(id)
	}
	if !e.accepts(from.Token) {
		return nil, false, revokedErr(id)
	}
	if stale, err := w.sameSession(g, id, e, from.Created); stale || err != nil {
		return nil, stale, err
	}
	if e.superseded(from.Instance) {
		return nil, false, supersededErr(from.Instance, id)
	}
	return e, false, nil
}

// sameSession refuses a sandbox request that names another createdAt
// (created, 0 for none) than session id's: it comes from a sandbox of a
// session deleted since and created again with the same id (an agentd
// cut off while that happened, or restarted on the old session's state
// dir). With authentication on its sandbox token already tells; without,
// only this does. Taken, its Last-Event-ID would acknowledge the new
// session's commands, which its own sandbox then never gets, its events
// would enter the new session's transcript, and its instance would take
// the stream over from the new session's sandbox. The check is in the
// writer, where the session is the one the request then acts on. On a
// shared database this replica's cache may not have heard of a delete and
// create on another one: the row is read before a refusal (a new
// session's own sandbox must not be refused, agentd takes it as final),
// and a cache found behind makes the group run again on the row (stale).
// The opposite, a cache still holding the old session that the request
// names, is caught by the commit's Expect and applied again the same way.
func (w *writer) sameSession(g *group, id string, e *entry, created int64) (stale bool, err error) {
	if created == 0 || created == e.rec.CreatedAt {
		return false, nil
	}
	behind, err := w.behind(g, id, "check session created")
	if err != nil {
		return false, err
	}
	if behind {
		if g.retries < maxRetries {
			return true, nil
		}
		return false, unavailable("check session created session="+id, errors.New("the session keeps changing on another server"))
	}
	return false, protocol.Errorf(protocol.CodeConflict, "session %q was deleted and created again: it is the one created at %d, and this sandbox's %s %d names the one before it; nothing of the request was taken (a sandbox of the old session must stop, and one started afresh serves the new one)", id, e.rec.CreatedAt, protocol.HeaderSessionCreated, created)
}

// dedupe picks the events to store: not heartbeats (they only count as
// activity) and not retries, whose agentSeq is at or below the highest
// stored (or earlier in the batch) for their Rein-Instance.
func (r *eventsReq) dedupe(w *writer, g *group) (*ingest, error) {
	b := &ingest{keep: make([]int, 0, len(r.events))}
	var seen int64 // highest agentSeq of this instance so far, batch included
	for i := range r.events {
		ev := &r.events[i] // not copied: an Event is large, a batch has hundreds
		if ev.Type == protocol.EventHeartbeat {
			b.heartbeat = true
			b.res.Accepted++
			continue
		}
		if b.st == nil {
			var err error
			if b.st, err = w.state(g, r.id); err != nil {
				return nil, unavailable("append events session="+r.id, err)
			}
			seen = b.st.maxSeq[r.from.Instance]
		}
		if ev.AgentSeq > 0 {
			if ev.AgentSeq <= seen {
				b.res.Duplicates++
				continue
			}
			seen = ev.AgentSeq
		}
		b.keep = append(b.keep, i)
		b.res.Accepted++
	}
	return b, nil
}

// stamp makes the log entries of the kept events: their bytes with
// receivedAt set.
func (r *eventsReq) stamp(b *ingest, ms int64) error {
	b.logged = make([]store.Event, 0, len(b.keep))
	for _, i := range b.keep {
		ev := &r.events[i]
		var body []byte
		if i < len(r.raws) && r.raws[i] != nil {
			body = protocol.StampRaw(r.raws[i], ms)
		} else {
			stamped := *ev
			stamped.ReceivedAt = ms
			var err error
			if body, err = json.Marshal(stamped); err != nil {
				return fmt.Errorf("encode event session=%s: %w", r.id, err)
			}
		}
		b.logged = append(b.logged, store.Event{Instance: r.from.Instance, AgentSeq: ev.AgentSeq, Body: body})
		b.bytes += int64(len(body))
	}
	return nil
}

// fold applies the kept events to the reducer state, gives them their log
// positions and adds the log append to the group. From here on the state
// has changed: a failed commit drops it (see writer.fail). It fails only
// when a released artifact an event changes cannot be read back.
func (r *eventsReq) fold(g *group, b *ingest, ms int64) (folded, error) {
	f := folded{changes: make([]reducer.Change, 0, len(b.keep))}
	st := b.st
	for i, k := range b.keep {
		ev := r.events[k]
		ev.ReceivedAt = ms
		if err := g.w.restore(r.id, st.st, ev); err != nil {
			return f, err
		}
		b.logged[i].Pos = st.nextPos
		st.nextPos++
		st.logBytes += int64(len(b.logged[i].Body))
		if ev.AgentSeq > st.maxSeq[r.from.Instance] {
			st.maxSeq[r.from.Instance] = ev.AgentSeq
		}
		cs := st.st.Apply(ev)
		g.w.recordTurnDigests(g, r.id, b.logged[i].Pos, st.chainEvent(b.logged[i], cs))
		st.noteAsked(b.logged[i], cs)
		st.noteTurn(b.logged[i], cs)
		for _, c := range cs {
			switch {
			case c.IsArtifact():
				f.changes = append(f.changes, c)
				g.markDirty(r.id, c)
			case c.Kind == reducer.StatusChanged:
				f.implied = c.Status
			case c.Kind == reducer.SummaryChanged:
				s := c.Summary
				f.summary = &s
			}
		}
	}
	if len(b.logged) > 0 {
		g.ops = append(g.ops, store.AppendEvents{SessionID: r.id, Events: b.logged})
	}
	return f, nil
}

// record updates the session row: revision, activity, heartbeat, status
// (nextStatus) and summary, publishing what changed after the commit.
func (r *eventsReq) record(w *writer, g *group, e *entry, b *ingest, f folded, now time.Time) {
	b.fromRev = e.rec.Rev
	if len(b.logged) > 0 {
		e.rec.Rev = b.st.st.Rev()
	}
	e.lastActive = now
	if b.heartbeat {
		ms := now.UnixMilli()
		e.rec.LastHeartbeat = &ms
	}
	status, _ := nextStatus(e.rec.Status, activity, facts{implied: f.implied, held: w.holders[r.id] != nil})
	var stChange *protocol.SessionStatus
	if status != e.rec.Status {
		e.rec.Status = status
		stChange = &status
	}
	summary := f.summary
	if summary != nil && strings.IndexByte(*summary, 0) >= 0 {
		// PostgreSQL's text type cannot store NUL: the row would fail
		// every commit of the batch. Both backends store the same.
		s := strings.ReplaceAll(*summary, "\x00", "\uFFFD")
		summary = &s
	}
	if summary != nil && (e.rec.Summary == nil || *e.rec.Summary != *summary) {
		e.rec.Summary = summary
	} else {
		summary = nil
	}
	if stChange != nil || summary != nil {
		w.publishSessionUpdate(g, e, stChange, summary)
	}
}

// publish records the artifact changes now and, after the commit,
// publishes them on the session's artifact topic and answers.
func (r *eventsReq) publish(w *writer, g *group, b *ingest, f folded) {
	msgs := w.encodeChanges(r.id, reducer.Coalesce(f.changes))
	if len(msgs) > 0 && b.st != nil {
		w.logChanges(g, r.id, b.fromRev, b.st.st.Rev(), msgs)
	}
	res := b.res
	failOn(g, r.reply)
	g.onCommit(func() {
		// Publish before answering: a sender that reads its own stream
		// after the 202 finds the change already queued.
		if len(msgs) > 0 {
			w.hub.Publish(artifactTopic(r.id), msgs...)
		}
		if n := len(b.logged); n > 0 {
			w.obs.EventsIngested(n)
		}
		r.reply.ok(res)
	})
}

// checkCaps refuses a batch that could take the session past its caps,
// before anything of it is applied. The kept events are counted in
// order: one that could end past a cap is taken only when it keeps what
// the transcript says true (keepsStateTrue) and ends within the cap's
// reserve (capReserve). Otherwise, once a session reached a cap, a
// turn's end, the agent's exit or a permission request would be
// refused like its output: the turn would say running for ever and the
// agent would wait on a question nobody sees. Each event counts the
// most artifacts it can create (reducer.MaxNewArtifacts): that keeps
// the cap exact at the price of refusing a little early. The counts
// start from the state, whose size and artifacts a fold of the stored
// log gives back exactly (foldLog), so a restart decides the same.
func (r *eventsReq) checkCaps(w *writer, b *ingest) error {
	if len(b.keep) == 0 {
		return nil
	}
	maxArts, maxBytes := int64(w.opts.MaxArtifactsPerSession), w.opts.MaxSessionBytes
	artReserve, byteReserve := capReserve(maxArts, minArtifactReserve), capReserve(maxBytes, minByteReserve)
	arts, size := int64(b.st.st.Len()), b.st.logBytes
	for i, k := range b.keep {
		ev := &r.events[k]
		add, n := int64(reducer.MaxNewArtifacts(*ev)), int64(len(b.logged[i].Body))
		if past, reserved := arts+add > maxArts, arts+add <= maxArts+artReserve; past && !(reserved && keepsStateTrue(ev.Type)) {
			return protocol.Errorf(protocol.CodeTooLarge, "session %q has %d artifacts%s; events[%d] (%s) could add %d more and pass its cap of %d (--max-artifacts-per-session)%s",
				r.id, b.st.st.Len(), before(arts, int64(b.st.st.Len())), k, ev.Type, add, maxArts, reserveNote(ev.Type, reserved, artReserve, "artifacts"))
		}
		if past, reserved := size+n > maxBytes, size+n <= maxBytes+byteReserve; past && !(reserved && keepsStateTrue(ev.Type)) {
			return protocol.Errorf(protocol.CodeTooLarge, "session %q stores %d bytes of events%s; events[%d] (%s) is %d more and would pass its cap of %d (--max-session-bytes)%s",
				r.id, b.st.logBytes, before(size, b.st.logBytes), k, ev.Type, n, maxBytes, reserveNote(ev.Type, reserved, byteReserve, "bytes"))
		}
		arts += add
		size += n
	}
	return nil
}

// before says what the session holds (n) with the events of the batch
// before the refused one, when they add to what it stored (was).
func before(n, was int64) string {
	if n == was {
		return ""
	}
	return fmt.Sprintf(" (%d with the events before it in the batch)", n)
}

// reserveNote ends a cap's refusal: what the reserve past the cap takes,
// or that the event would pass the reserve too.
func reserveNote(typ protocol.EventType, reserved bool, reserve int64, unit string) string {
	if keepsStateTrue(typ) && !reserved {
		return fmt.Sprintf(" and the reserve of %d %s past it", reserve, unit)
	}
	return fmt.Sprintf("; past the cap only a turn's start and end, the agent's start and exit, permission requests and answers, tool call ends, notices, usage and session info are taken, up to a reserve of %d %s", reserve, unit)
}

// keepsStateTrue reports whether events of type typ are taken past a
// session's caps, within their reserve: the small events that end what
// the transcript shows as under way (a turn, a tool call, the agent, a
// permission request the agent waits on) or say why (a notice). The
// agent's output (text, reasoning, tool input and output deltas, file
// changes, plans) is what the caps are for.
func keepsStateTrue(typ protocol.EventType) bool {
	switch typ {
	case protocol.EventTurnStarted, protocol.EventTurnCompleted,
		protocol.EventAgentStarted, protocol.EventAgentExited,
		protocol.EventPermissionRequested, protocol.EventPermissionResolved,
		protocol.EventToolCallEnd, protocol.EventNotice,
		protocol.EventUsageUpdated, protocol.EventSessionInfo:
		return true
	}
	return false
}

// The least reserve past a cap (capReserve).
const (
	minArtifactReserve = 100
	minByteReserve     = 1 << 20
)

// capReserve is how far past a cap of limit the events that keep the
// transcript true may take a session (keepsStateTrue): 1% of the cap, at
// least floor, and never more than the cap itself (a small cap is a
// test's or a tight budget's). It keeps limit plus the reserve within an
// int64 whatever the cap.
func capReserve(limit, floor int64) int64 {
	return min(max(limit/100, min(limit, floor)), math.MaxInt64-limit)
}

// encodeChanges turns artifact changes into change records for the
// artifact topic, Seq = revision. The payload is the protocol's JSON, taken
// now because the reducer's artifact changes again with the next fold; the
// wire framing is the stream adapter's. The reducer's values always
// encode; should one not, the change is still stored and a client gets it
// from its next snapshot.
func (w *writer) encodeChanges(id string, changes []reducer.Change) []*hub.Message {
	msgs := make([]*hub.Message, 0, len(changes))
	for _, c := range changes {
		var (
			data  []byte
			err   error
			event string
		)
		if c.Kind == reducer.Created {
			event = protocol.SSEArtifactCreated
			data, err = json.Marshal(protocol.ArtifactPayload{Artifact: c.Artifact})
		} else {
			event = protocol.SSEArtifactUpdated
			u := c.Update()
			data, err = json.Marshal(&u)
		}
		if err != nil {
			w.log.Error("encode artifact change", slog.String("session", id), slog.String("event", event), slog.Int64("rev", c.Rev), slog.Any("err", err))
			continue
		}
		msgs = append(msgs, &hub.Message{Event: event, Data: data, Seq: c.Rev})
	}
	return msgs
}

// superseded reports whether instance held the command stream once and a
// newer connection took it over. No header, or an instance that never held
// the stream (an agentd posting before its stream connects), is never
// superseded.
func (e *entry) superseded(instance string) bool {
	return instance != "" && instance != e.rec.CurrentInstance && slices.Contains(e.rec.Instances, instance)
}

// noSandboxErr refuses a command while no sandbox holds the session's
// command stream. Only a prompt can wait for one ("queue": true), so only
// a prompt's refusal offers it: an abort or a permission response is
// about what a running agent is doing now.
func noSandboxErr(id string, typ protocol.CommandType) error {
	if typ == protocol.CommandPrompt {
		return protocol.Errorf(protocol.CodeNoSandbox, "no sandbox is connected to session %q (send the prompt with \"queue\": true to have it delivered when one connects)", id)
	}
	return protocol.Errorf(protocol.CodeNoSandbox, "no sandbox is connected to session %q: %s is for a running agent, and only a prompt can wait for one", id, typ)
}

func supersededErr(instance, id string) error {
	return protocol.Errorf(protocol.CodeSuperseded, "sandbox instance %q was superseded by a newer connection for session %q", instance, id)
}

// openStreamReq registers a sandbox's command stream.
type openStreamReq struct {
	id     string
	from   Sandbox // who opens it; see admitSandbox
	after  int64   // Last-Event-ID, when resume
	resume bool
	reply  reply[openedStream]
}

type openedStream struct {
	sub     *hub.Subscriber
	from    int64 // the stream replays the stored commands after from
	lastCmd int64
	token   uint64
	// created is the session's createdAt, for the answer's
	// protocol.HeaderSessionCreated: read here, it is the createdAt of
	// the session the stream was opened on, whatever happens next.
	created int64
}

func (r *openStreamReq) apply(w *writer, g *group) {
	e, stale, err := admitSandbox(w, g, r.id, r.from)
	if err != nil {
		r.reply.fail(err)
		return
	}
	if stale {
		applyAgain(g, r.id, r.reply)
		return
	}
	instance := r.from.Instance
	opened := streamOpened
	same := instance != "" && instance == e.rec.CurrentInstance
	if e.rec.CurrentInstance != "" && instance != e.rec.CurrentInstance {
		// A new instance: the one that ran the open turn is gone. So
		// also under an opener without Rein-Instance (an operator's
		// curl, an agentd from before the header): it supersedes the
		// named one all the same (entry.superseded), and no later
		// opener would end the turn, the session naming no instance.
		if err := w.interruptTurn(g, r.id, e, instance); err != nil {
			r.reply.fail(err)
			return
		}
		opened = takenOver
	}
	if instance != e.rec.CurrentInstance {
		e.rec.CurrentInstance = instance
	}
	// Last-Event-ID is the opener's command cursor; without it, it gets
	// every command not acknowledged (see commands.go). One above the
	// last command: the sandbox had commands the database lost (seen).
	if r.resume {
		w.seen(g, r.id, e, r.after)
		if e.setAcked(resumeAck(same, r.after, e.rec.AckedCommandID)) {
			w.commandsChanged(g, e)
		}
	}
	from := e.rec.AckedCommandID
	if r.resume {
		from = min(max(r.after, 0), e.rec.LastCommandID)
	}
	if instance != "" && !slices.Contains(e.rec.Instances, instance) {
		e.rec.Instances = append(slices.Clone(e.rec.Instances), instance)
		g.ops = append(g.ops, store.AddInstance{SessionID: r.id, Instance: instance, At: w.opts.Now().UnixMilli()})
	}
	e.lastActive = w.opts.Now()
	if w.shared != nil {
		// Other replicas time the session out from the row.
		ms := e.lastActive.UnixMilli()
		e.rec.LastHeartbeat = &ms
	}
	status, _ := nextStatus(e.rec.Status, opened, facts{held: true})
	g.setStatus(r.id, e, status)
	w.tokens++
	// A new epoch fences the stream another replica may hold
	// (replicas.go).
	e.rec.StreamEpoch++
	h := &holder{instance: instance, token: w.tokens, epoch: e.rec.StreamEpoch}
	if g.opened == nil {
		g.opened = map[string]bool{}
	}
	g.opened[r.id] = true
	lastCmd, created := e.rec.LastCommandID, e.rec.CreatedAt
	failOn(g, r.reply)
	g.onCommit(func() {
		// Subscribed once committed, not when applied: a delete of the
		// session earlier in the group (then created again, and this
		// stream opened on the new one) closes the id's command topic
		// in its own after-commit, which ran before this one and would
		// have ended this stream too. Nothing is missed by waiting:
		// commands of the group before this opening are at or below
		// lastCmd (the replay), and those after it publish after this.
		h.sub = w.hub.Subscribe(commandTopic(r.id), nil)
		// A newer connection closes the older one. Its release comes
		// back with the old token and is ignored.
		old := w.holders[r.id]
		if old != nil {
			old.sub.Close()
		}
		w.holders[r.id] = h
		w.sandboxConnected(r.id, instance, old)
		r.reply.ok(openedStream{sub: h.sub, from: from, lastCmd: lastCmd, token: h.token, created: created})
	})
}

// closeStreamReq says a command stream ended.
type closeStreamReq struct {
	id    string
	token uint64
	// epoch is the StreamEpoch of the stream that ended, set once apply
	// has released its holder: a group applied again (another replica
	// changed the session) finds no holder, and without it the close was
	// dropped, leaving the session live with no sandbox until the
	// heartbeat timeout.
	epoch int64
}

func (r *closeStreamReq) apply(w *writer, g *group) {
	if r.epoch == 0 {
		h := w.holders[r.id]
		if h == nil || h.token != r.token {
			return // superseded by a newer connection, or the session is gone
		}
		// The stream is gone whatever the commit does.
		delete(w.holders, r.id)
		r.epoch = h.epoch
		w.log.Info("sandbox disconnected", slog.String("session", r.id), slog.String("instance", h.instance))
		w.obs.SandboxDisconnected()
	}
	if g.opened[r.id] {
		// A newer stream opened earlier in this group (a reconnection
		// queued before the old stream's end was noticed): it holds the
		// session once the group commits, which stays live.
		return
	}
	e := g.entry(r.id)
	if e == nil || e.rec.StreamEpoch != r.epoch {
		// Another stream opened since, on another replica: the sandbox
		// is connected there.
		return
	}
	status, _ := nextStatus(e.rec.Status, streamClosed, facts{})
	if status == e.rec.Status {
		return
	}
	g.setStatus(r.id, e, status)
	g.onFail(func(error) { w.closeUnstored(r.id, r.epoch) })
}

// closeUnstored follows a stream's close whose commit failed (a full
// disk): the holder is gone, the session is still live or idle. Nothing
// has shown the sandbox alive since its stream ended, so its heartbeat
// timeout is made due, and expire stores the disconnect as soon as writes
// work (retried every second while they fail), rather than a whole
// heartbeat timeout later, meanwhile showing a sandbox that is gone.
func (w *writer) closeUnstored(id string, epoch int64) {
	e := w.sessions[id]
	if e == nil || w.holders[id] != nil || e.rec.StreamEpoch != epoch || !connected(e.rec.Status) {
		return
	}
	now := w.opts.Now()
	e.lastActive = now.Add(-w.opts.HeartbeatTimeout)
	w.setDeadline(id, now.Add(time.Second))
}

// sessionsReq subscribes to the session stream and takes its snapshot in
// the writer goroutine: every change committed before is in the snapshot,
// every change after is published to the new subscriber. Nothing is missed
// and nothing is sent twice, without revisions.
type sessionsReq struct {
	project string
	reply   reply[sessionsSnapshot]
}

type sessionsSnapshot struct {
	sub  *hub.Subscriber
	recs []protocol.Session
}

func (r *sessionsReq) apply(w *writer, _ *group) {
	var filter func(*hub.Message) bool
	if p := r.project; p != "" {
		filter = func(m *hub.Message) bool { return m.Key == p }
	}
	sub := w.hub.Subscribe(sessionsTopic, filter)
	list := make([]*entry, 0, len(w.sessions))
	for _, e := range w.sessions { // committed records only: see above
		if r.project == "" || deref(e.rec.Project) == r.project {
			list = append(list, e)
		}
	}
	slices.SortFunc(list, func(a, b *entry) int {
		if a.rec.CreatedAt != b.rec.CreatedAt {
			return int(a.rec.CreatedAt - b.rec.CreatedAt)
		}
		return int(a.order) - int(b.order)
	})
	recs := make([]protocol.Session, len(list))
	for i, e := range list {
		recs[i] = e.rec.Session
		recs[i].PendingApprovals = w.approvals.Count(e.rec.ID)
	}
	r.reply.ok(sessionsSnapshot{sub: sub, recs: recs})
}
