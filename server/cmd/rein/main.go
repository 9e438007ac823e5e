package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/client"
	"github.com/rein-ai/rein/server/internal/tokenflags"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, newEnv())
	stop()
	os.Exit(code)
}

// env is what a run of rein sees of its process; tests fill in their own.
type env struct {
	stdout, stderr io.Writer
	// color: stdout is a terminal and NO_COLOR is not set.
	color bool
	now   func() time.Time
	// out is stdout as run wraps it (nil outside run): what remembers a
	// write that failed.
	out *outWriter
}

// outWriter is rein's standard output. It remembers the first write that
// failed and fails every one after it: the transcript of rein watch >
// file on a full disk, or a list piped to a reader that went away, did
// not reach its reader, and exit status 0 would say it did; a follow
// that can no longer print stops rather than follow on unseen.
type outWriter struct {
	w   io.Writer
	err error
}

func (o *outWriter) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		o.err = fmt.Errorf("write standard output: %w", err)
		return n, o.err
	}
	return n, nil
}

// printed returns the error of the first write to standard output that
// failed, or nil while all got through. A command whose output is its
// result (a list, a transcript, a verification) returns it.
func (e *env) printed() error {
	if e.out == nil {
		return nil
	}
	return e.out.err
}

func newEnv() *env {
	color := false
	if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		color = os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
	}
	return &env{stdout: os.Stdout, stderr: os.Stderr, color: color, now: time.Now}
}

// usageError is a command used wrongly: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// run runs rein with args and returns the exit status: 0, 1 for a failure
// (the server's error shown as "rein: <message> (<code>)"), 2 for a usage
// error, 130 when interrupted.
func run(ctx context.Context, args []string, e *env) int {
	we := *e
	we.out = &outWriter{w: e.stdout}
	we.stdout = we.out
	e = &we
	app := newApp(e)
	err := app.RunContext(ctx, permute(app, args))
	if err == nil {
		if perr := e.printed(); perr != nil {
			// A command whose output is only a confirmation (a prompt
			// sent, a session created) did what it was asked: exit 1
			// would have a script run it again, and send the prompt a
			// second time. Its output was lost all the same: say so.
			fmt.Fprintf(e.stderr, "rein: %s: the command was carried out, but what it printed is incomplete\n", cleanText(perr.Error()))
		}
		return 0
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		var ue *client.UnconfirmedError
		if errors.As(err, &ue) {
			// Interrupted while a send was on its way: it may be
			// stored, and running the command again without its key
			// would send it a second time.
			fmt.Fprintln(e.stderr, "rein: interrupted:", cleanText(err.Error()))
		}
		return 130
	}
	// An error can carry what the server or the agent chose (a message,
	// an option id): cleaned like the transcript.
	fmt.Fprintln(e.stderr, "rein:", cleanText(err.Error()))
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func newApp(e *env) *cli.App {
	app := buildApp(e)
	app.Action = withSubcommands(cli.ShowAppHelp)
	var setup func([]*cli.Command)
	setup = func(cmds []*cli.Command) {
		for _, c := range cmds {
			c.OnUsageError = app.OnUsageError
			// No hidden "help" subcommand: "rein rm help" removes the
			// session named help, it does not print rm's help (--help does).
			c.HideHelpCommand = true
			if len(c.Subcommands) > 0 {
				if c.Action == nil {
					c.Action = cli.ShowSubcommandHelp
				}
				c.Action = withSubcommands(c.Action)
			}
			setup(c.Subcommands)
		}
	}
	setup(app.Commands)
	return app
}

// withSubcommands is the action of rein or of a command with
// subcommands: urfave/cli runs it when the first argument names none of
// them, which is a usage error (urfave/cli's own answer is "No help
// topic for 'x'" and exit 1); without arguments it runs action.
func withSubcommands(action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		if !c.Args().Present() {
			return action(c)
		}
		var names []string
		for _, s := range c.Command.Subcommands {
			if !s.Hidden {
				names = append(names, s.Name)
			}
		}
		// HelpName is the command as typed: "rein", "rein inbox".
		parent := strings.TrimSpace(strings.TrimPrefix(c.Command.HelpName, c.App.HelpName))
		what := strings.TrimSpace(parent + " commands")
		return usageError{fmt.Sprintf("unknown command %q; %s: %s", strings.TrimSpace(parent+" "+c.Args().First()), what, strings.Join(names, ", "))}
	}
}

