// Command demo-agent is a deterministic Rein agent with no model, speaking
// the native contract (NATIVE.md): JSON-line commands on stdin, ReinEvents
// on stdout, logs on stderr. The README quickstart and the tests use it;
// NATIVE.md documents exactly what it emits for each prompt:
//
//	plain text    "You said: <text>" streamed word by word
//	run: CMD      runs `sh -c CMD` as a shell tool call, streaming its output
//	ask: TEXT     requests permission and waits for the answer
//	slow: N       streams w1 … wN, one word per DEMO_AGENT_DELAY (default 50ms)
//	plan: a; b    a plan whose entries progress to completed
//	exit: N       exits with code N at once (crash tests)
//
// abort ends the current turn as cancelled in every state; shutdown (or EOF
// on stdin) exits 0.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// version is reported in agent_started.
const version = "1.0.0"

// DefaultDelay is the pause between words of a `slow:` reply.
const defaultDelay = 50 * time.Millisecond

func main() {
	if code, done := handleArgs(os.Args[1:], os.Stdout, os.Stderr); done {
		os.Exit(code)
	}
	delay := defaultDelay
	if v := os.Getenv("DEMO_AGENT_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			fmt.Fprintf(os.Stderr, "demo-agent: DEMO_AGENT_DELAY=%q is not a duration\n", v)
			os.Exit(2)
		}
		delay = d
	}
	cwd, _ := os.Getwd()
	a := &agent{
		out:   os.Stdout,
		log:   log.New(os.Stderr, "demo-agent: ", 0),
		delay: delay,
		cwd:   cwd,
		perms: make(chan protocol.Command, 16),
		queue: make(chan protocol.Command, 1024),
	}
	a.emit(protocol.Event{
		Type:  protocol.EventAgentStarted,
		Agent: &protocol.AgentInfo{Name: "demo-agent", Version: version, Protocol: "native"},
		Cwd:   cwd,
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.turns()
	}()
	code, eof := a.readCommands(os.Stdin)
	if eof {
		// No more commands will come: finish the queued prompts (a
		// pending ask resolves as cancelled), then exit.
		close(a.queue)
		close(a.perms)
		wg.Wait()
	}
	a.stop()
	os.Exit(code)
}

// agent is the demo agent's state. Turns run one at a time in turns();
// readCommands routes abort, permission answers and shutdown at once.
type agent struct {
	outMu sync.Mutex
	out   *os.File
	log   *log.Logger
	delay time.Duration
	cwd   string

	perms chan protocol.Command // permission_response, for the current ask
	queue chan protocol.Command // prompts, in order

	mu     sync.Mutex
	n      int                // prompts started so far
	cancel context.CancelFunc // the current turn's, nil between turns
	tool   *os.Process        // the running `run:` command, if any
}

// emit writes one event line. Writes are whole lines under a lock, so
// tool output read by other goroutines never interleaves mid-line.
func (a *agent) emit(ev protocol.Event) {
	b, err := json.Marshal(ev)
	if err != nil {
		a.log.Printf("encode %s: %v", ev.Type, err)
		return
	}
	a.outMu.Lock()
	defer a.outMu.Unlock()
	if _, err := a.out.Write(append(b, '\n')); err != nil {
		// agentd is gone: nobody will read anything any more.
		os.Exit(1)
	}
}

// readCommands reads stdin until shutdown or EOF and returns the exit code
// and whether stdin ended (rather than a shutdown command).
func (a *agent) readCommands(f *os.File) (code int, eof bool) {
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), protocol.MaxCommandBytes+1)
	for sc.Scan() {
		var c protocol.Command
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			a.log.Printf("ignoring malformed command: %v", err)
			continue
		}
		switch c.Type {
		case protocol.CommandPrompt:
			a.queue <- c
		case protocol.CommandAbort:
			a.abort()
		case protocol.CommandPermissionResponse:
			select {
			case a.perms <- c:
			default:
				a.log.Printf("dropping permission_response for %s: nobody is asking", c.RequestID)
			}
		case protocol.CommandShutdown:
			a.log.Printf("shutdown")
			return 0, false
		default:
			a.log.Printf("ignoring unknown command type %q", c.Type)
		}
	}
	if err := sc.Err(); err != nil {
		a.log.Printf("read stdin: %v", err)
		return 1, false
	}
	return 0, true
}

// abort cancels the current turn, if any.
func (a *agent) abort() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cancel == nil {
		a.log.Printf("abort with no turn running: ignored")
		return
	}
	a.cancel()
}

// stop kills a running tool command before the process exits, so it does
// not outlive the agent.
func (a *agent) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cancel != nil {
		a.cancel()
	}
	if a.tool != nil {
		killGroup(a.tool)
	}
}

// turns runs queued prompts one at a time.
func (a *agent) turns() {
	for c := range a.queue {
		ctx, cancel := context.WithCancel(context.Background())
		a.mu.Lock()
		a.n++
		n := a.n
		a.cancel = cancel
		a.mu.Unlock()

		a.turn(ctx, n, c.Text)

		a.mu.Lock()
		a.cancel = nil
		a.mu.Unlock()
		cancel()
	}
}
