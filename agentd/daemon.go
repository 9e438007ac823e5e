package agentd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rein-ai/rein/agentd/internal/apierror"
	"github.com/rein-ai/rein/agentd/internal/claude"
	"github.com/rein-ai/rein/agentd/internal/commandstream"
	"github.com/rein-ai/rein/agentd/internal/metrics"
	"github.com/rein-ai/rein/agentd/internal/outbox"
	"github.com/rein-ai/rein/agentd/internal/process"
	"github.com/rein-ai/rein/agentd/internal/uploader"
	"github.com/rein-ai/rein/protocol"
)

// Run is the daemon. It returns nil after a clean shutdown (ctx cancelled,
// typically by SIGTERM/SIGINT): the agent was sent shutdown, given
// ShutdownGrace, signalled if needed, and every queued event was posted.
// It returns an error wrapping ErrUsage for bad Options, and an error
// carrying the wire code (protocol.CodeOf) when the server refuses the
// sandbox for good: not_found (the session was deleted), conflict (it was
// deleted and created again: apierror.IsReplaced), unauthorized or
// forbidden (the token), superseded (another agentd took over). Run
// returns only when every goroutine it started has returned.
func Run(ctx context.Context, opts Options) error {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return err
	}
	if _, err := exec.LookPath(opts.Command[0]); err != nil {
		return fmt.Errorf("%w: agent command: %w", ErrUsage, err)
	}
	if opts.Protocol == ProtocolClaude {
		// Claude Code speaks stream-json only with these flags.
		opts.Command = claude.Args(opts.Command)
	}
	log := opts.Logger.With("session", opts.Session)
	var created sessionCreated
	ob, err := openOutbox(opts, log)
	if err != nil {
		return err
	}
	if ob != nil {
		// First, with the state dir as the agentd that died left it: the
		// server may be unreachable for a while, and checkSession may
		// start the state dir afresh under another instance id.
		sweepAgent(ob.Instance(), log)
		if ob, err = checkSession(ctx, opts, ob, log); err != nil {
			if ctx.Err() != nil {
				// Stopped while the server was unreachable: nothing ran,
				// and the state dir is kept as it was.
				log.Info("agentd stopped before the server could be reached")
				return nil
			}
			return describe(opts.Session, err)
		}
	}
	if ob != nil {
		defer ob.Close()
		if at, ok := ob.Session(); ok {
			created.set(at)
		}
	}
	var instance string
	if ob != nil {
		instance = ob.Instance()
	} else {
		var err error
		if instance, err = newInstanceID(); err != nil {
			return err
		}
	}
	log.Info("agentd starting", "server", redactURL(opts.Server), "instance", instance, "protocol", opts.Protocol, "agent", opts.Command[0])

	cmds := newCommandLog(ob, log)
	var up *uploader.Uploader
	met := newMetrics(func() *uploader.Uploader { return up }, ob)
	up = uploader.New(uploader.Options{
		Server: opts.Server, Session: opts.Session, Token: opts.Token, Instance: instance,
		Client: opts.HTTPClient, BatchMax: opts.BatchMax, BatchWait: opts.BatchWait,
		QueueSize: opts.QueueSize, HeartbeatInterval: opts.HeartbeatInterval, Outbox: ob, Logger: log,
		OnPost: met.Posted,
		Cursor: cmds.acked,
		// Known from the state dir, or from the first command stream
		// answer: before that a fresh state dir holds only what this
		// agentd's agent wrote for the session holding the id now.
		SessionCreated: created.get,
	})
	if opts.MetricsAddr != "" {
		ml, err := metrics.Listen(opts.MetricsAddr, met, log)
		if err != nil {
			return fmt.Errorf("%w: --metrics-addr: %w", ErrUsage, err)
		}
		defer ml.Close()
	}
	// The uploader outlives ctx: after a shutdown signal it still has to
	// post the agent's last events.
	upCtx, upCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer upCancel()
	// From the shutdown signal on, an event the state dir's disk refuses
	// no longer waits for it, wherever it was sent from: closing a turn
	// left open at start, agent_exited between two runs, or a running
	// agent's output (the supervisor's stop also gives up for the
	// stops that are not signals).
	defer context.AfterFunc(ctx, up.StopWaiting)()
	upDone := make(chan error, 1)
	go func() { upDone <- up.Run(upCtx) }()

	after, resume := cmds.resume()
	commands := make(chan protocol.Command, 64)
	connected := make(chan struct{}, 1)
	stream := commandstream.New(commandstream.Options{
		Resume: resume, After: after,
		Server: opts.Server, Session: opts.Session, Token: opts.Token, Instance: instance,
		Client: opts.HTTPClient, IdleTimeout: opts.StreamIdleTimeout, Logger: log,
		SessionCreated: created.get,
		OnSession:      func(createdAt int64) error { return recordSession(&created, ob, createdAt, log) },
		OnConnect: func() {
			met.Connected()
			select {
			case connected <- struct{}{}:
			default: // one pending re-post is enough
			}
		},
		OnCommand: func(ctx context.Context, c protocol.Command) error {
			select {
			case commands <- c:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	})
	streamCtx, streamCancel := context.WithCancel(ctx)
	defer streamCancel()
	streamDone := make(chan error, 1)
	go func() { streamDone <- stream.Run(streamCtx) }()

	// runCtx bounds the agent's event emission: it ends only when events
	// can no longer go anywhere (the uploader stopped).
	runCtx, runCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer runCancel()
	ownCtx, ownCancel := context.WithCancel(runCtx)
	defer ownCancel()
	defer context.AfterFunc(ctx, ownCancel)()
	s := &supervisor{
		opts: opts, log: log, up: up,
		commands: commands, connected: connected,
		streamDone: streamDone, upDone: upDone,
		runCtx: runCtx, runCancel: runCancel, ownCtx: ownCtx,
		turnEnded: make(chan string, 1),
		outbox:    ob != nil,
		cmds:      cmds,
		perms:     newPermissionLog(instance),
		instance:  instance,
		conv:      newConversation(ob, opts.Protocol, log),
	}
	if ob != nil {
		if id, open := ob.OpenTurn(); open {
			// The agent that ran it is gone with the agentd before this one.
			log.Warn("closing the turn a previous agentd left open as interrupted", "turn", id)
			s.emit(protocol.Event{Type: protocol.EventTurnCompleted, TurnID: id, StopReason: protocol.StopInterrupted,
				Error: "agentd or its agent stopped while this turn was running"})
		}
		if ob.AgentRunning() {
			// Its exit, which that agentd never told, after the turn's
			// end as ended tells it. The turn's end closes only what is
			// in the turn; a permission request the agent asked outside
			// one would wait for good: this agentd is the same instance,
			// so the server sees no takeover, and the answer could only
			// be told as not applied. agent_exited closes everything the
			// agent left open, as it does when an agent exits.
			log.Warn("posting the exit of the agent a previous agentd ran: it is gone with that agentd")
			s.emit(protocol.Event{Type: protocol.EventAgentExited,
				Error: "agentd stopped while this agent ran (agentd was killed, or its machine or container stopped): the agent is gone, and what it left open ends with it"})
		}
	}
	fatal := s.run(ctx)

	streamCancel()
	streamErr := s.streamResult()
	upErr := s.flush(upCancel)
	if fatal == nil && streamErr != nil {
		fatal = streamErr
	}
	if fatal == nil && upErr != nil {
		fatal = upErr
	}
	if fatal != nil {
		return describe(opts.Session, fatal)
	}
	log.Info("agentd stopped", "posted", up.Stats().Accepted)
	return nil
}

// flush closes the uploader and waits up to FlushTimeout for it to post
// what is queued.
func (s *supervisor) flush(upCancel context.CancelFunc) error {
	if s.upResult != nil {
		return *s.upResult
	}
	s.up.Close()
	wait := s.opts.FlushTimeout
	if s.flushSpent {
		// The uploader has tried for FlushTimeout while the agent's
		// last events waited (watch): whatever is done is done.
		wait = 0
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case err := <-s.upDone:
		return err
	default:
	}
	select {
	case err := <-s.upDone:
		return err
	case <-t.C:
		left := s.up.Len()
		upCancel()
		<-s.upDone
		if s.outbox {
			s.log.Warn("events not delivered at shutdown; kept in the outbox for the next start", "events", left, "within", s.opts.FlushTimeout)
			return nil
		}
		return fmt.Errorf("flush events: %d events not delivered within %s", left, s.opts.FlushTimeout)
	}
}

// streamResult waits for the command stream's Run (already cancelled).
func (s *supervisor) streamResult() error {
	if s.streamRes != nil {
		return *s.streamRes
	}
	return <-s.streamDone
}

// describe words a final server answer for an operator.
func describe(session string, err error) error {
	if apierror.IsReplaced(err) {
		return fmt.Errorf("session %s was deleted and created again on the server while agentd ran: agentd's state belongs to the old session (a restarted agentd discards it and serves the new one afresh): %w", session, err)
	}
	switch protocol.CodeOf(err) {
	case protocol.CodeNotFound:
		return fmt.Errorf("session %s was deleted on the server (or never existed): %w", session, err)
	case protocol.CodeUnauthorized:
		// Also what a sandbox whose token was rotated gets on reconnect.
		return fmt.Errorf("the server refused the token for session %s (not valid: missing, rotated, or its session was deleted; check --token/--token-file): %w", session, err)
	case protocol.CodeForbidden:
		return fmt.Errorf("the server refused the token for session %s (not this session's sandbox token; check --token/--token-file and --session): %w", session, err)
	case protocol.CodeSuperseded:
		return fmt.Errorf("another agentd took over session %s: %w", session, err)
	}
	return err
}

// openOutbox opens the session's state directory, or returns nil (events
// then wait in memory, as without a state dir) after a warning saying what
// is not kept. A state dir whose files cannot be read (an I/O error) is
// an error: running without it would leave the events it holds unposted
// for good (the server takes this agentd for a new instance, and refuses
// the old one's posts), and a restart on a disk that reads again posts
// them.
func openOutbox(opts Options, log *slog.Logger) (*outbox.Log, error) {
	const lost = "events wait in memory only and are lost if agentd dies; a restarted agentd is a new instance and does not get back commands its agent had not taken"
	if opts.StateDir == "" {
		log.Warn("no state dir: "+lost, "fix", "give --state-dir (REIN_STATE_DIR) a writable directory, a volume in a container")
		return nil, nil
	}
	dir := filepath.Join(opts.StateDir, opts.Session)
	removeDiscarded(dir, log)
	ob, err := outbox.Open(outbox.Options{Dir: dir, MaxBytes: opts.OutboxMaxBytes, Logger: log})
	if errors.Is(err, outbox.ErrUnreadable) {
		return nil, fmt.Errorf("state dir %s: %w", dir, err)
	}
	if err != nil && !errors.Is(err, syscall.EWOULDBLOCK) {
		// A state dir that holds logged events but cannot be opened (its
		// disk turned read-only after an error, its files lost their
		// permissions): in memory, this agentd would be a new instance,
		// the server would refuse the old one's posts from then on, and
		// those events would never reach the transcript, though the
		// README promises the next agentd posts them. Stopping keeps
		// them for an agentd started once the disk is repaired.
		if segs := loggedSegments(dir); len(segs) > 0 {
			return nil, fmt.Errorf("state dir %s holds logged events not known to be posted (%s) but cannot be opened: %w; agentd stops rather than run without it (it could never post them then): repair the disk or its permissions and start agentd again", dir, strings.Join(segs, ", "), err)
		}
	}
	if err != nil {
		log.Warn("state dir not usable: "+lost, "dir", dir, "err", err)
		return nil, nil
	}
	log.Info("outbox open", "dir", dir, "unacknowledged", ob.Pending())
	return ob, nil
}

// loggedSegments names the outbox segments in dir that hold anything
// (Open removes those whose events were all acknowledged).
func loggedSegments(dir string) []string {
	names, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	var out []string
	for _, n := range names {
		if st, err := os.Stat(n); err == nil && st.Size() > 0 {
			out = append(out, filepath.Base(n))
		}
	}
	return out
}

// checkSession makes sure the state in ob was saved for the session the
// server holds under this id now, not for one deleted since and created
// again with the same id: applying its cursor would skip the new
// session's commands, and its outbox and open turn would post the old
// session's events into the new transcript. A state dir that names no
// session (fresh, or saved by an agentd from before the session was
// recorded) is kept; its session is recorded at the first connection. A
// state dir saved for another session is removed and opened afresh: a new
// instance, no cursor, no events, no conversation. It returns the log to
// use (nil: none, events in memory) or the server's final answer.
func checkSession(ctx context.Context, opts Options, ob *outbox.Log, log *slog.Logger) (*outbox.Log, error) {
	saved, ok := ob.Session()
	if !ok {
		return ob, nil
	}
	// Naming the saved session: a server where it was deleted and created
	// again refuses (replaced) rather than hand the stream of the new
	// session, held by its own sandbox maybe, to this agentd's instance.
	probe := commandstream.New(commandstream.Options{
		Server: opts.Server, Session: opts.Session, Token: opts.Token, Instance: ob.Instance(),
		Client: opts.HTTPClient, IdleTimeout: opts.StreamIdleTimeout, Logger: log,
		SessionCreated: func() (int64, bool) { return saved, true },
	})
	createdAt, known, err := probe.Probe(ctx)
	replaced := apierror.IsReplaced(err)
	if err != nil && !replaced {
		ob.Close()
		return nil, err
	}
	if !replaced && (!known || createdAt == saved) {
		return ob, nil
	}
	dir := ob.Dir()
	log.Warn("the state dir was saved for an earlier session with this id (deleted and created again): discarding it and starting afresh",
		"dir", dir, "savedFor", saved, "sessionCreatedAt", createdAt, "discardedEvents", ob.Pending())
	ob.Close()
	if err := discard(dir); err != nil {
		log.Warn("state dir of the earlier session not removed: events wait in memory only", "dir", dir, "err", err)
		return nil, nil
	}
	if ob, err = openOutbox(opts, log); err != nil {
		return nil, err
	}
	if ob != nil && !replaced {
		// A refusal does not say which session holds the id: the first
		// connection records it.
		if err := ob.SetSession(createdAt); err != nil {
			log.Warn("session of the state dir not recorded", "err", err)
		}
	}
	return ob, nil
}

// discardedSuffix ends the name a discarded state dir is renamed to
// before it is removed; "~" is in no session id, so it names no state dir.
const discardedSuffix = "~discarded-"

// discard removes the state dir dir of an earlier session. Removed file
// by file, a removal cut short (agentd killed, a power loss, a disk's
// error) would leave part of it for the next agentd, and a part without
// the file naming its session, or without its instance, is taken for a
// state to apply: the earlier session's cursor, or its outbox posted into
// the new session's transcript as a new instance's. So the dir is first
// renamed away at once, durably; openOutbox then removes it
// (removeDiscarded), and a removal cut short leaves only the renamed
// dir, which no agentd reads and the next start removes.
func discard(dir string) error {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("discard state dir: %w", err)
	}
	gone := dir + discardedSuffix + hex.EncodeToString(b[:])
	if err := os.Rename(dir, gone); err != nil {
		return fmt.Errorf("discard state dir: %w", err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("discard state dir: %w", err)
	}
	return nil
}

// removeDiscarded removes dir's earlier states that discard renamed away;
// one it cannot remove is left for the next start.
func removeDiscarded(dir string, log *slog.Logger) {
	names, _ := filepath.Glob(dir + discardedSuffix + "*")
	for _, n := range names {
		if err := os.RemoveAll(n); err != nil {
			log.Warn("discarded state dir not removed; the next start tries again", "dir", n, "err", err)
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// sessionCreated is the createdAt of the session agentd serves, 0 until
// known: from the state dir, else from the first command stream answer
// that carries it. Every request names it (protocol.HeaderSessionCreated),
// so once the session is deleted and created again the server refuses
// them, before it takes a cursor or an event, even when this agentd was
// cut off while it happened and its uploader reaches the server before
// its command stream does. Safe for concurrent use.
type sessionCreated struct{ at atomic.Int64 }

func (c *sessionCreated) get() (int64, bool) {
	at := c.at.Load()
	return at, at != 0
}

func (c *sessionCreated) set(at int64) { c.at.Store(at) }

// recordSession takes the session's createdAt from a command stream
// answer: at the first connection it becomes the session agentd serves,
// recorded in the state dir; on a later one, another createdAt means the
// session was deleted and created again while agentd ran (a server that
// does not check the request's header), which ends agentd as the
// server's refusal does (exit 3): its state is the old session's, and a
// restarted agentd starts afresh (checkSession).
func recordSession(created *sessionCreated, ob *outbox.Log, createdAt int64, log *slog.Logger) error {
	if saved, ok := created.get(); ok && saved != createdAt {
		return protocol.Errorf(protocol.CodeNotFound, "the session was deleted and created again (createdAt %d; agentd's state belongs to the one created at %d)", createdAt, saved)
	}
	created.set(createdAt)
	if ob == nil {
		return nil
	}
	if err := ob.SetSession(createdAt); err != nil {
		// Without it a later start cannot tell a new session of the same
		// id from this one; everything else still works.
		log.Warn("session of the state dir not recorded", "err", err)
	}
	return nil
}

// agentMarkerName names the environment entry that marks every process
// an agent of this agentd instance started (agentMarker).
const agentMarkerName = "REIN_AGENTD_INSTANCE"

// agentMarker is the entry agentEnv gives the agent, and every process
// below it inherits: the instance id is the state dir's, so an agentd
// that starts on the state dir of one that died finds what that one's
// agent left running by it (sweepAgent). Only one agentd at a time holds
// a state dir, and it sweeps before it starts any agent, so whatever
// carries its own marker then is a leftover.
func agentMarker(instance string) string { return agentMarkerName + "=" + instance }

// sweepAgent kills what the agent of a previous agentd on this state dir
// left running: the kernel kills that agent with its agentd
// (process.Start), but not the tools it started, which run on adopted by
// init, editing the workspace while the transcript says the agent is
// gone and the next agent starts. A failure is logged, not fatal: the
// sweep only finds processes, and an agentd that cannot read /proc still
// runs its agent.
func sweepAgent(instance string, log *slog.Logger) {
	n, err := process.KillMarked(agentMarker(instance), 10*time.Second)
	if n > 0 {
		log.Warn("killed what the agent of a previous agentd on this state dir left running", "processes", n)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// No /proc (not Linux): nothing can be found, and the start's
		// warning about orphans already says they outlive the agent.
		log.Debug("no /proc: what a previous agentd's agent left running cannot be found", "err", err)
	case err != nil:
		log.Warn("could not kill what the agent of a previous agentd left running", "err", err)
	}
}

func newInstanceID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	return "agentd-" + hex.EncodeToString(b[:]), nil
}

// agentEnv is the agent's environment: the base (agentd's own by default)
// without Rein's credentials, plus REIN_SESSION_ID, REIN_AGENTD_INSTANCE
// (agentMarker: what the next agentd on the state dir finds the agent's
// leftovers by) and, for a native agent resuming its conversation,
// REIN_CONVERSATION_ID.
//
// The credentials are agentd's sandbox token and those of the rein CLI and
// rein-server, which a shell that starts agentd often exports too (make
// demo, the README's steps): the agent runs what a prompt or its model
// says, and with the client token it could answer its own permission
// requests, with the stream ticket key read every session.
func agentEnv(base []string, session, protocol, resume, instance string) []string {
	if base == nil {
		base = os.Environ()
	}
	env := make([]string, 0, len(base)+1)
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "REIN_TOKEN", "REIN_TOKEN_FILE", "REIN_API_TOKEN", "REIN_API_TOKEN_FILE", "REIN_STREAM_TICKET_KEY_FILE",
			"REIN_SESSION_ID", "REIN_CONVERSATION_ID", agentMarkerName:
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "REIN_SESSION_ID="+session, agentMarker(instance))
	if protocol == ProtocolNative && resume != "" {
		env = append(env, "REIN_CONVERSATION_ID="+resume)
	}
	return env
}
