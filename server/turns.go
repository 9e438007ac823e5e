package server

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
	"github.com/rein-ai/rein/server/store"
)

// turnChain is the running turn digest of a session's event log (see
// server/README.md, "Turn digests"): D0 is 32 zero bytes; the digest of
// the k-th turn to end is SHA-256(D(k-1) || frame(e) for every stored event
// e after the previous turn's end up to and including the event that ended
// this one), where frame(e) = uint64be(pos) || uint64be(len(instance)) ||
// instance || uint64be(len(body)) || body, body being the event JSON as
// stored.
type turnChain struct {
	h    hash.Hash // seeded with the last digest, fed every event since
	last [32]byte
}

func newTurnChain() *turnChain {
	c := &turnChain{h: sha256.New()}
	c.h.Write(c.last[:])
	return c
}

// add feeds one stored event.
func (c *turnChain) add(e store.Event) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(e.Pos))
	c.h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(len(e.Instance)))
	c.h.Write(n[:])
	c.h.Write([]byte(e.Instance))
	binary.BigEndian.PutUint64(n[:], uint64(len(e.Body)))
	c.h.Write(n[:])
	c.h.Write(e.Body)
}

// cut ends a turn at the last event added: it returns the turn's digest
// and starts the next turn's input with it.
func (c *turnChain) cut() [32]byte {
	copy(c.last[:], c.h.Sum(nil))
	c.h.Reset()
	c.h.Write(c.last[:])
	return c.last
}

// endedTurn is a turn that the event just folded ended.
type endedTurn struct {
	id     string
	digest [32]byte
}

// withoutText returns ev with each streamed or final text it carries for a
// block or a tool's output cut to one byte (an empty one stays empty).
// The turns read no such text, and a fold of the whole log held all of it
// for each request: a session with a tool output of 64 MB took about four
// times that while its turns were read (its buffer grown by appends, the
// old buffers, the copy st.Artifacts made). The reducer looks at these
// texts only for whether they are empty, or equal to what streamed (which
// moves a revision, not a turn), so every artifact is created, changed
// and ended by the same events as in the full fold, with the same fields
// but for the text (TestTurnsFoldWithoutText).
func withoutText(ev protocol.Event) protocol.Event {
	cut := func(s *string) {
		if *s != "" {
			*s = "x"
		}
	}
	switch ev.Type {
	case protocol.EventTextDelta, protocol.EventReasoningDelta, protocol.EventToolInputDelta, protocol.EventToolOutputDelta:
		cut(&ev.Delta)
	case protocol.EventTextEnd, protocol.EventReasoningEnd:
		cut(&ev.Text)
	case protocol.EventToolCallEnd:
		cut(&ev.Output)
	}
	return ev
}

// endedTurns returns the turn artifacts whose end changes record: the
// reducer sets endedAt exactly once, when it closes a turn.
func endedTurns(st *reducer.State, changes []reducer.Change) []*protocol.Artifact {
	var out []*protocol.Artifact
	for _, c := range changes {
		if c.Kind != reducer.Set || c.Field != "endedAt" {
			continue
		}
		if a := st.Artifact(c.Seq); a != nil && a.Type == protocol.ArtifactTurn {
			out = append(out, a)
		}
	}
	return out
}

// chainEvent feeds a stored event, already folded with changes, into the
// session's turn chain and returns the turns it ended with their digests.
func (s *state) chainEvent(e store.Event, changes []reducer.Change) []endedTurn {
	if s.chain == nil {
		// A state starts with its log: folded from its first event, or
		// new with an empty one.
		s.chain = newTurnChain()
	}
	s.chain.add(e)
	var out []endedTurn
	for _, a := range endedTurns(s.st, changes) {
		out = append(out, endedTurn{id: a.ID, digest: s.chain.cut()})
		s.turnEnded = true
	}
	return out
}

// recordTurnDigests adds the ops that record the digests of turns that
// ended at pos, when the store can record them.
func (w *writer) recordTurnDigests(g *group, id string, pos int64, ended []endedTurn) {
	if _, ok := w.store.(store.TurnDigestStore); !ok || len(ended) == 0 {
		return
	}
	at := w.opts.Now().UnixMilli()
	for _, t := range ended {
		g.ops = append(g.ops, store.PutTurnDigest{SessionID: id, Digest: store.TurnDigest{TurnID: t.id, EndPos: pos, Digest: t.digest, At: at}})
	}
}

