package server

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/httpapi"
)

// service adapts Server to httpapi.Service; the stream methods return
// adapter types, so they are not part of Server's exported API.
type service struct{ *Server }

// ArtifactStream subscribes first, then reads the snapshot: a change
// committed in between is in both, and the live copy is skipped by its
// revision (After). Resume with Last-Event-ID R replays every artifact
// changed after R, including older artifacts updated while the client was
// away, as one snapshot each; R above the session's revision replays all.
func (s service) ArtifactStream(ctx context.Context, id string, after int64, _ bool) (*httpapi.Stream, error) {
	sub := s.hub.Subscribe(artifactTopic(id), nil)
	snap, err := s.store.ArtifactsSince(ctx, id, after)
	if err != nil {
		sub.Close()
		return nil, err
	}
	if after > snap.Rev {
		// The client has seen revisions this database never had: it was
		// restored from a backup (or the client is confused). Replaying
		// nothing would leave it showing what is no longer true; replay
		// everything, which it applies over what it has.
		if snap, err = s.store.ArtifactsSince(ctx, id, 0); err != nil {
			sub.Close()
			return nil, err
		}
	}
	initial := make([][]byte, 0, len(snap.Artifacts)+1)
	for _, a := range snap.Artifacts {
		// The stored JSON is sent as is: no decode and re-encode.
		data := make([]byte, 0, len(a.Body)+13)
		data = append(append(append(data, `{"artifact":`...), a.Body...), '}')
		initial = append(initial, encodeSSE(a.Rev, protocol.SSEArtifactSnapshot, data))
	}
	done, _ := json.Marshal(protocol.SnapshotComplete{Rev: snap.Rev})
	initial = append(initial, encodeSSE(snap.Rev, protocol.SSESnapshotComplete, done))
	return &httpapi.Stream{Initial: initial, Sub: sub, After: snap.Rev}, nil
}

// SessionStream: the writer takes the snapshot, see sessionsReq.
func (s service) SessionStream(ctx context.Context, project string) (*httpapi.Stream, error) {
	r := newReply[sessionsSnapshot]()
	snap, err := call(ctx, s.w, &sessionsReq{project: project, reply: r}, r)
	if err != nil {
		return nil, fmt.Errorf("session stream: %w", err)
	}
	initial := make([][]byte, 0, len(snap.recs)+1)
	for _, rec := range snap.recs {
		data, err := json.Marshal(protocol.SessionPayload{Session: rec})
		if err != nil {
			snap.sub.Close()
			return nil, fmt.Errorf("session stream: encode %s: %w", rec.ID, err)
		}
		initial = append(initial, encodeSSE(0, protocol.SSESessionSnapshot, data))
	}
	done, _ := json.Marshal(protocol.SnapshotComplete{})
	initial = append(initial, encodeSSE(0, protocol.SSESnapshotComplete, done))
	return &httpapi.Stream{Initial: initial, Sub: snap.sub}, nil
}

// CommandStream registers the sandbox (closing an older connection) and
// replays the stored commands after Last-Event-ID, then streams new ones.
// Without Last-Event-ID it replays those not acknowledged (commands.go).
func (s service) CommandStream(ctx context.Context, id, instance string, after int64, resume bool) (*httpapi.Stream, error) {
	r := newReply[openedStream]()
	o, err := call(ctx, s.w, &openStreamReq{id: id, instance: instance, after: after, resume: resume, cred: credential(ctx), reply: r}, r)
	if err != nil {
		return nil, fmt.Errorf("command stream session=%s: %w", id, err)
	}
	release := func() { s.w.send(&closeStreamReq{id: id, token: o.token}) }
	var initial [][]byte
	if o.from < o.lastCmd {
		cmds, err := s.store.Commands(ctx, id, o.from, o.lastCmd)
		if err != nil {
			o.sub.Close()
			release()
			return nil, err
		}
		for _, c := range cmds {
			initial = append(initial, encodeSSE(c.ID, protocol.SSECommand, c.Body))
		}
	}
	return &httpapi.Stream{Initial: initial, Sub: o.sub, After: o.lastCmd, Release: release}, nil
}

func (s service) CreateSession(ctx context.Context, id string, req protocol.CreateSessionRequest) (protocol.Session, string, error) {
	c, err := s.Server.createSession(ctx, id, deref(req.Project), deref(req.Prompt))
	return c.Session, c.SandboxToken, err
}

// AppendEvents passes on the sandbox token the request came with, so the
// writer refuses it if the token was rotated while the request waited.
func (s service) AppendEvents(ctx context.Context, id, instance string, events []protocol.Event, raws [][]byte) (protocol.EventsAccepted, error) {
	return s.appendEvents(ctx, id, instance, events, raws, credential(ctx))
}

func (s service) SandboxSession(hash [32]byte) (string, bool) { return s.index.session(hash) }

// credential is the sandbox token hash that authenticated the request, or
// nil (the client token, or authentication off).
func credential(ctx context.Context) *[32]byte {
	if h, ok := httpapi.SandboxCredential(ctx); ok {
		return &h
	}
	return nil
}

func (s service) AddCommand(ctx context.Context, id string, cmd protocol.Command) (int64, error) {
	return s.SendCommand(ctx, id, cmd)
}
