// Command agentd is the Rein sandbox daemon. It connects a local agent
// process to a Rein server session:
//
//	agentd --server URL --session ID [--token T] [--protocol native|acp|claude|codex] -- CMD [ARGS...]
//
// Every flag also reads a REIN_* environment variable; see README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/rein-ai/rein/agentd"
	"github.com/rein-ai/rein/agentd/internal/apierror"
	"github.com/rein-ai/rein/agentd/internal/process"
	"github.com/rein-ai/rein/protocol"
)

// version is set by the build: go build -ldflags "-X main.version=v1.2.3"
// (the Makefile passes `git describe`); see versionString.
var version = "dev"

// Exit codes, documented in README.md.
const (
	exitOK         = 0
	exitError      = 1 // anything else: events lost at shutdown, internal errors
	exitUsage      = 2 // bad flags, missing server/session/command
	exitNotFound   = 3 // the session does not exist (deleted, or deleted and created again)
	exitAuth       = 4 // 401/403: the token was refused
	exitSuperseded = 5 // another agentd took over the session
)

func main() {
	killer := new(agentd.Killer)
	ctx, stop := signalContext(killer)
	err := newApp(killer).RunContext(ctx, os.Args)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentd:", err)
		os.Exit(exitCode(err))
	}
}

// signalContext is cancelled by the first SIGINT or SIGTERM, which starts
// the graceful shutdown: the agent gets --shutdown-grace and the kill
// steps, then the queued events --flush-timeout. A second one ends agentd
// at once: killer kills the agent's process group (and what the agent
// started outside it) with SIGKILL, and agentd exits 128+the signal's
// number, as a shell reports a process the signal ended. It is caught
// rather than left to its default action, which would orphan the agent
// (its own process group is not signalled with agentd) and which the
// kernel does not take for PID 1 (agentd in a container). Nothing in the
// outbox is lost: it is on disk, and the next agentd posts it. stop
// stops catching and waits for the watcher.
func signalContext(killer *agentd.Killer) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-sigs:
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-sigs:
			n := sig.(syscall.Signal)
			fmt.Fprintf(os.Stderr, "agentd: a second %s during the shutdown: killing the agent and stopping at once; events not yet posted stay in the outbox (with a state dir) for the next agentd\n", process.SignalName(n))
			if err := killer.Kill(); err != nil {
				fmt.Fprintln(os.Stderr, "agentd:", err)
			}
			os.Exit(128 + int(n))
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		<-watched
		cancel()
	}
}

func exitCode(err error) int {
	if errors.Is(err, agentd.ErrUsage) {
		return exitUsage
	}
	if apierror.IsReplaced(err) {
		// The session agentd's state belongs to was deleted and created
		// again: gone, as for a 404.
		return exitNotFound
	}
	var pe *protocol.Error
	if errors.As(err, &pe) {
		switch pe.Code {
		case protocol.CodeNotFound:
			return exitNotFound
		case protocol.CodeUnauthorized, protocol.CodeForbidden:
			return exitAuth
		case protocol.CodeSuperseded:
			return exitSuperseded
		}
	}
	return exitError
}