// Turns lists a session's turns in the order they started, folding its
// stored event log (so each turn knows where in the log it starts and
// ends) and attaching the digests recorded when they ended.
func (s *Server) Turns(ctx context.Context, id string) ([]protocol.Turn, error) {
	sess, err := s.store.Session(ctx, id)
	if err != nil {
		return nil, readFailed("turns session="+id, err)
	}
	// The digests are read before the log, each in its own read: a turn
	// that ends between the two is then in the log without a recorded
	// digest (its digest is computed from the log, as for a turn ended
	// before digests were recorded), where the other order showed it
	// running with the digest recorded at its end.
	//
	// Recorded digests are matched to turns by id (the n-th record of an
	// id to the n-th turn of that id), not by position: an edit that moves
	// or removes a turn's end must not hide its record.
	recorded := map[string][]store.TurnDigest{}
	if ds, ok := s.store.(store.TurnDigestStore); ok {
		list, err := ds.TurnDigests(ctx, id)
		if err != nil {
			return nil, readFailed("turns session="+id, err)
		}
		for _, d := range list {
			recorded[d.TurnID] = append(recorded[d.TurnID], d)
		}
	}
	st := reducer.New()
	chain := newTurnChain()
	type place struct {
		start, end int64
		digest     [32]byte
	}
	places := map[int64]*place{} // by turn artifact seq
	var order []int64
	// The log is folded a page at a time (Options.ReplayPage entries, at
	// most Options.ReplayPageBytes of them): read whole, it was up to
	// --max-session-bytes in memory beside the fold for each request.
	// The log only grows, so pages read in separate transactions are the
	// log as it was when the last was read (a page may add events stored
	// since the first: the turns are then as of that later point).
	var bad error // a stored event that does not decode: a bug, not a failed read
	err = eachLogEntry(ctx, s.store, id, s.opts.ReplayPage, s.opts.ReplayPageBytes, func(le store.Event) error {
		var ev protocol.Event
		if err := json.Unmarshal(le.Body, &ev); err != nil {
			bad = fmt.Errorf("turns session=%s pos=%d: %w", id, le.Pos, err)
			return bad
		}
		changes := st.Apply(withoutText(ev))
		chain.add(le)
		for _, c := range changes {
			if c.Kind == reducer.Created && c.Artifact.Type == protocol.ArtifactTurn {
				places[c.Seq] = &place{start: le.Pos}
				order = append(order, c.Seq)
			}
		}
		for _, a := range endedTurns(st, changes) {
			if p := places[a.Seq]; p != nil {
				p.end, p.digest = le.Pos, chain.cut()
			}
		}
		return nil
	})
	if bad != nil {
		return nil, bad
	}
	if err != nil {
		return nil, readFailed("turns session="+id, err)
	}
	// The same createdAt after the reads as before says no delete and
	// create came between them: the digests and the log (every page of
	// it) are one session's.
	if again, err := s.store.Session(ctx, id); err != nil || again.CreatedAt != sess.CreatedAt {
		if err == nil {
			err = protocol.Errorf(protocol.CodeUnavailable, "session %q was deleted and created again while its turns were read; read them again", id)
		}
		return nil, readFailed("turns session="+id, err)
	}
	// What the turns read of each artifact, without its streamed text:
	// st.Artifacts() copied every tool output and text block of the
	// session a second time beside the fold's own, for fields no turn
	// reads (a session of 64 MB of tool output took 64 MB more per
	// request).
	arts := st.ArtifactHeads()
	// An artifact belongs to the turn that was open when it was created:
	// the newest turn before it with its turnId. Matching by id alone
	// would give a turn the prompt and tool calls of a later turn that
	// reused its id (agents that restart count their ids from the start).
	byTurn := map[int64][]*protocol.Artifact{} // by turn artifact seq
	newest := map[string]int64{}               // turn id -> seq of its newest turn so far
	for _, b := range arts {
		switch {
		case b.Type == protocol.ArtifactTurn:
			newest[b.ID] = b.Seq
		case b.TurnID != "" && (b.Type == protocol.ArtifactUserMessage || b.Type == protocol.ArtifactToolCall):
			if seq := newest[b.TurnID]; seq != 0 {
				byTurn[seq] = append(byTurn[seq], b)
			}
		}
	}
	out := make([]protocol.Turn, 0, len(order))
	for _, seq := range order {
		a, p := arts[seq-1], places[seq]
		t := protocol.Turn{ID: a.ID, Seq: a.Seq, Source: a.String("source"), PromptID: a.String("promptId"), Status: a.String("status"),
			Error: a.String("error"), StartPos: p.start, ToolCalls: []protocol.TurnToolCall{}}
		t.StartedAt = int64(number(a.Fields["startedAt"]))
		if v, ok := a.Fields["endedAt"]; ok && v != nil {
			e := int64(number(v))
			t.EndedAt = &e
		}
		if r := a.String("stopReason"); r != "" {
			t.StopReason = &r
		}
		if v, ok := a.Fields["usage"]; ok && v != nil {
			t.Usage, _ = json.Marshal(v)
		}
		if rs := recorded[a.ID]; len(rs) > 0 {
			// What was recorded when the turn ended, wherever the log
			// now says it ends.
			end, h := rs[0].EndPos, hex.EncodeToString(rs[0].Digest[:])
			recorded[a.ID] = rs[1:]
			t.EndPos, t.Digest, t.DigestRecorded = &end, &h, true
		} else if p.end > 0 {
			end, h := p.end, hex.EncodeToString(p.digest[:])
			t.EndPos, t.Digest = &end, &h
		}
		for _, b := range byTurn[a.Seq] {
			switch b.Type {
			case protocol.ArtifactUserMessage:
				if t.Prompt == nil {
					text := b.String("text")
					t.Prompt = &text
				}
			case protocol.ArtifactToolCall:
				t.ToolCalls = append(t.ToolCalls, protocol.TurnToolCall{ID: b.ID, Name: b.String("name"), Kind: b.String("kind"), Title: b.String("title"), Status: b.String("status")})
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// Turn returns one turn of the session by its id; when a turn id was
// used twice, the latest such turn.
func (s *Server) Turn(ctx context.Context, id, turnID string) (protocol.Turn, error) {
	list, err := s.Turns(ctx, id)
	if err != nil {
		return protocol.Turn{}, err
	}
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].ID == turnID {
			return list[i], nil
		}
	}
	return protocol.Turn{}, protocol.Errorf(protocol.CodeNotFound, "turn %q not found in session %q", turnID, id)
}

// eventsAfter returns at most limit of the session's log entries with pos
// > after, in log order.
func eventsAfter(ctx context.Context, st store.Store, id string, after int64, limit int) ([]store.Event, error) {
	list, _, err := eventPage(ctx, st, id, after, limit, 0)
	return list, err
}

// eventPage returns the session's log entries with pos > after, in log
// order, cut at limit entries and maxBytes of bodies (store.PageCut), and
// whether entries follow: a page read by the store when it can (an
// EventPager), else cut from the whole log.
func eventPage(ctx context.Context, st store.Store, id string, after int64, limit, maxBytes int) ([]store.Event, bool, error) {
	if p, ok := st.(store.EventPager); ok {
		return p.EventsAfter(ctx, id, after, limit, maxBytes)
	}
	all, err := st.Events(ctx, id)
	if err != nil {
		return nil, false, err
	}
	i := 0
	for i < len(all) && all[i].Pos <= after {
		i++
	}
	rest := all[i:]
	sizes := make([]int64, min(len(rest), limit+1))
	for j := range sizes {
		sizes[j] = int64(len(rest[j].Body))
	}
	n := store.PageCut(sizes, limit, maxBytes)
	return rest[:n], n < len(rest), nil
}

// eachLogEntry calls fn with each of the session's stored log entries in
// order, reading the log in pages of at most limit entries and maxBytes
// of bodies (one entry at least) when the store can (an EventPager),
// else whole: cutting pages from the whole log would read it once a page.
func eachLogEntry(ctx context.Context, st store.Store, id string, limit, maxBytes int, fn func(store.Event) error) error {
	if _, ok := st.(store.EventPager); !ok {
		all, err := st.Events(ctx, id)
		if err != nil {
			return err
		}
		for _, e := range all {
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	}
	for after := int64(0); ; {
		page, more, err := eventPage(ctx, st, id, after, limit, maxBytes)
		if err != nil {
			return err
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if !more || len(page) == 0 {
			return nil
		}
		after = page[len(page)-1].Pos
	}
}

// EventLog returns the stored log entries of the session with pos >
// after, in log order, each event the JSON as stored: at most limit, and
// no more than Options.ReplayPageBytes of events together (one at least),
// so a page of large events (up to protocol.MaxEventBytes each) does not
// hold gigabytes; more says whether entries follow; created is the
// createdAt of the session the page is of (protocol.HeaderSessionCreated).
//
// The page is read apart from the session's record, and a store reads no
// page of a missing session but an empty one: the record is read before
// and after it. Gone after, the session is 404, not an empty page whose
// null next would say the log ended there (a client exporting the log
// would take a short log for the whole); deleted and created again in
// between (another createdAt), the page may be of either, and is read
// again.
func (s *Server) EventLog(ctx context.Context, id string, after int64, limit int) (page []protocol.LoggedEvent, more bool, created int64, err error) {
	var list []store.Event
	for tries := 0; ; tries++ {
		before, err := s.store.Session(ctx, id)
		if err != nil {
			return nil, false, 0, readFailed("events session="+id, err)
		}
		if list, more, err = eventPage(ctx, s.store, id, after, limit, s.opts.ReplayPageBytes); err != nil {
			return nil, false, 0, readFailed("events session="+id, err)
		}
		now, err := s.store.Session(ctx, id)
		if err != nil {
			return nil, false, 0, readFailed("events session="+id, err)
		}
		if now.CreatedAt == before.CreatedAt {
			created = now.CreatedAt
			break
		}
		if tries == 2 {
			return nil, false, 0, protocol.Errorf(protocol.CodeUnavailable, "events session=%s: the session was deleted and created again while each of 3 reads of its page ran; retry", id)
		}
	}
	page = make([]protocol.LoggedEvent, len(list))
	for i, e := range list {
		page[i] = protocol.LoggedEvent{Pos: e.Pos, Instance: e.Instance, AgentSeq: e.AgentSeq, Event: e.Body}
	}
	return page, more, created, nil
}

// number reads a JSON number field as the reducer stores it.
func number(v any) float64 {
	switch n := v.(type) {
	case float64:
		return n
	case int64:
		return float64(n)
	case int:
		return float64(n)
	case json.Number:
		f, _ := n.Float64()
		return f
	case json.RawMessage:
		var f float64
		_ = json.Unmarshal(n, &f)
		return f
	}
	return 0
}
