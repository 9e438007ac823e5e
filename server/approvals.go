package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
	"github.com/rein-ai/rein/server/internal/hub"
	"github.com/rein-ai/rein/server/store"
)

// approvalsTopic is the hub topic of GET /approvals/stream.
const approvalsTopic = "approvals"

// maxApprovalLog is how many approval changes are kept for exact resume;
// a client further behind gets a full snapshot.
const maxApprovalLog = 4096

// maxHistory is how many decisions GET /approvals/history keeps.
const maxHistory = 500

type approvalKey struct{ session, request string }

type approvalChange struct {
	rev     int64
	project string
	msg     *hub.Message // the change record, as published
}

// approvals is the inbox: every pending permission request (with the
// answer stored for it, once one is), a log of recent changes to it for
// resumable streams, and the recent decisions.
// The writer changes it after commits (so it never shows what was not
// stored); handlers read it under mu.
//
// Its revision starts at a random point (approvalsStart) and grows by one
// per change. A Last-Event-ID names a revision of the process that sent
// it, and only this process's own can be resumed exactly: any other id
// gets a full snapshot (see stream). Replicas run at the same time, each
// counting its own changes, so their ranges of ids must not meet; a start
// time would not keep them apart (replicas started together, whichever
// of them has seen more changes since, reach revisions the other one
// issued too, and a client moving to it would be sent the changes after
// the wrong point, missing some), and neither would a clock stepped back
// between two runs.
type approvals struct {
	mu       sync.Mutex
	hub      *hub.Hub
	auth     string // "token" or "none"
	rev      int64
	startRev int64
	// pending holds each request as published: a change replaces the
	// entry with a copy, never writes into one a list or a message
	// shares.
	pending map[approvalKey]*protocol.Approval
	count   map[string]int // per session, pending and not answered
	log     []approvalChange
	history []protocol.Decision
}

// approvalsStart returns a random first revision in [2^52, 2^53-2^40):
// two processes' ranges meet only when one starts within as many
// revisions of the other as it makes (a chance of about 2^-19 for one
// that makes four billion changes), and every id stays an integer that a
// JSON reader holding numbers as doubles (JavaScript's) reads exactly.
func approvalsStart() int64 {
	return 1<<52 + rand.Int64N(1<<52-1<<40)
}

func newApprovals(h *hub.Hub, startRev int64, auth string) *approvals {
	return &approvals{hub: h, auth: auth, rev: startRev, startRev: startRev, pending: map[approvalKey]*protocol.Approval{},
		count: map[string]int{}}
}

// Count returns how many of the session's pending requests wait for an
// answer: its pendingApprovals. One answered waits only for its agent to
// take the answer; nobody needs to do anything about it.
func (a *approvals) Count(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.count[id]
}

// list returns the pending approvals, oldest first; project "" means all.
func (a *approvals) list(project string) []protocol.Approval {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.listLocked(project)
}

func (a *approvals) listLocked(project string) []protocol.Approval {
	out := make([]protocol.Approval, 0, len(a.pending))
	for _, p := range a.pending {
		if project == "" || deref(p.Project) == project {
			out = append(out, *p)
		}
	}
	slices.SortFunc(out, func(x, y protocol.Approval) int {
		if x.RequestedAt != y.RequestedAt {
			return cmpInt(x.RequestedAt, y.RequestedAt)
		}
		if x.SessionID != y.SessionID {
			return cmpString(x.SessionID, y.SessionID)
		}
		return cmpString(x.RequestID, y.RequestID)
	})
	return out
}

// historyList returns the recent decisions, newest first, at most limit.
func (a *approvals) historyList(project string, limit int) []protocol.Decision {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]protocol.Decision, 0, min(limit, len(a.history)))
	for i := len(a.history) - 1; i >= 0 && len(out) < limit; i-- {
		if project == "" || deref(a.history[i].Project) == project {
			out = append(out, a.history[i])
		}
	}
	return out
}

// add records a pending request, not answered yet (load and after
// commits). It returns the session's new count.
func (a *approvals) add(p *protocol.Approval) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := approvalKey{p.SessionID, p.RequestID}
	if _, ok := a.pending[k]; ok {
		return a.count[p.SessionID]
	}
	a.pending[k] = p
	a.count[p.SessionID]++
	data, _ := json.Marshal(struct {
		Approval *protocol.Approval `json:"approval"`
	}{p})
	a.publishLocked(protocol.SSEApprovalAdded, data, deref(p.Project))
	return a.count[p.SessionID]
}