// newApp is agentd's command line; killer (nil: none) is handed to Run
// (agentd.Options.Killer).
func newApp(killer *agentd.Killer) *cli.App {
	return &cli.App{
		Name:      "agentd",
		Usage:     "connect a local agent to a Rein session",
		UsageText: "agentd --server URL --session ID [--token T | --token-file F] [--protocol native|acp|claude|codex] [flags] -- CMD [ARGS...]",
		Version:   versionString(),
		// Errors are printed and mapped to exit codes in main, with
		// deferred cleanup already done.
		ExitErrHandler: func(*cli.Context, error) {},
		// A flag or REIN_* value urfave/cli cannot parse, or an unknown
		// flag, is a usage error (exit 2) like the values run refuses;
		// without this it came back as a plain error, exit 1.
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return fmt.Errorf("%w: %w (agentd --help lists the flags)", agentd.ErrUsage, err)
		},
		// No help command: agentd has no subcommands, and with one an agent
		// command named help or h (`agentd … -- help`) printed agentd's
		// help instead of running.
		HideHelpCommand: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "server", Usage: "Rein server base URL", EnvVars: []string{"REIN_SERVER"}},
			&cli.StringFlag{Name: "session", Usage: "session id", EnvVars: []string{"REIN_SESSION_ID"}},
			&cli.StringFlag{Name: "token", Usage: "bearer token (trimmed; prefer --token-file; never logged)", EnvVars: []string{"REIN_TOKEN"}},
			&cli.StringFlag{Name: "token-file", Usage: "file holding the bearer token (trimmed)", EnvVars: []string{"REIN_TOKEN_FILE"}},
			&cli.StringFlag{Name: "protocol", Value: agentd.ProtocolNative, Usage: "agent protocol: native, acp, codex or claude", EnvVars: []string{"REIN_PROTOCOL"}},
			&cli.StringFlag{Name: "acp-mode", Usage: "ACP session mode to select after session/new (e.g. codex-acp: read-only, workspace-write, agent, agent-full-access)", EnvVars: []string{"REIN_ACP_MODE"}},
			&cli.StringFlag{Name: "dir", Usage: "agent working directory (default: agentd's)", EnvVars: []string{"REIN_AGENT_DIR"}},
			&cli.DurationFlag{Name: "abort-grace", Value: agentd.DefaultAbortGrace, Usage: "time the agent has to end its turn after abort before its process group is signalled", EnvVars: []string{"REIN_ABORT_GRACE"}},
			&cli.DurationFlag{Name: "shutdown-grace", Value: agentd.DefaultShutdownGrace, Usage: "time the agent has to exit after shutdown before its process group is signalled", EnvVars: []string{"REIN_SHUTDOWN_GRACE"}},
			&cli.DurationFlag{Name: "kill-step", Value: agentd.DefaultKillStep, Usage: "wait between SIGINT, SIGTERM and SIGKILL", EnvVars: []string{"REIN_KILL_STEP"}},
			&cli.DurationFlag{Name: "heartbeat-interval", Value: agentd.DefaultHeartbeatInterval, Usage: "interval between heartbeat events", EnvVars: []string{"REIN_HEARTBEAT_INTERVAL"}},
			&cli.IntFlag{Name: "batch-max", Value: agentd.DefaultBatchMax, Usage: "most events per POST", EnvVars: []string{"REIN_BATCH_MAX"}},
			&cli.DurationFlag{Name: "batch-wait", Value: agentd.DefaultBatchWait, Usage: "how long a batch lingers for more events after its first (0: send at once; batches still form while a POST is in flight)", EnvVars: []string{"REIN_BATCH_WAIT"}},
			&cli.IntFlag{Name: "queue-size", Value: agentd.DefaultQueueSize, Usage: "events buffered before the agent's output is blocked", EnvVars: []string{"REIN_QUEUE_SIZE"}},
			&cli.StringFlag{Name: "state-dir", Value: defaultStateDir(), Usage: "directory for the outbox, instance id, command cursor and the agent's conversation id (one subdirectory per session); a volume in a container; \"\" keeps events in memory only", EnvVars: []string{"REIN_STATE_DIR"}},
			&cli.Int64Flag{Name: "outbox-max-bytes", Value: agentd.DefaultOutboxMaxBytes, Usage: "most bytes of events kept on disk before the agent's output is blocked", EnvVars: []string{"REIN_OUTBOX_MAX_BYTES"}},
			&cli.DurationFlag{Name: "stream-idle-timeout", Value: agentd.DefaultStreamIdleTimeout, Usage: "reconnect when the command stream is silent this long", EnvVars: []string{"REIN_STREAM_IDLE_TIMEOUT"}},
			&cli.DurationFlag{Name: "flush-timeout", Value: agentd.DefaultFlushTimeout, Usage: "time allowed to post queued events at shutdown", EnvVars: []string{"REIN_FLUSH_TIMEOUT"}},
			&cli.DurationFlag{Name: "restart-delay-max", Value: agentd.DefaultRestartDelayMax, Usage: "longest wait before restarting a crashed agent", EnvVars: []string{"REIN_RESTART_DELAY_MAX"}},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"REIN_LOG_LEVEL"}},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9481; no authentication: counts only)", EnvVars: []string{"REIN_METRICS_ADDR"}},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", EnvVars: []string{"REIN_LOG_FORMAT"}},
		},
		Action: func(c *cli.Context) error { return run(c, killer) },
	}
}

