package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/store"
)

// Domain adapts the domain server to Service: it frames the domain's feeds
// as SSE streams and passes on who a sandbox request came from.
func Domain(s *server.Server) Service { return service{s} }

// service adapts *server.Server to Service; the domain's own methods
// (GetSession, Health, ...) serve as they are.
type service struct{ *server.Server }

// ArtifactStream sends the domain's replay as artifact_snapshot messages,
// a page at a time as the domain reads them, then snapshot_complete; live
// changes at or below the replay's revision are skipped (After), since
// the replay holds them.
func (s service) ArtifactStream(ctx context.Context, id string, after int64, _ bool) (*Stream, error) {
	f, err := s.WatchArtifacts(ctx, id, after)
	if err != nil {
		return nil, err
	}
	replay := func(write func([]byte) error, flush func() error) (int64, error) {
		rev, err := f.Replay(ctx, func(page []store.Artifact) error {
			for _, a := range page {
				if err := writeArtifactSnapshot(write, a); err != nil {
					return err
				}
			}
			return flush()
		})
		if err != nil {
			return 0, err
		}
		done, _ := json.Marshal(protocol.SnapshotComplete{Rev: rev, Full: f.Full()})
		return rev, write(Encode(rev, protocol.SSESnapshotComplete, done))
	}
	return &Stream{Replay: replay, Sub: f.Live, SessionCreated: f.Created()}, nil
}

// writeArtifactSnapshot writes a stored artifact as an artifact_snapshot
// message: the stored JSON as it is, no decode and re-encode, and a large
// body not copied either.
func writeArtifactSnapshot(write func([]byte) error, a store.Artifact) error {
	if bytes.IndexByte(a.Body, '\n') >= 0 || bytes.IndexByte(a.Body, '\r') >= 0 {
		// Not stored JSON (which escapes line breaks): go-sse splits it
		// into data lines.
		data := make([]byte, 0, len(a.Body)+13)
		data = append(append(append(data, `{"artifact":`...), a.Body...), '}')
		return write(Encode(a.Rev, protocol.SSEArtifactSnapshot, data))
	}
	// One data line, framed as Encode frames it, around the body itself.
	// Through Encode a large artifact (a long build log's output) was
	// copied three times (this payload, go-sse's string of it, and the
	// message), and framed in one piece once: each replaying follower of
	// a 64 MB output held two copies of it while writing it.
	//
	// A body smaller than a piece is copied into one write, as nearly
	// every one is: one write per artifact keeps a replay of many small
	// ones as cheap as it was.
	const head, tail = "event: " + protocol.SSEArtifactSnapshot + "\ndata: {\"artifact\":", "}\n\n"
	small := len(a.Body) < writePiece
	size := len(head) + 25
	if small {
		size += len(a.Body) + len(tail)
	}
	b := make([]byte, 0, size)
	if a.Rev > 0 { // as Encode, no id for 0
		b = append(strconv.AppendInt(append(b, "id: "...), a.Rev, 10), '\n')
	}
	b = append(b, head...)
	if small {
		return write(append(append(b, a.Body...), tail...))
	}
	if err := write(b); err != nil {
		return err
	}
	if err := write(a.Body); err != nil {
		return err
	}
	return write([]byte(tail))
}

// SessionStream sends the records as session_snapshot messages, then
// snapshot_complete, then the live changes.
func (s service) SessionStream(ctx context.Context, project string) (*Stream, error) {
	f, err := s.WatchSessions(ctx, project)
	if err != nil {
		return nil, err
	}
	initial := make([][]byte, 0, len(f.Sessions)+1)
	for _, rec := range f.Sessions {
		data, err := json.Marshal(protocol.SessionPayload{Session: rec})
		if err != nil {
			f.Live.Close()
			return nil, fmt.Errorf("session stream: encode %s: %w", rec.ID, err)
		}
		initial = append(initial, Encode(0, protocol.SSESessionSnapshot, data))
	}
	// Every connection's snapshot is every session (the stream has no
	// resume), so it says full, as a full artifact replay does: a client
	// drops what it holds that the snapshot did not send (a session
	// deleted while it was away).
	done, _ := json.Marshal(protocol.SnapshotComplete{Full: true})
	initial = append(initial, Encode(0, protocol.SSESnapshotComplete, done))
	return &Stream{Initial: initial, Sub: f.Live}, nil
}

// CommandStream registers the sandbox (closing an older connection) and
// replays the stored commands after Last-Event-ID, then streams new ones.
// Without Last-Event-ID it replays those not acknowledged (the domain's
// commands.go).
func (s service) CommandStream(ctx context.Context, id, instance string, created, after int64, resume bool) (*Stream, error) {
	f, err := s.OpenCommandStream(ctx, id, server.Sandbox{Instance: instance, Token: credential(ctx), Created: created}, after, resume)
	if err != nil {
		return nil, err
	}
	initial := make([][]byte, 0, len(f.Replay))
	for _, c := range f.Replay {
		initial = append(initial, Encode(c.ID, protocol.SSECommand, c.Body))
	}
	return &Stream{Initial: initial, Sub: f.Live, After: f.After, Release: f.Release, SessionCreated: f.Created}, nil
}

func (s service) CreateSession(ctx context.Context, id string, req protocol.CreateSessionRequest) (protocol.Session, string, error) {
	c, err := s.Server.CreateSessionWithPrompt(ctx, id, deref(req.Project), deref(req.Prompt))
	return c.Session, c.SandboxToken, err
}

// AppendEvents passes on the sandbox token the request came with, so the
// writer refuses it if the token was rotated while the request waited.
func (s service) AppendEvents(ctx context.Context, id, instance string, created int64, events []protocol.Event, raws [][]byte) (protocol.EventsAccepted, error) {
	return s.Ingest(ctx, id, server.Sandbox{Instance: instance, Token: credential(ctx), Created: created}, events, raws)
}

// credential is the sandbox token hash that authenticated the request, or
// nil (the client token, or authentication off).
func credential(ctx context.Context) *[32]byte {
	if h, ok := SandboxCredential(ctx); ok {
		return &h
	}
	return nil
}

func (s service) AddCommand(ctx context.Context, id, key string, cmd protocol.Command) (int64, bool, error) {
	sent, err := s.SendCommandOnce(ctx, id, key, cmd)
	return sent.ID, sent.Replayed, err
}

// ApprovalStream frames the domain's approvals feed: its initial records
// (missed changes or a snapshot, then snapshot_complete), then live ones.
func (s service) ApprovalStream(ctx context.Context, project string, after int64, resume bool) (*Stream, error) {
	f, err := s.WatchApprovals(ctx, project, after, resume)
	if err != nil {
		return nil, err
	}
	initial := make([][]byte, 0, len(f.Initial))
	for _, m := range f.Initial {
		initial = append(initial, Encode(m.Seq, m.Event, m.Data))
	}
	return &Stream{Initial: initial, Sub: f.Live, After: f.Rev}, nil
}

// AckCommands passes on the sandbox token the request came with.
func (s service) AckCommands(ctx context.Context, id, instance string, created, cursor int64) error {
	return s.Server.AckCommands(ctx, id, server.Sandbox{Instance: instance, Token: credential(ctx), Created: created}, cursor)
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
