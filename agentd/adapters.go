package agentd

import (
	"context"
	"io"
	"log/slog"
	"sort"

	"github.com/rein-ai/rein/agentd/internal/acp"
	"github.com/rein-ai/rein/agentd/internal/claude"
	"github.com/rein-ai/rein/agentd/internal/codex"
	"github.com/rein-ai/rein/agentd/internal/native"
	"github.com/rein-ai/rein/protocol"
)

// agentIO is what an adapter gets for one run of the agent process.
type agentIO struct {
	Stdin  io.WriteCloser
	Stdout io.Reader
	// Commands: prompt, abort, permission_response and shutdown.
	Commands <-chan protocol.Command
	// Emit queues an event; it blocks while the queue is full.
	Emit func(context.Context, protocol.Event) error
	// Name is the agent command's base name, Cwd its working directory.
	Name, Cwd string
	// Transcript, when set, receives the adapter's record of the run.
	Transcript io.Writer
	Logger     *slog.Logger
	// Resume is the agent's conversation id to resume ("" to start a new
	// conversation); Conversation reports the id of the conversation the
	// agent is in (the resumed one, or a new one when resuming failed), so
	// the next run resumes it.
	Resume       string
	Conversation func(id string)
}

// adapter speaks one agent protocol. serve runs until the agent's stdout
// ends (nil) or the adapter cannot go on (an error: the supervisor kills
// the agent and restarts it); it has waited for every goroutine it
// started when it returns.
type adapter interface {
	serve(ctx context.Context, io agentIO) error
}

// adapterFunc lets a function be an adapter.
type adapterFunc func(ctx context.Context, io agentIO) error

func (f adapterFunc) serve(ctx context.Context, io agentIO) error { return f(ctx, io) }

// protocolEntry registers one protocol.
type protocolEntry struct {
	// build makes the adapter from the options (which carry the
	// protocol-specific settings).
	build func(o *Options) adapter
	// handshake: the adapter reports agent_started only once a handshake
	// with the agent is done, which takes seconds with some CLIs. agentd
	// then reports the agent started as soon as its process runs, so the
	// session reads idle (prompts wait in the adapter) rather than live
	// meanwhile; the adapter's agent_started follows with the details.
	handshake bool
	// resumeArgs, when set, is how the agent's command line asks to
	// resume conversation id (the adapter's Resume says the same).
	resumeArgs func(argv []string, id string) []string
}

// adapters maps Options.Protocol to its entry. Adding a protocol is one
// entry here and one package under internal/.
var adapters = map[string]protocolEntry{
	ProtocolNative: {build: func(o *Options) adapter {
		wait := o.AgentStartWait
		return adapterFunc(func(ctx context.Context, a agentIO) error {
			return native.Serve(ctx, native.Options{
				Stdin: a.Stdin, Stdout: a.Stdout, Commands: a.Commands, Emit: a.Emit,
				Name: a.Name, Cwd: a.Cwd, StartWait: wait, Logger: a.Logger, Conversation: a.Conversation,
			})
		})
	}},
	ProtocolACP: {handshake: true, build: func(o *Options) adapter {
		mode := o.ACPMode
		return adapterFunc(func(ctx context.Context, a agentIO) error {
			return acp.Serve(ctx, acp.Options{
				Stdin: a.Stdin, Stdout: a.Stdout, Commands: a.Commands, Emit: a.Emit,
				Name: a.Name, Cwd: a.Cwd, Mode: mode, Transcript: a.Transcript, Logger: a.Logger,
				Resume: a.Resume, Conversation: a.Conversation,
			})
		})
	}},
	ProtocolCodex: {handshake: true, build: func(*Options) adapter {
		return adapterFunc(func(ctx context.Context, a agentIO) error {
			return codex.Serve(ctx, codex.Options{
				Stdin: a.Stdin, Stdout: a.Stdout, Commands: a.Commands, Emit: a.Emit,
				Cwd: a.Cwd, Transcript: a.Transcript, Logger: a.Logger,
				Resume: a.Resume, Conversation: a.Conversation,
			})
		})
	}},
	ProtocolClaude: {build: func(*Options) adapter {
		return adapterFunc(func(ctx context.Context, a agentIO) error {
			return claude.Serve(ctx, claude.Options{
				Stdin: a.Stdin, Stdout: a.Stdout, Commands: a.Commands, Emit: a.Emit,
				Cwd: a.Cwd, Transcript: a.Transcript, Logger: a.Logger, Conversation: a.Conversation,
			})
		})
	}, resumeArgs: claude.ResumeArgs},
}

// protocolNames lists the registered protocols, for usage errors.
func protocolNames() []string {
	names := make([]string, 0, len(adapters))
	for n := range adapters {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
