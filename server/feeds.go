package server

import (
	"context"
	"fmt"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/hub"
	"github.com/rein-ai/rein/server/store"
)

// Feeds: what a stream needs from the domain, a starting point (a
// snapshot or a replay) and the live change records after it, without any
// wire format. An adapter frames both (internal/httpapi: SSE).

// ArtifactFeed is a session's artifacts from a revision on, then its live
// changes. The replay is read from the store a page at a time (Replay), so
// what it holds in memory is one page (Options.ReplayPage artifacts and
// Options.ReplayPageBytes of them, or one larger artifact), however long
// the session and however large its artifacts.
type ArtifactFeed struct {
	// Live receives the session's artifact change records (Seq =
	// revision); those with Seq at or below what Replay returned are in
	// the replay already. The adapter closes it.
	Live *hub.Subscriber

	s  *Server
	id string
	// page is the first page, read by WatchArtifacts.
	page store.Snapshot
	// full: the replay holds every artifact (Full).
	full bool
	// created is the createdAt of the session the replay is of (Created).
	created int64
}

// Created is the createdAt of the session the replay is of
// (protocol.HeaderSessionCreated), read with its first page: a session
// deleted and created again under its id a moment before the stream
// opened cannot lend the stream its createdAt, and one deleted after it
// opened ends the stream (its subscription is closed, and a later page
// of another session's is refused by Replay).
func (f *ArtifactFeed) Created() int64 { return f.created }

// Full reports whether the replay holds every artifact of the session
// rather than those changed after the client's revision: a client drops
// what it holds that a full replay did not send (protocol.SnapshotComplete).
func (f *ArtifactFeed) Full() bool { return f.full }

// WatchArtifacts subscribes first, then reads the first page of the
// replay (so an unknown session fails here, before anything is sent).
// after > 0 resumes: every artifact changed after it, including older
// artifacts updated while the client was away, once each; after above the
// session's revision replays all.
func (s *Server) WatchArtifacts(ctx context.Context, id string, after int64) (*ArtifactFeed, error) {
	sub := s.hub.Subscribe(artifactTopic(id), nil)
	f := &ArtifactFeed{Live: sub, s: s, id: id}
	page, err := s.artifactsPage(ctx, id, after)
	f.full = after == 0
	if err == nil && after > page.Rev {
		// The client has seen revisions this database never had: it was
		// restored from a backup, or the session was deleted and created
		// again (or the client is confused). Replaying nothing would
		// leave it showing what is no longer true; replay everything,
		// marked full, so that it also drops what it has beyond it.
		page, err = s.artifactsPage(ctx, id, 0)
		f.full = true
	}
	if err != nil {
		sub.Close()
		return nil, fmt.Errorf("artifact stream session=%s: %w", id, err)
	}
	f.page, f.created = page, page.Created
	return f, nil
}

// Replay hands the replay to emit a page at a time, in revision order,
// reading each page in its own read transaction after emit returned for
// the one before, and returns the revision the replay brought the client
// up to: live records above it are new to the client, those at or below
// it are in the replay.
//
// Why that is exact: each page holds the artifacts with the lowest
// revisions above the previous page's last one, read at one moment. An
// artifact changed while the replay runs gets a revision above every page
// read so far, so a later page holds it again, as it is then (the client
// lets a snapshot replace what it holds). The replay ends with a page that
// left nothing for a next one (store.Snapshot.More unset; a page shorter
// than the count may still have, cut by its bytes): at that moment it held
// every artifact up to the session's revision, and what the client has is
// the session as of that revision; every change above it was committed
// after the subscription and is in Live. A change is thus in the replay
// or live, never both.
func (f *ArtifactFeed) Replay(ctx context.Context, emit func([]store.Artifact) error) (int64, error) {
	page := f.page
	f.page = store.Snapshot{}
	for {
		if len(page.Artifacts) > 0 {
			if err := emit(page.Artifacts); err != nil {
				return 0, err
			}
		}
		if !page.More {
			return page.Rev, nil
		}
		last := page.Artifacts[len(page.Artifacts)-1].Rev
		var err error
		if page, err = f.s.artifactsPage(ctx, f.id, last); err != nil {
			return 0, fmt.Errorf("artifact replay session=%s after=%d: %w", f.id, last, err)
		}
		if page.Created != f.created {
			// Deleted and created again since the first page: the
			// stream's subscription is closed, and its client, which
			// reconnects, is told of the new session then.
			return 0, fmt.Errorf("artifact replay session=%s after=%d: the session was deleted and created again during the replay", f.id, last)
		}
	}
}

// ArtifactsBySeq returns a page of the session's artifacts with seq >
// after, in seq order, cut at Options.ReplayPage artifacts and
// Options.ReplayPageBytes (store.PageCut), and whether more follow: GET
// /artifacts reads the whole list with it, a page at a time.
func (s *Server) ArtifactsBySeq(ctx context.Context, id string, after int64) ([]store.Artifact, bool, error) {
	limit, maxBytes := s.opts.ReplayPage, s.opts.ReplayPageBytes
	if f, err := s.settle(ctx, id); err != nil || f != nil {
		if f == nil {
			return nil, false, err
		}
		list, more := f.seqPage(after, limit, maxBytes)
		s.bodies.share(id, list)
		return list, more, nil
	}
	list, more, err := s.artifactsBySeq(ctx, id, after, limit, maxBytes)
	if err != nil {
		return nil, false, err
	}
	s.bodies.share(id, list)
	return list, more, nil
}