// resolve records that a pending request left pending with status at ms.
// It returns the session's new count and whether the request was pending.
func (a *approvals) resolve(id, request, status, optionID string, ms int64) (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := approvalKey{id, request}
	p, ok := a.pending[k]
	if !ok {
		return a.count[id], false
	}
	delete(a.pending, k)
	if p.Answer == nil {
		a.decr(id)
	}
	d := protocol.Decision{SessionID: id, Project: p.Project, RequestID: request, Title: p.Title, Status: status,
		OptionID: optionID, RequestedAt: p.RequestedAt, ResolvedAt: ms, DecidedBy: "agent"}
	if p.Tool != nil {
		d.Tool = p.Tool.Name
		if d.Tool == "" {
			d.Tool = p.Tool.Title
		}
	}
	for _, o := range p.Options {
		if o.ID == optionID {
			d.OptionName, d.OptionKind = o.Name, string(o.Kind)
		}
	}
	// The stored answer decided it only if the request ended as it said:
	// an agent that withdrew the request (a timeout, an abort, its exit,
	// a turn's end) before it took the answer decided it itself, and the
	// history said the client had.
	if an := p.Answer; an != nil && (an.Outcome == protocol.OutcomeSelected && an.OptionID == optionID ||
		an.Outcome == protocol.OutcomeCancelled && optionID == "" && status == string(protocol.PermissionCancelled)) {
		d.DecidedBy, d.Auth, d.AnsweredAt = an.AnsweredBy, an.Auth, an.AnsweredAt
	}
	a.history = append(a.history, d)
	if len(a.history) > maxHistory {
		a.history = slices.Clone(a.history[len(a.history)-maxHistory:])
	}
	data, _ := json.Marshal(protocol.ApprovalResolved{SessionID: id, RequestID: request, Decision: d})
	a.publishLocked(protocol.SSEApprovalResolved, data, deref(p.Project))
	return a.count[id], true
}

// decr takes one request off the session's count.
func (a *approvals) decr(id string) {
	if a.count[id]--; a.count[id] <= 0 {
		delete(a.count, id)
	}
}

// answered records a client's permission_response to a pending request,
// stored at ms, so the inbox shows the request as answered (its Answer,
// published as approval_answered), its decision names who answered and a
// later answer is refused (answers.go). Only the first answer counts: the
// command stream hands the agent the answers in command order, and the
// agent takes the first and ignores the rest. An answer whose RequestSeq
// names another request was for an earlier request with its id: the
// writer stores every answer with the seq of the request it checked it
// against (commandReq.apply). readBack says the answer was read back from
// the store (recordAnswers): one stored without a RequestSeq (by an older
// server) is told apart by time only, as for an earlier request when
// stored before this request was made. Times never decide otherwise: an
// answer stored through another replica, or after the clock stepped back,
// may carry a time before its request's. It returns the session's new
// count and whether the answer was recorded.
func (a *approvals) answered(id string, cmd protocol.Command, ms int64, readBack bool) (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := approvalKey{id, cmd.RequestID}
	p, ok := a.pending[k]
	if !ok || p.Answer != nil {
		return a.count[id], false
	}
	if cmd.RequestSeq != 0 && cmd.RequestSeq != p.Seq {
		// An answer to another request under the id (read back: one
		// stored for an earlier request with the id).
		return a.count[id], false
	}
	if readBack && cmd.RequestSeq == 0 && ms < p.RequestedAt {
		// Stored by a server that did not yet name the request an
		// answer was checked against: only its time tells.
		return a.count[id], false
	}
	an := &protocol.ApprovalAnswer{CommandID: cmd.ID, Outcome: cmd.Outcome, AnsweredBy: "client", Auth: a.auth, AnsweredAt: ms}
	if a.auth == "none" {
		an.AnsweredBy = "anonymous"
	}
	if an.Outcome == "" {
		an.Outcome = protocol.OutcomeSelected
	}
	if an.Outcome == protocol.OutcomeSelected {
		an.OptionID = cmd.OptionID
		for _, o := range p.Options {
			if o.ID == cmd.OptionID {
				an.OptionName, an.OptionKind = o.Name, string(o.Kind)
			}
		}
	}
	q := *p
	q.Answer = an
	a.pending[k] = &q
	a.decr(id)
	data, _ := json.Marshal(struct {
		Approval *protocol.Approval `json:"approval"`
	}{&q})
	a.publishLocked(protocol.SSEApprovalAnswered, data, deref(p.Project))
	return a.count[id], true
}

