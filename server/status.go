package server

import "github.com/rein-ai/rein/protocol"

// happening is something that can change a session's status.
type happening int

const (
	// created: the session was created.
	created happening = iota
	// streamOpened: a sandbox opened the command stream.
	streamOpened
	// activity: events or a heartbeat arrived from the sandbox.
	activity
	// streamClosed: the command stream holder went away.
	streamClosed
	// heartbeatMissed: no heartbeat or event for the heartbeat timeout
	// (at start of a server that owns its database, every live or idle
	// session has missed it: no sandbox is connected to a fresh process).
	heartbeatMissed
	// bootstrapExpired: the bootstrap timeout passed.
	bootstrapExpired
	// takenOver: a new sandbox instance (another Rein-Instance) opened the
	// command stream. Its predecessor is gone: the server has closed the
	// turn it left open as interrupted (see commands.go), and the new
	// instance holds the stream.
	takenOver
)

// facts is what nextStatus needs to know beyond the happening.
type facts struct {
	// implied is the status the reducer derived from the events of an
	// activity ("" when they imply none: turn_started -> live,
	// turn_completed -> idle, agent_exited -> idle, agent_started without
	// an open turn -> idle).
	implied protocol.SessionStatus
	// held says whether a sandbox holds the command stream now.
	held bool
	// stored says whether any event of the session is stored
	// (bootstrapExpired).
	stored bool
}

// nextStatus is every session status rule of PROTOCOL.md, in one place:
// the status after h happened to a session in status cur. remove means the
// session is to be removed.
func nextStatus(cur protocol.SessionStatus, h happening, f facts) (next protocol.SessionStatus, remove bool) {
	implied, held := f.implied, f.held
	switch h {
	case created:
		return protocol.StatusBootstrapping, false
	case streamOpened, takenOver:
		return protocol.StatusLive, false
	case activity:
		switch {
		case cur == protocol.StatusDisconnected && !held:
			// Late events of a sandbox that is gone do not bring the
			// session back: only a new command stream does.
			return cur, false
		case cur == protocol.StatusBootstrapping && !held:
			// Events of a sandbox still on its way (agentd posts its
			// agent_started while its command stream dials): "idle"
			// now would invite a prompt that no sandbox can take yet
			// (409 no_sandbox). Opening the stream makes it live, and
			// agentd posts agent_started again then.
			return cur, false
		case implied != "":
			// Events say what the agent is doing.
			return implied, false
		case cur == protocol.StatusDisconnected:
			// The stream is held but missed its heartbeat: live again as
			// soon as it shows activity.
			return protocol.StatusLive, false
		}
		return cur, false
	case streamClosed, heartbeatMissed:
		// An open turn stays open: a sandbox that missed its heartbeat
		// may be behind a partition and come back to finish it. The
		// status says nothing is behind the session now; the turn ends
		// when its sandbox comes back, or as interrupted when a new
		// instance takes over (takenOver) or agentd restarts from its
		// state dir.
		if cur == protocol.StatusLive || cur == protocol.StatusIdle {
			return protocol.StatusDisconnected, false
		}
		return cur, false
	case bootstrapExpired:
		switch {
		case cur != protocol.StatusBootstrapping:
			return cur, false
		case f.stored:
			// Its sandbox posted events but never opened the command
			// stream: what was accepted stays, and no sandbox is behind
			// the session.
			return protocol.StatusDisconnected, false
		}
		return cur, true
	}
	return cur, false
}