// artifactsBySeq is store.ArtifactsBySeq read in a replay slot.
func (s *Server) artifactsBySeq(ctx context.Context, id string, after int64, limit, maxBytes int) ([]store.Artifact, bool, error) {
	if err := s.replaySlot(ctx); err != nil {
		return nil, false, err
	}
	defer func() { <-s.replaySlots }()
	list, more, err := s.store.ArtifactsBySeq(ctx, id, after, limit, maxBytes)
	return list, more, readFailed("artifacts session="+id, err)
}

// artifactsPage is store.ArtifactsPage of a replay's page
// (Options.ReplayPage, Options.ReplayPageBytes), read in a replay slot.
func (s *Server) artifactsPage(ctx context.Context, id string, after int64) (store.Snapshot, error) {
	return s.artifactsPageOf(ctx, id, after, s.opts.ReplayPage)
}

// artifactsPageOf is artifactsPage of at most limit artifacts.
func (s *Server) artifactsPageOf(ctx context.Context, id string, after int64, limit int) (store.Snapshot, error) {
	maxBytes := s.opts.ReplayPageBytes
	// A stream has subscribed before it reads (see WatchArtifacts), so
	// what settle brings into the store and what the stream receives
	// live cover every change between them.
	if f, err := s.settle(ctx, id); err != nil || f != nil {
		if f == nil {
			return store.Snapshot{}, err
		}
		page := f.page(after, limit, maxBytes)
		s.bodies.share(id, page.Artifacts)
		return page, nil
	}
	page, err := s.storedPage(ctx, id, after, limit, maxBytes)
	if err != nil {
		return store.Snapshot{}, err
	}
	s.bodies.share(id, page.Artifacts)
	return page, nil
}

// storedPage is store.ArtifactsPage read in a replay slot.
func (s *Server) storedPage(ctx context.Context, id string, after int64, limit, maxBytes int) (store.Snapshot, error) {
	if err := s.replaySlot(ctx); err != nil {
		return store.Snapshot{}, err
	}
	defer func() { <-s.replaySlots }()
	page, err := s.store.ArtifactsPage(ctx, id, after, limit, maxBytes)
	return page, readFailed("artifacts page session="+id, err)
}

// replaySlot waits for one of Options.ReplaySlots: replay pages are read
// a bounded number at a time however many followers replay at once, so
// ingest (the writer and its posters) keeps the rest of the machine.
// Only the read holds the slot, not the write to the client, so a slow
// client delays nobody else.
func (s *Server) replaySlot(ctx context.Context) error {
	select {
	case s.replaySlots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ArtifactsChanged returns at most limit of the artifacts changed after
// revision after, in revision order (fewer when their bodies pass
// Options.ReplayPageBytes, one at least), and the session's revision,
// read at one moment; more says whether more artifacts follow the last
// one.
func (s *Server) ArtifactsChanged(ctx context.Context, id string, after int64, limit int) (page store.Snapshot, more bool, err error) {
	page, err = s.artifactsPageOf(ctx, id, after, limit)
	return page, page.More, err
}

// SessionFeed is the session records of a project (all when ""), then
// their live changes.
type SessionFeed struct {
	// Sessions are the records, oldest first.
	Sessions []protocol.Session
	// Live receives session_created, session_updated and session_removed
	// records (Key = project). The adapter closes it.
	Live *hub.Subscriber
}

// WatchSessions: the writer takes the snapshot, see sessionsReq.
func (s *Server) WatchSessions(ctx context.Context, project string) (SessionFeed, error) {
	r := newReply[sessionsSnapshot]()
	snap, err := call(ctx, s.w, &sessionsReq{project: project, reply: r}, r)
	if err != nil {
		return SessionFeed{}, fmt.Errorf("session stream: %w", err)
	}
	return SessionFeed{Sessions: snap.recs, Live: snap.sub}, nil
}

// CommandFeed is a sandbox's command stream: the stored commands it asked
// to replay, then new ones.
type CommandFeed struct {
	// Replay are the stored commands after the Last-Event-ID, up to After.
	Replay []StoredCommand
	// Live receives the session's commands (Seq = command id); those with
	// Seq <= After are in Replay or were sent before the stream opened.
	Live *hub.Subscriber
	// After is the session's last command id when the stream opened.
	After int64
	// Release must be called once, after the stream ended: the session's
	// sandbox has then left (unless a newer connection took its place).
	Release func()
	// Created is the createdAt of the session the stream was opened on
	// (protocol.HeaderSessionCreated), read as it opened: a session
	// deleted and created again a moment before or after cannot lend it
	// its own.
	Created int64
}

// OpenCommandStream registers the sandbox (closing an older connection)
// and replays the stored commands after after when resume is set (the
// Last-Event-ID), else after the session's acknowledged command: without
// resume every command not yet acknowledged comes first. New ones follow.
func (s *Server) OpenCommandStream(ctx context.Context, id string, from Sandbox, after int64, resume bool) (CommandFeed, error) {
	r := newReply[openedStream]()
	o, err := call(ctx, s.w, &openStreamReq{id: id, from: from, after: after, resume: resume, reply: r}, r)
	if err != nil {
		return CommandFeed{}, fmt.Errorf("command stream session=%s: %w", id, err)
	}
	release := func() { s.w.send(&closeStreamReq{id: id, token: o.token}) }
	var replay []StoredCommand
	// o.from is where the replay starts: Last-Event-ID when the sandbox
	// sent one, else the last acknowledged command (commands.go), so
	// accepted commands nobody took are delivered again.
	if o.from < o.lastCmd {
		if replay, err = s.store.Commands(ctx, id, o.from, o.lastCmd); err != nil {
			o.sub.Close()
			release()
			return CommandFeed{}, readFailed("command stream session="+id, err)
		}
	}
	return CommandFeed{Replay: replay, Live: o.sub, After: o.lastCmd, Release: release, Created: o.created}, nil
}
