package server

import (
	"bytes"
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

// storedArtifact is what the database holds of an artifact: the size of
// its stored body and of the text appended to it since, that text's
// length per field.
type storedArtifact struct {
	body, appended int
	pending        []fieldBytes
}

// fieldBytes is a length of text appended to one field.
type fieldBytes struct {
	field string
	n     int
}

// addBytes returns list with n more bytes for field.
func addBytes(list []fieldBytes, field string, n int) []fieldBytes {
	for i := range list {
		if list[i].field == field {
			list[i].n += n
			return list
		}
	}
	return append(list, fieldBytes{field, n})
}

// dirtyArtifact is what one group did to one artifact.
type dirtyArtifact struct {
	rev int64 // the artifact's revision after the group
	// full: the group created the artifact or set a field that may be
	// streamed text, so its whole body must be written. set: it set other
	// fields (a tool's status), so its body must be written, but the
	// streamed text the store holds may stay (a head, see
	// artifactPolicy). fields and texts hold the text it appended per
	// field, in order of first append, since the last change that made it
	// full: the end of the artifact's streamed text.
	full   bool
	set    bool
	fields []string
	texts  []*strings.Builder
	// bytes is the appended text's length; utf8 says it is all valid UTF-8
	// (see store.MergeAppends) and holds no NUL unless nul, the store's
	// appends may hold it (store.NULAppender). Both backends' appends may
	// (PostgreSQL's text type cannot store U+0000, so its store keeps such
	// an append as bytes); to a store that cannot, such text goes in the
	// whole body, where JSON escapes it.
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
	if c.Kind == reducer.Set && !streamedName(c.Field) {
		d.set = true
		return
	}
	if c.Kind != reducer.Appended {
		// The whole body is written; the text appended from here on
		// is recorded again, so that a big one can go as appends after
		// it (see ops).
		d.full = true
		d.fields, d.texts, d.bytes, d.utf8 = nil, nil, 0, true
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

// streamedName says whether field may be streamed text in some artifact
// type (protocol.Appendable): a Change does not say the type, and a set
// of such a field replaces the text the store's appends continue.
func streamedName(field string) bool {
	return field == protocol.FieldText || field == protocol.FieldInputText || field == protocol.FieldOutput
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
//
// Up to wholeBodyMax, that is. Past it an artifact is never written whole
// again while its text only grows: its appends pile up, and a change to
// its other fields (a tool finishing) writes its head (PutArtifactHeads:
// the body with the streamed text the store already holds, the appends
// kept). A whole write hands the database the whole text at once, and
// its driver copies it twice more: a 64 MB tool output took the server's
// peak RSS to about 400 MiB at its last doubling and its close, and one of
// 256 MB to 1.2 GiB.
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

// wholeBodyMax is the size past which a growing artifact is no longer
// written whole (see artifactPolicy). A variable only so that a test can
// make it small (SmallThresholds in export_test.go).
var wholeBodyMax = 1 << 20

// write says how a group's change d to artifact seq is stored.
type write int

const (
	writeWhole  write = iota // PutArtifacts
	writeAppend              // AppendArtifacts
	writeHead                // PutArtifactHeads, then AppendArtifacts
	// writeSplit is a whole write whose text appended since the artifact
	// was created (or its text set), or in the group, is past
	// wholeBodyMax (a session whose artifacts were settled after a while,
	// see materialise.go): PutArtifacts of the body without that text,
	// then that text as AppendArtifacts, so that the closing head writes
	// only what precedes it.
	writeSplit
	// writeRebase is the first write of a big artifact this process did
	// not write (its state was folded from the log after a restart or an
	// eviction while it streamed, or it was restored from the store for
	// a late change), whose stored layout the policy does not know:
	// PutArtifacts of the body without its streamed text, then the whole
	// text as AppendArtifacts, a chunk at a time, so that neither this
	// write nor the closing head hands the database the text at once.
	writeRebase
)

// how returns how the group's change d to artifact seq is stored.
func (p artifactPolicy) how(seq int64, d *dirtyArtifact) write {
	was, known := p.stored[seq]
	if !known || d.full || !d.utf8 {
		if d.utf8 && d.bytes > wholeBodyMax {
			return writeSplit
		}
		return writeWhole
	}
	big := was.body+was.appended+d.bytes > wholeBodyMax
	switch {
	case d.set && big:
		return writeHead
	case d.set:
		return writeWhole
	case was.appended+d.bytes <= was.body || big:
		return writeAppend
	}
	return writeWhole
}

// rebaseAppends returns an artifact's streamed text (text, its chunks per
// field) as appends of at most a chunk each, fields in name order, when
// it is past wholeBodyMax and the store may hold it as appends (valid
// UTF-8, and NUL only where nul says the store's appends may hold it;
// see dirtyArtifact); nil otherwise. Checking costs a pass over the
// text, which only an artifact the policy does not know pays, once.
func rebaseAppends(text map[string][][]byte, nul bool) []store.FieldAppend {
	total := 0
	for _, chunks := range text {
		for _, c := range chunks {
			total += len(c)
		}
	}
	if total <= wholeBodyMax {
		return nil
	}
	fields := slices.Sorted(maps.Keys(text))
	for _, f := range fields {
		for _, c := range text[f] {
			if !utf8.Valid(c) || !nul && bytes.IndexByte(c, 0) >= 0 {
				return nil
			}
		}
	}
	var out []store.FieldAppend
	for _, f := range fields {
		for _, c := range text[f] {
			out = append(out, store.FieldAppend{Field: f, Text: string(c)})
		}
	}
	return out
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
		puts, heads []store.Artifact
		appends     []store.ArtifactAppend
		next        = make(map[int64]storedArtifact, len(order))
	)
	for _, seq := range order {
		d := arts[seq]
		how := p.how(seq, d)
		var rebase []store.FieldAppend
		if _, known := p.stored[seq]; !known && !d.full {
			if rebase = rebaseAppends(st.StreamedText(seq), d.nul); rebase != nil {
				how = writeRebase
			}
		}
		// What the store holds once this is written: the text pending
		// in appends per field, which a body written now leaves out.
		var stored storedArtifact
		switch how {
		case writeAppend, writeHead:
			was := p.stored[seq]
			stored = storedArtifact{body: was.body, appended: was.appended + d.bytes, pending: slices.Clone(was.pending)}
		case writeSplit:
			stored.appended = d.bytes
		case writeRebase:
			for _, a := range rebase {
				stored.appended += len(a.Text)
				stored.pending = addBytes(stored.pending, a.Field, len(a.Text))
			}
			appends = append(appends, store.ArtifactAppend{Seq: seq, Rev: d.rev, Fields: rebase})
		}
		if how != writeWhole && how != writeRebase {
			for i, f := range d.fields {
				stored.pending = addBytes(stored.pending, f, d.texts[i].Len())
			}
			if len(d.fields) > 0 {
				appends = append(appends, store.ArtifactAppend{Seq: seq, Rev: d.rev, Fields: d.appends()})
			}
		}
		if how != writeAppend {
			// ArtifactJSON's encoding, not MarshalJSON of an Artifact
			// copy: a growing tool output was written whole at 1, 2,
			// 4... MB, and the copy of its text, with json.Marshal's
			// growing buffer, made the last write hold the text four
			// times (272 MB of heap for a 64 MB output; see
			// reducer.State.ArtifactJSON).
			var trim map[string]int // nil for most writes: nothing pending
			for _, f := range stored.pending {
				if trim == nil {
					trim = make(map[string]int, len(stored.pending))
				}
				trim[f.field] = f.n
			}
			body, rev, err := st.ArtifactJSONTrimmed(seq, trim)
			if err == nil && body == nil {
				err = errors.New("not held")
			}
			if err != nil {
				return nil, nil, fmt.Errorf("encode artifact session=%s seq=%d: %w", id, seq, err)
			}
			if how == writeHead {
				heads = append(heads, store.Artifact{Seq: seq, Rev: rev, Body: body})
			} else {
				puts = append(puts, store.Artifact{Seq: seq, Rev: rev, Body: body})
			}
			stored.body = len(body)
		}
		next[seq] = stored
	}
	var ops []store.Op
	if len(puts) > 0 {
		ops = append(ops, store.PutArtifacts{SessionID: id, Artifacts: puts})
	}
	if len(heads) > 0 {
		ops = append(ops, store.PutArtifactHeads{SessionID: id, Artifacts: heads})
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
