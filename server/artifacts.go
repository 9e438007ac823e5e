package server

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
	"github.com/rein-ai/rein/server/store"
)

// storedArtifact is the size of an artifact's last full body and of the
// text appended to it since.
type storedArtifact struct {
	body, appended int
}

// dirtyArtifact is what one group did to one artifact.
type dirtyArtifact struct {
	rev int64 // the artifact's revision after the group
	// full: the group created the artifact or set a field, so its whole
	// body must be written. Otherwise it only appended to streamed fields:
	// fields and texts hold the text per field, in order of first append.
	full   bool
	fields []string
	texts  []*strings.Builder
	// bytes is the appended text's length; utf8 says it is all valid UTF-8
	// (see store.MergeAppends) and holds no NUL unless nul, the store's
	// appends may hold it (store.NULAppender): PostgreSQL's text type
	// cannot store U+0000, and an append of it failed every commit of its
	// batch, so there such text goes in the whole body, where JSON
	// escapes it.
	bytes int
	utf8  bool
	nul   bool
}

// newDirtyArtifact returns the record of a group's changes to one
// artifact; nul says the store's appends may hold NUL (appendsNUL).
func newDirtyArtifact(nul bool) *dirtyArtifact {
	return &dirtyArtifact{utf8: true, nul: nul}
}

// appendsNUL reports whether st's appends may hold NUL
// (store.NULAppender), asked once per writer rather than per artifact of
// every group.
func appendsNUL(st store.Store) bool {
	n, ok := st.(store.NULAppender)
	return ok && n.AppendsNUL()
}

func (d *dirtyArtifact) add(c reducer.Change) {
	d.rev = max(d.rev, c.Rev)
	if c.Kind != reducer.Appended {
		d.full = true
		d.fields, d.texts = nil, nil
		return
	}
	if d.full {
		return
	}
	d.bytes += len(c.Append)
	d.utf8 = d.utf8 && utf8.ValidString(c.Append) && (d.nul || strings.IndexByte(c.Append, 0) < 0)
	i := slices.Index(d.fields, c.Field)
	if i < 0 {
		i = len(d.fields)
		d.fields = append(d.fields, c.Field)
		d.texts = append(d.texts, &strings.Builder{})
	}
	d.texts[i].WriteString(c.Append)
}

// appends returns the group's appends, one per field.
func (d *dirtyArtifact) appends() []store.FieldAppend {
	out := make([]store.FieldAppend, len(d.fields))
	for i, f := range d.fields {
		out[i] = store.FieldAppend{Field: f, Text: d.texts[i].String()}
	}
	return out
}

// artifactPolicy is the artifact storage policy of one session: what the
// database holds of each artifact this process wrote, and per change
// whether a commit appends the streamed text or rewrites the whole body.
//
// An artifact the group only appended to gets its appended text as
// AppendArtifacts rather than its whole body, so streaming into it costs
// what was appended, not its size. Appends pile up until they outgrow the
// last full body; then (and on any other change) the whole body is
// written again and the appends dropped. The full writes of a growing
// artifact thus double in size: they add up to less than twice its final
// size, and a read merges at most as many appended bytes as the body has.
type artifactPolicy struct {
	// stored is, per artifact written in full by this policy, what the
	// database holds for it. An artifact not in it (any artifact of a
	// state folded from the log) is written in full on its next change,
	// which also drops whatever appends were pending for it.
	stored map[int64]storedArtifact
}

func newArtifactPolicy() artifactPolicy {
	return artifactPolicy{stored: map[int64]storedArtifact{}}
}

// appendable reports whether the group's change d to artifact seq may be
// stored as appended text.
func (p artifactPolicy) appendable(seq int64, d *dirtyArtifact) bool {
	was, known := p.stored[seq]
	return known && !d.full && d.utf8 && was.appended+d.bytes <= was.body
}

// ops returns the writes for a session's changed artifacts, whose current
// values st holds, and a func that records, once they are committed, what
// the database holds. With the writes taken, st releases the bodies of its
// closed artifacts (see reducer.State.Release): from here on they live in
// the store, and what it records of them is forgotten too. Should the
// commit fail, the writer drops st altogether.
func (p artifactPolicy) ops(id string, st *reducer.State, arts map[int64]*dirtyArtifact) ([]store.Op, func(), error) {
	order := make([]int64, 0, len(arts))
	for seq := range arts {
		order = append(order, seq)
	}
	slices.Sort(order)
	var (
		puts    []store.Artifact
		appends []store.ArtifactAppend
		next    = make(map[int64]storedArtifact, len(order))
	)
	for _, seq := range order {
		d := arts[seq]
		if p.appendable(seq, d) {
			was := p.stored[seq]
			appends = append(appends, store.ArtifactAppend{Seq: seq, Rev: d.rev, Fields: d.appends()})
			next[seq] = storedArtifact{body: was.body, appended: was.appended + d.bytes}
			continue
		}
		// ArtifactJSON, not MarshalJSON of an Artifact copy: a growing
		// tool output is written whole at 1, 2, 4... MB, and the copy of
		// its text, with json.Marshal's growing buffer, made the last
		// write hold the text four times (272 MB of heap for a 64 MB
		// output; see reducer.State.ArtifactJSON).
		body, rev, err := st.ArtifactJSON(seq)
		if err == nil && body == nil {
			err = errors.New("not held")
		}
		if err != nil {
			return nil, nil, fmt.Errorf("encode artifact session=%s seq=%d: %w", id, seq, err)
		}
		puts = append(puts, store.Artifact{Seq: seq, Rev: rev, Body: body})
		next[seq] = storedArtifact{body: len(body)}
	}
	var ops []store.Op
	if len(puts) > 0 {
		ops = append(ops, store.PutArtifacts{SessionID: id, Artifacts: puts})
	}
	if len(appends) > 0 {
		ops = append(ops, store.AppendArtifacts{SessionID: id, Appends: appends})
	}
	st.Release()
	return ops, func() {
		maps.Copy(p.stored, next)
		for seq := range p.stored {
			if !st.Held(seq) {
				// Its next change restores it from the store and
				// writes it whole.
				delete(p.stored, seq)
			}
		}
	}, nil
}

// restore hands st the stored bodies of the released artifacts that ev
// changes (reducer.State.Needs), read from the store; a restored
// permission may name a released tool, hence the loop.
func (w *writer) restore(id string, st *reducer.State, ev protocol.Event) error {
	for need := st.Needs(ev); len(need) > 0; need = st.Needs(ev) {
		for _, seq := range need {
			ctx, cancel := w.storeCtx()
			list, _, err := w.store.ArtifactsBySeq(ctx, id, seq-1, 1, 0)
			cancel()
			if err != nil {
				return fmt.Errorf("restore artifact session=%s seq=%d: %w", id, seq, err)
			}
			if len(list) != 1 || list[0].Seq != seq {
				return fmt.Errorf("restore artifact session=%s seq=%d: not stored", id, seq)
			}
			if err := st.Restore(list[0].Body); err != nil {
				return fmt.Errorf("restore artifact session=%s seq=%d: %w", id, seq, err)
			}
			if !st.Held(seq) {
				return fmt.Errorf("restore artifact session=%s seq=%d: the stored body is not that artifact's", id, seq)
			}
		}
	}
	return nil
}