func buildApp(e *env) *cli.App {
	jsonFlag := &cli.BoolFlag{Name: "json", Usage: "print JSON for scripts instead of text"}
	projectFlag := &cli.StringFlag{Name: "project", Aliases: []string{"p"}, Usage: "project name"}
	return &cli.App{
		Name:            "rein",
		Usage:           "watch and steer Rein sessions",
		Version:         versionString(),
		HideHelpCommand: true,
		Writer:          e.stdout,
		ErrWriter:       e.stderr,
		// Errors are printed once, by run, with the exit status it picks.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err.Error()}
		},
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "server", Aliases: []string{"s"}, Value: client.DefaultServer, EnvVars: []string{"REIN_SERVER"}, Usage: "rein-server base URL"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"REIN_API_TOKEN"}, Usage: "client token, sent as a Bearer token (surrounding whitespace trimmed; prefer --token-file: argv is visible to other processes)"},
			&cli.StringFlag{Name: "token-file", EnvVars: []string{"REIN_API_TOKEN_FILE"}, Usage: "file holding the client token (surrounding whitespace trimmed)"},
		},
		Commands: []*cli.Command{
			{
				Name:      "sessions",
				Aliases:   []string{"ls"},
				Usage:     "list sessions (id, status, project, age, summary)",
				ArgsUsage: " ",
				Flags: []cli.Flag{projectFlag, jsonFlag,
					&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "follow the session stream and redraw on every change"}},
				Action: func(c *cli.Context) error { return cmdSessions(c, e) },
			},
			{
				Name:      "create",
				Usage:     "create a session and print its sandbox token for agentd",
				ArgsUsage: "ID",
				Flags: []cli.Flag{projectFlag, jsonFlag,
					&cli.StringFlag{Name: "sandbox-token-file", Usage: "write the sandbox token to this file (mode 0600, synced) instead of printing it; the session is removed again if it cannot be written"},
					&cli.StringFlag{Name: "prompt", Usage: "an initial prompt, delivered to the agent when its sandbox first connects"}},
				Action: func(c *cli.Context) error { return cmdCreate(c, e) },
			},
			{
				Name:      "token",
				Usage:     "give a session a new sandbox token (the old one stops working, and an agentd using it stops)",
				ArgsUsage: "ID",
				Flags: []cli.Flag{jsonFlag,
					&cli.StringFlag{Name: "sandbox-token-file", Usage: "write the new token to this file (created mode 0600, or replaced in place, refused unless only you can read it; synced) instead of printing it"}},
				Action: func(c *cli.Context) error { return cmdToken(c, e) },
			},
			{
				Name:      "rm",
				Usage:     "delete a session with its history",
				ArgsUsage: "ID",
				Action:    func(c *cli.Context) error { return cmdRemove(c, e) },
			},
			{
				Name:      "prompt",
				Usage:     "send a prompt to the session's agent",
				ArgsUsage: "ID TEXT...",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "queue", Usage: "accept the prompt even while no sandbox is connected: it is delivered when one connects"},
					&cli.StringFlag{Name: "idempotency-key", Usage: "send the prompt with this Idempotency-Key: run again with the same key (a retried script or CI step), it is delivered once"}},
				Action: func(c *cli.Context) error { return cmdPrompt(c, e) },
			},
			{
				Name:      "abort",
				Usage:     "ask the agent to end its current turn",
				ArgsUsage: "ID",
				Action:    func(c *cli.Context) error { return cmdAbort(c, e) },
			},
			{
				Name:      "approve",
				Usage:     "answer a permission request with OPTION (default: its allow_once option, never an always one)",
				ArgsUsage: "ID REQUEST [OPTION]",
				Action:    func(c *cli.Context) error { return cmdAnswer(c, e, true) },
			},
			{
				Name:      "deny",
				Usage:     "answer a permission request with its reject_once option (none: cancel it)",
				ArgsUsage: "ID REQUEST",
				Action:    func(c *cli.Context) error { return cmdAnswer(c, e, false) },
			},
			{
				Name:      "inbox",
				Usage:     "list every session's pending permission requests, each with its REF; answer one by REF or request id",
				UsageText: "rein inbox [-p PROJECT] [--follow] [--json]\nrein inbox approve [-p PROJECT] REF|REQUEST [OPTION]\nrein inbox deny [-p PROJECT] REF|REQUEST",
				Flags: []cli.Flag{projectFlag, jsonFlag,
					&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "follow the approvals stream: a line per change and the list again"}},
				Action: func(c *cli.Context) error { return cmdInbox(c, e) },
				Subcommands: []*cli.Command{
					{
						Name:      "approve",
						Usage:     "answer the request rein inbox shows as REF, or request REQUEST (SESSION/REQUEST when several sessions have it), with OPTION (default: its allow_once option); a request that ended since it was listed is not answered, and a number (a place in the list) is refused",
						ArgsUsage: "REF|REQUEST [OPTION]",
						Flags:     []cli.Flag{projectFlag},
						Action:    func(c *cli.Context) error { return cmdInboxAnswer(c, e, true) },
					},
					{
						Name:      "deny",
						Usage:     "answer the request rein inbox shows as REF, or request REQUEST, with its reject_once option",
						ArgsUsage: "REF|REQUEST",
						Flags:     []cli.Flag{projectFlag},
						Action:    func(c *cli.Context) error { return cmdInboxAnswer(c, e, false) },
					},
				},
			},
			{
				Name:      "verify",
				Usage:     "recompute a session's turn digests from its event log; exit 1 naming the first turn that does not match",
				ArgsUsage: "ID",
				Flags: []cli.Flag{jsonFlag,
					&cli.IntFlag{Name: "page-size", Value: 1000, Usage: "events per page of GET /sessions/:id/events"}},
				Action: func(c *cli.Context) error { return cmdVerify(c, e) },
			},
			{
				Name:      "watch",
				Usage:     "follow a session's transcript live; resumes by itself after a dropped connection",
				ArgsUsage: "ID",
				Flags: []cli.Flag{jsonFlag,
					&cli.BoolFlag{Name: "until-idle", Usage: "exit 0 once no turn is running (waits for a first turn if there is none)"},
					&cli.DurationFlag{Name: "idle-grace", Value: 500 * time.Millisecond, Usage: "with --until-idle: how long no turn must be running before exiting (covers a prompt whose turn has not started yet)"},
				},
				Action: func(c *cli.Context) error { return cmdWatch(c, e) },
			},
		},
	}
}

