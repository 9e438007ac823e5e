package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/hub"
)

// Server is the Rein domain service: sessions, commands, events folded
// into artifacts, and the change records their streams carry. It knows no
// adapter: the store is given to it, and package app puts HTTP in front.
type Server struct {
	opts  Options
	log   *slog.Logger
	store Store
	hub   *hub.Hub
	w     *writer
	index *tokenIndex

	// replaySlots bounds the replay pages read at once (Options.ReplaySlots).
	replaySlots chan struct{}
	// bodies lets replays of one big artifact share its body (shared.go).
	bodies sharedBodies

	closeOnce sync.Once
	// stopWatch ends the watch of other replicas' commits (shared store
	// only); watchDone is closed when it has returned.
	stopWatch context.CancelFunc
	watchDone chan struct{}
}

// New loads the sessions from opts.Store, applies the restart rules and
// starts the writer. Close stops what New started; the store stays the
// caller's to close, after Close.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("new server: Options.Store is required")
	}
	opts = opts.withDefaults()
	s := &Server{opts: opts, log: opts.Logger, store: opts.Store, hub: hub.New(0, 0), index: newTokenIndex(),
		replaySlots: make(chan struct{}, opts.ReplaySlots)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.w = newWriter(s.store, s.hub, s.log, opts, s.index)
	if opts.Observer != nil {
		s.w.obs = opts.Observer
	}
	if err := s.w.load(ctx); err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	s.w.startup()
	// After startup, which settled what a crash left lagging: the inbox
	// is read from the stored artifacts.
	if err := s.w.loadApprovals(ctx); err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	go s.w.run()
	if s.w.shared != nil {
		wctx, stop := context.WithCancel(context.Background())
		s.stopWatch, s.watchDone = stop, make(chan struct{})
		go func() {
			defer close(s.watchDone)
			s.w.watch(wctx)
		}()
	}
	return s, nil
}

// Store returns the store the server uses.
func (s *Server) Store() Store { return s.store }

// EndStreams ends every subscription, now and later: streams never end by
// themselves, so a shutdown ends them before it waits for their handlers.
// Writes still work until Close.
func (s *Server) EndStreams() { s.hub.Close() }

// Close ends every stream and stops the writer once it has committed what
// was already queued. It returns once the writer has returned; requests
// after it get unavailable. It does not close the store.
func (s *Server) Close() error { return s.Shutdown(context.Background()) }

// Shutdown is Close that waits on the store only until ctx ends: the
// writer's store calls are then cancelled, and what was still queued is
// answered unavailable instead of committed (a database that hangs would
// otherwise hold it for commitTimeout per request queued). Nothing
// answered is lost: a request cut short so gets 503, which its client
// retries. Close and Shutdown stop the server once; a later call returns
// at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() {
		if s.stopWatch != nil {
			s.stopWatch()
			<-s.watchDone
		}
		s.hub.Close()
		s.w.shutdown(ctx)
	})
	return nil
}

// CreatedSession is a new session's record and its sandbox token, which
// the server does not keep (only its hash): this is the one time it is
// known.
type CreatedSession = protocol.CreatedSession

// CreateSession creates a bootstrapping session with a new sandbox token;
// project "" means none.
func (s *Server) CreateSession(ctx context.Context, id, project string) (CreatedSession, error) {
	return s.createSession(ctx, id, project, "")
}

