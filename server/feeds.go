package server

import (
	"context"
	"fmt"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/hub"
)

// Feeds: what a stream needs from the domain, a starting point (a
// snapshot or a replay) and the live change records after it, without any
// wire format. An adapter frames both (internal/httpapi: SSE).

// ArtifactFeed is a session's artifacts from a revision on, then its live
// changes.
type ArtifactFeed struct {
	// Snapshot holds every artifact changed after the revision asked for
	// (each once, as stored now) and the session's head revision.
	Snapshot Snapshot
	// Live receives the session's artifact change records (Seq =
	// revision); those with Seq <= Snapshot.Rev are in the snapshot
	// already. The adapter closes it.
	Live *hub.Subscriber
}

// WatchArtifacts subscribes first, then reads the snapshot: a change
// committed in between is in both, and the live copy is skipped by its
// revision. after > 0 resumes: every artifact changed after it, including
// older artifacts updated while the client was away, once each; after
// above the session's revision replays all.
func (s *Server) WatchArtifacts(ctx context.Context, id string, after int64) (ArtifactFeed, error) {
	sub := s.hub.Subscribe(artifactTopic(id), nil)
	snap, err := s.store.ArtifactsSince(ctx, id, after)
	if err != nil {
		sub.Close()
		return ArtifactFeed{}, err
	}
	if after > snap.Rev {
		// The client has seen revisions this database never had: it was
		// restored from a backup (or the client is confused). Replaying
		// nothing would leave it showing what is no longer true; replay
		// everything, which it applies over what it has.
		if snap, err = s.store.ArtifactsSince(ctx, id, 0); err != nil {
			sub.Close()
			return ArtifactFeed{}, err
		}
	}
	return ArtifactFeed{Snapshot: snap, Live: sub}, nil
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
}

// OpenCommandStream registers the sandbox (closing an older connection)
// and, when resume is set, replays the stored commands after after.
// Without resume only commands sent after the connection arrive.
func (s *Server) OpenCommandStream(ctx context.Context, id string, from Sandbox, after int64, resume bool) (CommandFeed, error) {
	r := newReply[openedStream]()
	o, err := call(ctx, s.w, &openStreamReq{id: id, instance: from.Instance, after: after, resume: resume, cred: from.Token, reply: r}, r)
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
			return CommandFeed{}, err
		}
	}
	return CommandFeed{Replay: replay, Live: o.sub, After: o.lastCmd, Release: release}, nil
}