func run(c *cli.Context, killer *agentd.Killer) error {
	log, err := newLogger(c.String("log-level"), c.String("log-format"))
	if err != nil {
		return err
	}
	token, err := readToken(c.String("token"), c.String("token-file"))
	if err != nil {
		return err
	}
	opts := agentd.Options{
		Server:            c.String("server"),
		Session:           c.String("session"),
		Token:             token,
		Protocol:          c.String("protocol"),
		Command:           c.Args().Slice(),
		Dir:               c.String("dir"),
		ACPMode:           c.String("acp-mode"),
		AbortGrace:        c.Duration("abort-grace"),
		ShutdownGrace:     c.Duration("shutdown-grace"),
		KillStep:          c.Duration("kill-step"),
		HeartbeatInterval: c.Duration("heartbeat-interval"),
		BatchMax:          c.Int("batch-max"),
		BatchWait:         c.Duration("batch-wait"),
		QueueSize:         c.Int("queue-size"),
		StreamIdleTimeout: c.Duration("stream-idle-timeout"),
		StateDir:          c.String("state-dir"),
		OutboxMaxBytes:    c.Int64("outbox-max-bytes"),
		MetricsAddr:       c.String("metrics-addr"),
		FlushTimeout:      c.Duration("flush-timeout"),
		RestartDelayMax:   c.Duration("restart-delay-max"),
		Killer:            killer,
		Logger:            log,
	}
	if err := positive(c, "abort-grace", "shutdown-grace", "kill-step", "heartbeat-interval", "stream-idle-timeout", "flush-timeout", "restart-delay-max"); err != nil {
		return err
	}
	if err := nonNegative(c, "batch-wait"); err != nil {
		return err
	}
	if c.IsSet("outbox-max-bytes") && opts.OutboxMaxBytes < 1 {
		return fmt.Errorf("%w: --outbox-max-bytes must be positive, not %d", agentd.ErrUsage, opts.OutboxMaxBytes)
	}
	if opts.BatchMax < 1 || opts.QueueSize < 1 {
		return fmt.Errorf("%w: --batch-max and --queue-size must be at least 1", agentd.ErrUsage)
	}
	// agentd's only children are its agents, so it may adopt what they
	// leave behind outside their process groups (a tool in a session of
	// its own): it then dies with the agent's run instead of running on
	// under init. See process.AdoptOrphans.
	stopAdopting, err := process.AdoptOrphans()
	if err != nil {
		log.Warn("processes the agent starts outside its process group may outlive it", "err", err)
	} else {
		defer stopAdopting()
	}
	return agentd.Run(c.Context, opts)
}

// defaultStateDir is $XDG_STATE_HOME/rein-agentd, else
// ~/.local/state/rein-agentd, else "" (no home: memory only, with a warning).
func defaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "rein-agentd")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".local", "state", "rein-agentd")
	}
	return ""
}

func nonNegative(c *cli.Context, names ...string) error {
	for _, n := range names {
		if c.Duration(n) < 0 {
			return fmt.Errorf("%w: --%s must not be negative, not %s", agentd.ErrUsage, n, c.Duration(n))
		}
	}
	return nil
}

func positive(c *cli.Context, names ...string) error {
	for _, n := range names {
		if c.Duration(n) <= 0 {
			return fmt.Errorf("%w: --%s must be positive, not %s", agentd.ErrUsage, n, c.Duration(n))
		}
	}
	return nil
}

// readToken returns the token from the flag or the file, trimmed: a token
// in the environment (REIN_TOKEN from a Kubernetes secret or an env file)
// often ends in a newline, as a file does, and no HTTP header carries one.
// Giving both is an error rather than a silent choice.
func readToken(token, file string) (string, error) {
	if token != "" && file != "" {
		// Either may come from the environment (a platform sets
		// REIN_TOKEN_FILE, the user types --token): name it, or the
		// error speaks of a flag the user never gave.
		msg := "give --token or --token-file, not both"
		var set []string
		for _, v := range []string{"REIN_TOKEN", "REIN_TOKEN_FILE"} {
			if os.Getenv(v) != "" {
				set = append(set, v)
			}
		}
		if len(set) > 0 {
			msg += fmt.Sprintf(" (%s, set in the environment, counts as the flag; unset it)", strings.Join(set, " and "))
		}
		return "", fmt.Errorf("%w: %s", agentd.ErrUsage, msg)
	}
	if file == "" {
		return strings.TrimSpace(token), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%w: read token file: %w", agentd.ErrUsage, err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%w: token file %s is empty", agentd.ErrUsage, file)
	}
	return t, nil
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", agentd.ErrUsage, level)
	}
	o := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, o)), nil
	}
	return nil, fmt.Errorf("%w: --log-format %q: want text or json", agentd.ErrUsage, format)
}