func (s *Server) createSession(ctx context.Context, id, project, prompt string) (CreatedSession, error) {
	if err := protocol.ValidateSessionID(id); err != nil {
		return CreatedSession{}, err
	}
	var p *string
	if project != "" {
		if err := protocol.ValidateProject(project); err != nil {
			return CreatedSession{}, err
		}
		p = &project
	}
	var pr *string
	if prompt != "" {
		// The same bound as a prompt command's text: command 1 must
		// encode within protocol.MaxCommandBytes, all a sandbox reads of
		// one command, or it could never take it (nor any after it).
		if len(prompt) > protocol.MaxTextLen {
			return CreatedSession{}, protocol.Errorf(protocol.CodeInvalid, "prompt: is %d bytes; at most %d are allowed", len(prompt), protocol.MaxTextLen)
		}
		pr = &prompt
	}
	tok, h := newSandboxToken()
	r := newReply[protocol.Session]()
	rec, err := call(ctx, s.w, &createReq{id: id, project: p, prompt: pr, sandbox: h, reply: r}, r)
	if err != nil {
		return CreatedSession{}, fmt.Errorf("create session %s: %w", id, err)
	}
	return CreatedSession{Session: rec, SandboxToken: tok}, nil
}

// GetSession returns a session record.
func (s *Server) GetSession(ctx context.Context, id string) (protocol.Session, error) {
	rec, err := s.store.Session(ctx, id)
	if err != nil {
		return protocol.Session{}, readFailed("get session "+id, err)
	}
	return s.withPending(rec), nil
}

// ListSessions lists sessions oldest first; project "" means all.
func (s *Server) ListSessions(ctx context.Context, project string) ([]protocol.Session, error) {
	if project != "" && protocol.ValidateProject(project) != nil {
		// No session has it (a create validates its project), and the
		// store is not asked: PostgreSQL refuses some such strings as
		// text (a NUL, bytes that are not UTF-8), and its refusal would
		// answer a client's typo 503, which the client retries.
		return []protocol.Session{}, nil
	}
	list, err := s.store.Sessions(ctx, project)
	if err != nil {
		return nil, readFailed("list sessions", err)
	}
	for i := range list {
		list[i] = s.withPending(list[i])
	}
	return list, nil
}

// DeleteSession removes a session and everything it owns, and ends its
// streams.
func (s *Server) DeleteSession(ctx context.Context, id string) error {
	r := newReply[struct{}]()
	if _, err := call(ctx, s.w, &deleteReq{id: id, reply: r}, r); err != nil {
		return fmt.Errorf("delete session %s: %w", id, err)
	}
	return nil
}

// SendCommand stores a command for the session's sandbox and delivers it on
// the command stream; it returns the command's id.
func (s *Server) SendCommand(ctx context.Context, id string, cmd protocol.Command) (int64, error) {
	sent, err := s.SendCommandOnce(ctx, id, "", cmd)
	return sent.ID, err
}

// SentCommand is what SendCommandOnce did with a command.
type SentCommand struct {
	ID int64
	// Replayed: the key named a command the session already had, the
	// same as this one; ID is that command's and nothing was stored.
	Replayed bool
}

// SendCommandOnce is SendCommand with the client's Idempotency-Key (see
// protocol.HeaderIdempotencyKey; "" for none): a command sent again with
// its key is stored once. The same key with a different command is
// CodeConflict.
func (s *Server) SendCommandOnce(ctx context.Context, id, key string, cmd protocol.Command) (SentCommand, error) {
	if key != "" {
		if err := protocol.ValidateIdempotencyKey(key); err != nil {
			return SentCommand{}, fmt.Errorf("send command session=%s: %w", id, err)
		}
	}
	r := newReply[SentCommand]()
	sent, err := call(ctx, s.w, &commandReq{id: id, cmd: cmd, key: key, reply: r}, r)
	if err != nil {
		return SentCommand{}, fmt.Errorf("send command session=%s: %w", id, err)
	}
	return sent, nil
}

// AppendEvents stores validated events (see protocol.DecodeEvents) from the
// sandbox instance (its Rein-Instance, "" when unknown), folds them into
// artifacts and publishes the changes.
func (s *Server) AppendEvents(ctx context.Context, id, instance string, events []protocol.Event) (protocol.EventsAccepted, error) {
	return s.Ingest(ctx, id, Sandbox{Instance: instance}, events, nil)
}