// lookup returns the pending request k and the command that answered it
// (0 for none); ok is false when k is not pending.
func (a *approvals) lookup(k approvalKey) (p *protocol.Approval, answeredBy int64, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok = a.pending[k]
	if !ok {
		return nil, 0, false
	}
	if p.Answer != nil {
		answeredBy = p.Answer.CommandID
	}
	return p, answeredBy, true
}

// recordAnswers records the permission_responses among a session's
// stored commands (approvals.answered): at start, and for commands
// another replica stored. It returns the session's count and whether any
// answer was recorded.
func (w *writer) recordAnswers(id string, cmds []store.Command) (n int, changed bool) {
	n = w.approvals.Count(id)
	for _, c := range cmds {
		if !bytes.Contains(c.Body, []byte(`"permission_response"`)) {
			continue
		}
		var cmd protocol.Command
		if err := json.Unmarshal(c.Body, &cmd); err != nil || cmd.Type != protocol.CommandPermissionResponse {
			continue
		}
		cmd.ID = c.ID
		if m, ok := w.approvals.answered(id, cmd, c.CreatedAt, true); ok {
			n, changed = m, true
		}
	}
	return n, changed
}

// removeSession resolves the session's pending requests as cancelled.
func (a *approvals) removeSession(id string, ms int64) {
	a.mu.Lock()
	var reqs []string
	for k := range a.pending {
		if k.session == id {
			reqs = append(reqs, k.request)
		}
	}
	a.mu.Unlock()
	slices.Sort(reqs)
	for _, r := range reqs {
		a.resolve(id, r, string(protocol.PermissionCancelled), "", ms)
	}
}

func (a *approvals) publishLocked(event string, data []byte, project string) {
	a.rev++
	msg := &hub.Message{Event: event, Data: data, Seq: a.rev, Key: project}
	a.log = append(a.log, approvalChange{rev: a.rev, project: project, msg: msg})
	if len(a.log) > maxApprovalLog {
		a.log = slices.Clone(a.log[len(a.log)-maxApprovalLog/2:])
	}
	a.hub.Publish(approvalsTopic, msg)
}

// stream builds the approvals stream: subscribe, then under mu either the
// changes after Last-Event-ID (when the log still holds all of them) or a
// full snapshot, then snapshot_complete. Live changes at or below the
// revision read are skipped by Seq.
func (a *approvals) stream(project string, after int64, resume bool) (initial []*hub.Message, sub *hub.Subscriber, rev int64) {
	var filter func(*hub.Message) bool
	if project != "" {
		filter = func(m *hub.Message) bool { return m.Key == project }
	}
	sub = a.hub.Subscribe(approvalsTopic, filter)
	a.mu.Lock()
	defer a.mu.Unlock()
	exact := resume && after >= a.startRev && after <= a.rev &&
		(after == a.rev || (len(a.log) > 0 && a.log[0].rev <= after+1))
	if exact {
		i, _ := slices.BinarySearchFunc(a.log, after+1, func(c approvalChange, r int64) int { return cmpInt(c.rev, r) })
		for _, c := range a.log[i:] {
			if project == "" || c.project == project {
				initial = append(initial, c.msg)
			}
		}
	} else {
		for _, p := range a.listLocked(project) {
			data, _ := json.Marshal(struct {
				Approval protocol.Approval `json:"approval"`
			}{p})
			initial = append(initial, &hub.Message{Event: protocol.SSEApprovalSnapshot, Data: data})
		}
	}
	done, _ := json.Marshal(protocol.ApprovalsComplete{Rev: a.rev, Full: !exact})
	initial = append(initial, &hub.Message{Event: protocol.SSESnapshotComplete, Data: done, Seq: a.rev})
	return initial, sub, a.rev
}