// newClient builds the client from the global flags.
func newClient(c *cli.Context) (*client.Client, error) {
	// Trimmed as the file is: a token in the environment often ends in
	// a newline (a Kubernetes secret, a value copied from a file).
	token := strings.TrimSpace(c.String("token"))
	if f := c.String("token-file"); f != "" {
		if token != "" && c.IsSet("token") && c.IsSet("token-file") {
			return nil, usageError{tokenflags.Twice("--token", "--token-file")}
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("token file %s: %w", tokenFileSource(f), err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return nil, fmt.Errorf("token file %s is empty", tokenFileSource(f))
		}
	}
	return client.New(c.String("server"), token)
}

// tokenFileSource names the token file f for an error, and where it came
// from when that is not obvious: the README's setup exports
// REIN_API_TOKEN_FILE with a relative path, which a rein run later from
// another directory cannot find, and "open api-token: no such file"
// named neither the variable nor the directory it was read from.
func tokenFileSource(f string) string {
	var from []string
	if os.Getenv("REIN_API_TOKEN_FILE") == f {
		from = append(from, "from REIN_API_TOKEN_FILE")
	}
	if !filepath.IsAbs(f) {
		if wd, err := os.Getwd(); err == nil {
			from = append(from, "relative to the current directory "+wd)
		}
	}
	if len(from) == 0 {
		return f
	}
	return f + " (" + strings.Join(from, ", ") + ")"
}

// commandClient is newClient for a command that sends a command: it says
// on stderr when it sends it again after a lost answer (with the same
// Idempotency-Key, so it is stored once).
func commandClient(c *cli.Context, e *env) (*client.Client, error) {
	cl, err := newClient(c)
	if err != nil {
		return nil, err
	}
	cl.OnRetry = func(err error, wait time.Duration) {
		fmt.Fprintf(e.stderr, "rein: sending the command failed (%s); sending it again in %s (it is stored once)\n", cleanText(err.Error()), wait.Round(time.Millisecond))
	}
	return cl, nil
}

// args checks the positional arguments: at least min, at most max
// (max < 0: no limit). The usage it prints names the command as typed
// ("rein inbox approve").
func args(c *cli.Context, min, max int) ([]string, error) {
	a := c.Args().Slice()
	if max == 0 && len(a) > 0 {
		// Its usage line has nothing after the name to show.
		return nil, usageError{fmt.Sprintf("%s takes no arguments; got %q", c.Command.HelpName, strings.Join(a, " "))}
	}
	if len(a) < min || (max >= 0 && len(a) > max) {
		return nil, usageError{fmt.Sprintf("usage: %s %s", c.Command.HelpName, c.Command.ArgsUsage)}
	}
	return a, nil
}

// sessionArgs is args for a command whose first argument is a session
// id, which it checks as the server would before it goes into a URL: ""
// or "a/b" names another route, and "/sessions//stream" is redirected to
// the session stream, which rein watch "" followed, printing nothing,
// oneSession is the start of every command whose only argument is a
// session id: the id, checked, and a client.
func oneSession(c *cli.Context) (string, *client.Client, error) {
	a, err := sessionArgs(c, 1, 1)
	if err != nil {
		return "", nil, err
	}
	cl, err := newClient(c)
	return a[0], cl, err
}

// forever. It is refused as the server refuses a bad id (exit 1).
func sessionArgs(c *cli.Context, min, max int) ([]string, error) {
	a, err := args(c, min, max)
	if err != nil {
		return nil, err
	}
	if err := protocol.ValidateSessionID(a[0]); err != nil {
		return nil, &client.Error{Status: http.StatusBadRequest, Code: protocol.CodeOf(err), Message: err.Error()}
	}
	return a, nil
}