// Sandbox is who a sandbox request came from, as the adapter authenticated
// it.
type Sandbox struct {
	// Instance is the sandbox's Rein-Instance ("" when unknown).
	Instance string
	// Token is the SHA-256 of the sandbox token the request carried; nil
	// when it came with the client token or authentication is off. The
	// writer checks it again when it applies the request, so a request
	// that waited while the token was rotated is refused.
	Token *[32]byte
	// Created is the createdAt of the session the sandbox's state belongs
	// to (protocol.HeaderSessionCreated); 0 when it named none. A request
	// naming another createdAt than the session's comes from a sandbox
	// of a session deleted since and created again with the same id: the
	// writer refuses it before it changes anything (see sameSession).
	Created int64
}

// Ingest is AppendEvents for the sandbox route: raws[i], when not nil, is
// events[i] as it came (see protocol.DecodeEventsRaw), stored as it is.
func (s *Server) Ingest(ctx context.Context, id string, from Sandbox, events []protocol.Event, raws [][]byte) (protocol.EventsAccepted, error) {
	r := newReply[protocol.EventsAccepted]()
	res, err := call(ctx, s.w, &eventsReq{id: id, from: from, events: events, raws: raws, reply: r}, r)
	if err != nil {
		return protocol.EventsAccepted{}, fmt.Errorf("append events session=%s: %w", id, err)
	}
	return res, nil
}

// SandboxSession returns the session whose sandbox token has this SHA-256
// hash, from memory: the adapter checks every sandbox request with it.
// claimed is the session the request names: on a database shared with
// other replicas, a token this replica does not know yet (its session was
// created elsewhere a moment ago) is checked against that session's row
// before it is refused, since agentd takes a 401 as final. For the same
// reason a read of that row the database fails is an error (503), not a
// refusal: a database that hiccups must not end the sandbox's agentd.
func (s *Server) SandboxSession(ctx context.Context, hash [32]byte, claimed string) (string, bool, error) {
	if id, ok := s.index.session(hash); ok || s.w.shared == nil || claimed == "" {
		return id, ok, nil
	}
	_, h, err := s.w.shared.LoadSession(ctx, claimed)
	if protocol.CodeOf(err) == protocol.CodeNotFound {
		return "", false, nil
	}
	if err != nil {
		return "", false, readFailed("check sandbox token session="+claimed, err)
	}
	if h == nil || *h != hash {
		return "", false, nil
	}
	return claimed, true, nil
}

// Artifacts returns the session's artifacts as stored, ordered by seq.
func (s *Server) Artifacts(ctx context.Context, id string) ([]json.RawMessage, error) {
	f, err := s.settle(ctx, id)
	if err != nil {
		return nil, err
	}
	var list []StoredArtifact
	if f != nil {
		list, _ = f.seqPage(0, -1, 0)
	} else if list, err = s.store.Artifacts(ctx, id); err != nil {
		return nil, readFailed("artifacts session="+id, err)
	}
	out := make([]json.RawMessage, len(list))
	for i, a := range list {
		out[i] = a.Body
	}
	return out, nil
}

// Health reports whether the server can do its work: the writer runs, the
// last write succeeded (a full disk fails writes while reads still work)
// and the store answers a read. An error has code unavailable and says why.
func (s *Server) Health(ctx context.Context) error {
	select {
	case <-s.w.done:
		return unavailable("health", errors.New("writer stopped"))
	default:
	}
	if f := s.w.failing.Load(); f != nil {
		return protocol.Errorf(protocol.CodeUnavailable, "writes are failing since %s: %s", f.since.UTC().Format(time.RFC3339), rootCause(f.err))
	}
	if err := s.store.Ping(ctx); err != nil {
		return protocol.Errorf(protocol.CodeUnavailable, "storage does not answer reads: %s", rootCause(err))
	}
	return nil
}

// rootCause is the innermost error's text ("database or disk is full"):
// what an operator needs, without the operations wrapped around it.
func rootCause(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}