func cmpInt(x, y int64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

func cmpString(x, y string) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// approvalFrom makes the protocol.Approval of a pending permission artifact; tool
// finds the tool call artifact it names (nil when none).
func approvalFrom(id string, project *string, a *protocol.Artifact, tool toolOf) *protocol.Approval {
	p := &protocol.Approval{SessionID: id, Project: project, RequestID: a.ID, Seq: a.Seq, Title: a.String("title"), TurnID: a.TurnID, RequestedAt: a.CreatedAt}
	if raw, err := json.Marshal(a.Fields["options"]); err == nil {
		_ = json.Unmarshal(raw, &p.Options)
	}
	if p.Options == nil {
		p.Options = []protocol.PermissionOption{}
	}
	if v, ok := a.Fields["input"]; ok && v != nil {
		if raw, err := json.Marshal(v); err == nil {
			p.Input = raw
		}
	}
	if tc := a.String("toolCallId"); tc != "" {
		p.Tool = &protocol.ApprovalTool{ID: tc}
		if t := tool(a, tc); t != nil {
			p.Tool.Name, p.Tool.Kind, p.Tool.Title = t.String("name"), t.String("kind"), t.String("title")
		}
	}
	return p
}

// loadApprovals fills the inbox from the stored artifacts at start: those
// of the sessions the store says may hold a pending request
// (store.PendingPermissionFinder), else of every session, and of the
// sessions whose artifacts still lag their log, from a fold of the log.
func (w *writer) loadApprovals(ctx context.Context) error {
	ids := make([]string, 0, len(w.sessions))
	if f, ok := w.store.(store.PendingPermissionFinder); ok {
		var err error
		if ids, err = f.PendingPermissionSessions(ctx); err != nil {
			return fmt.Errorf("load approvals: %w", err)
		}
	} else {
		for id := range w.sessions {
			ids = append(ids, id)
		}
	}
	for id := range w.lagging {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		e := w.sessions[id]
		if e == nil {
			continue
		}
		var (
			arts []*protocol.Artifact
			err  error
		)
		if w.lagging[id] != nil {
			arts, err = w.foldedApprovalArtifacts(ctx, id)
		} else {
			arts, err = w.storedApprovalArtifacts(ctx, id)
		}
		if err != nil {
			return err
		}
		tool := toolFinder(arts)
		for _, a := range arts {
			if a.Type == protocol.ArtifactPermission && a.String("status") == string(protocol.PermissionPending) {
				w.approvals.add(approvalFrom(id, e.rec.Project, a, tool))
			}
		}
		if w.approvals.Count(id) > 0 {
			// Which of them were answered already: a second answer
			// is refused after a restart too.
			cmds, err := w.store.Commands(ctx, id, 0, e.rec.LastCommandID)
			if err != nil {
				return fmt.Errorf("load approvals: %w", err)
			}
			w.recordAnswers(id, cmds)
		}
	}
	return nil
}

// storedApprovalArtifacts returns the session's stored permission, tool
// call and turn artifacts, as approvalArtifacts keeps them, read a page at a
// time (Options.ReplayPage, Options.ReplayPageBytes): the start reads
// every candidate session, and a session's artifacts read whole (up to
// --max-session-bytes of tool output) were in memory at once for the
// few permissions among them.
func (w *writer) storedApprovalArtifacts(ctx context.Context, id string) ([]*protocol.Artifact, error) {
	var arts []*protocol.Artifact
	for after := int64(0); ; {
		list, more, err := w.store.ArtifactsBySeq(ctx, id, after, w.opts.ReplayPage, w.opts.ReplayPageBytes)
		if err != nil {
			return nil, fmt.Errorf("load approvals: %w", err)
		}
		arts = w.approvalArtifacts(id, arts, list)
		if !more || len(list) == 0 {
			return arts, nil
		}
		after = list[len(list)-1].Seq
	}
}

// foldedApprovalArtifacts returns the permission, tool call and turn artifacts
// of a fold of the session's log: its stored artifacts still lag the log
// (the start could not settle it, see materialise.go), and a permission
// requested just before a crash may be in the log only.
func (w *writer) foldedApprovalArtifacts(ctx context.Context, id string) ([]*protocol.Artifact, error) {
	s, err := foldStored(ctx, w.store, id)
	if err != nil {
		return nil, fmt.Errorf("load approvals: %w", err)
	}
	var arts []*protocol.Artifact
	// Heads: a tool call's output is not the inbox's, and st.Artifacts()
	// copied every output and text of the session.
	for _, a := range s.st.ArtifactHeads() {
		if a != nil && (a.Type == protocol.ArtifactPermission || a.Type == protocol.ArtifactToolCall || a.Type == protocol.ArtifactTurn) {
			arts = append(arts, a)
		}
	}
	return arts, nil
}

// toolOf returns the tool call with id toolCallID that pending
// permission request p names (nil when none).
type toolOf func(p *protocol.Artifact, toolCallID string) *protocol.Artifact

// ofRequest reports whether tool call t, the newest with the id a pending
// permission request names, is the one the request is about, turn being
// the seq of the request's turn (0 for a request outside any turn). Not
// when it belongs to an earlier turn and is closed: the reducer no longer
// finds such a tool call by its id (agents that restart count their ids
// from 1 again), so it did not link the request to it, and the inbox
// showed another command's tool as the one asked about.
func ofRequest(t *protocol.Artifact, turn int64) bool {
	switch protocol.ToolStatus(t.String("status")) {
	case protocol.ToolCompleted, protocol.ToolFailed, protocol.ToolCancelled, protocol.ToolDenied:
		return t.Seq > turn
	}
	return true
}

// toolFinder finds among arts (permission, tool call and turn artifacts,
// in any order) the tool call a permission request names: the newest
// with its id, as writer.toolCall finds it in a reducer state, when it is
// of the request's turn (ofRequest). The request's turn is the newest
// turn before it with its turnId: ids of turns repeat too.
func toolFinder(arts []*protocol.Artifact) toolOf {
	return func(p *protocol.Artifact, id string) *protocol.Artifact {
		var tool *protocol.Artifact
		var turn int64
		for _, a := range arts {
			switch {
			case a.Type == protocol.ArtifactToolCall && a.ID == id && (tool == nil || a.Seq > tool.Seq):
				tool = a
			case a.Type == protocol.ArtifactTurn && p.TurnID != "" && a.ID == p.TurnID && a.Seq < p.Seq:
				turn = max(turn, a.Seq)
			}
		}
		if tool == nil || !ofRequest(tool, turn) {
			return nil
		}
		return tool
	}
}

// toolCall returns the tool call with an id that pending permission
// request p of a session names: the newest with the id, when it is of
// p's turn (ofRequest); nil when there is none. It is read from the
// reducer state, or from the store when the state released its body (a
// tool that ended before the permission request). Should the store fail,
// the approval still names the tool call's id.
func (w *writer) toolCall(session string, st *reducer.State, p *protocol.Artifact, id string) *protocol.Artifact {
	seq := st.Newest(protocol.ArtifactToolCall, id)
	if seq == 0 {
		return nil
	}
	t := w.artifactAt(session, st, seq)
	if t == nil {
		return nil
	}
	// p waits, so the newest turn with its turnId is its own: a later
	// one under that id would have begun after p's turn ended, which
	// would have cancelled p.
	var turn int64
	if p.TurnID != "" {
		turn = st.Newest(protocol.ArtifactTurn, p.TurnID)
	}
	if !ofRequest(t, turn) {
		return nil
	}
	return t
}

// observeApprovals finds the permission artifacts a batch created or
// resolved and, after the commit, updates the inbox and the session's
// pendingApprovals on the session stream.
func (w *writer) observeApprovals(g *group, e *entry, st *reducer.State, changes []reducer.Change) {
	var seqs []int64
	for _, c := range changes {
		// A permission leaves pending only for one of these statuses;
		// checking the value first spares a copy of every other artifact
		// whose status changes (a text block's whole text at its end).
		if (c.Kind == reducer.Created && c.Artifact.Type == protocol.ArtifactPermission) ||
			(c.Kind == reducer.Set && c.Field == "status" && resolvedStatus[string(c.Set)]) {
			if !slices.Contains(seqs, c.Seq) {
				seqs = append(seqs, c.Seq)
			}
		}
	}
	var inbox []inboxChange
	for _, seq := range seqs {
		if a := st.Artifact(seq); a != nil && a.Type == protocol.ArtifactPermission {
			inbox = append(inbox, inboxChangeOf(e, a, func(p *protocol.Artifact, tc string) *protocol.Artifact { return w.toolCall(e.rec.ID, st, p, tc) }))
		}
	}
	if len(inbox) == 0 {
		return
	}
	id, project := e.rec.ID, e.rec.Project
	// Answers later in the group see the requests as they are now
	// (answers.go).
	if g.inbox == nil {
		g.inbox = map[approvalKey]*protocol.Approval{}
	}
	for _, c := range inbox {
		if c.add != nil {
			g.inbox[approvalKey{id, c.add.RequestID}] = c.add
		} else {
			g.inbox[approvalKey{id, c.request}] = nil
		}
	}
	g.onCommit(func() {
		if n, changed := w.applyInbox(id, inbox); changed {
			w.publishPending(id, project, n)
		}
	})
}

// inboxChange is what a permission artifact does to the inbox: add is the
// approval it waits for, nil when it was answered (status, option).
type inboxChange struct {
	add                     *protocol.Approval
	request, status, option string
}

// inboxChangeOf is what permission artifact a of session e does to the
// inbox; tool finds the tool calls it names.
func inboxChangeOf(e *entry, a *protocol.Artifact, tool toolOf) inboxChange {
	st := a.String("status")
	if st == string(protocol.PermissionPending) {
		return inboxChange{add: approvalFrom(e.rec.ID, e.rec.Project, a, tool)}
	}
	return inboxChange{request: a.ID, status: st, option: a.String("optionId")}
}

// applyInbox applies session id's changes to the inbox and returns how
// many of its requests wait for an answer now and whether that count
// changed (a request answered already leaves it as it was).
func (w *writer) applyInbox(id string, changes []inboxChange) (n int, changed bool) {
	ms := w.opts.Now().UnixMilli()
	before := w.approvals.Count(id)
	n = before
	for _, c := range changes {
		if c.add != nil {
			n = w.approvals.add(c.add)
		} else if m, ok := w.approvals.resolve(id, c.request, c.status, c.option, ms); ok {
			n = m
		}
	}
	return n, n != before
}

// resolvedStatus are the JSON values of a resolved permission's status.
var resolvedStatus = map[string]bool{`"approved"`: true, `"denied"`: true, `"cancelled"`: true}

// publishPending tells the session stream the session's pending count.
func (w *writer) publishPending(id string, project *string, n int) {
	data, err := json.Marshal(protocol.SessionUpdated{ID: id, Fields: protocol.SessionFields{PendingApprovals: &n}})
	if err != nil {
		return
	}
	w.hub.Publish(sessionsTopic, &hub.Message{Event: protocol.SSESessionUpdated, Data: data, Key: deref(project)})
}

// withPending returns rec with its pendingApprovals filled in.
func (s *Server) withPending(rec protocol.Session) protocol.Session {
	rec.PendingApprovals = s.w.approvals.Count(rec.ID)
	return rec
}

// Approvals lists the pending permission requests across sessions, oldest
// first, with how long each has waited; project "" means all.
func (s *Server) Approvals(_ context.Context, project string) ([]protocol.Approval, error) {
	list := s.w.approvals.list(project)
	now := s.opts.Now().UnixMilli()
	for i := range list {
		list[i].WaitingMs = max(now-list[i].RequestedAt, 0)
	}
	return list, nil
}

// ApprovalHistory lists the most recent decisions, newest first, at most
// limit; project "" means all. It holds the decisions this process saw.
func (s *Server) ApprovalHistory(_ context.Context, project string, limit int) ([]protocol.Decision, error) {
	return s.w.approvals.historyList(project, limit), nil
}

// authMode names the authentication mode decisions are recorded under.
func authMode(o Options) string {
	if o.AuthMode == "" {
		return "none"
	}
	return o.AuthMode
}

// ApprovalFeed is where an approvals stream starts: Initial, the change
// records to send first (the missed changes after Last-Event-ID, or a full
// snapshot, then snapshot_complete), and Live, the changes after them (at
// or below Rev they are already in Initial).
type ApprovalFeed struct {
	Initial []*hub.Message
	Live    *hub.Subscriber
	Rev     int64
}

// WatchApprovals opens the approvals feed (see approvals.stream); project
// "" means all. resume says after is a Last-Event-ID the client sent.
func (s *Server) WatchApprovals(_ context.Context, project string, after int64, resume bool) (ApprovalFeed, error) {
	initial, sub, rev := s.w.approvals.stream(project, after, resume)
	return ApprovalFeed{Initial: initial, Live: sub, Rev: rev}, nil
}
