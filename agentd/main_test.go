package agentd_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/rein-ai/rein/agentd/internal/testbuild"
)

// demoAgent is the path of the demo-agent binary built for these tests.
var demoAgent string

// stubEnv selects a stub agent: the test binary re-executed with it set
// behaves as the named agent instead of running tests.
const stubEnv = "AGENTD_TEST_STUB"

func TestMain(m *testing.M) {
	if stub := os.Getenv(stubEnv); stub != "" {
		os.Exit(runStub(stub))
	}
	// The stubs are this binary, built with -race: at an exit with code 0
	// the race runtime first sleeps atexit_sleep_ms (1 s unless GORACE
	// says otherwise), so a stub asked to stop took the whole 1 s
	// shutdown grace start gives it and was as often killed by SIGTERM
	// as it exited. The stubs inherit this (tests pass os.Environ()).
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	dir, err := os.MkdirTemp("", "agentd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	demoAgent = filepath.Join(dir, "demo-agent")
	if err := testbuild.Build(".", demoAgent, "./cmd/demo-agent"); err != nil {
		fmt.Fprintln(os.Stderr, "build demo-agent:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runStub is a misbehaving native agent.
//
//	stubborn: starts a turn on every prompt and never ends it; ignores
//	  abort, shutdown, SIGINT and SIGTERM (reporting each signal as a
//	  notice), so only SIGKILL stops it.
//	leaver: a helper process runs from the start; each prompt starts a
//	  turn and a `sleep` in a session of its own (reported as notices
//	  "helper PID" and "child PID"); an abort ends the turn cancelled
//	  and leaves the child running, as Codex does with a background
//	  terminal; a shutdown ends it (and its helper).
//	sigint: starts turn t1 on each prompt and ignores abort; ends the
//	  turn (cancelled) at SIGINT; closes its stdout at the prompt
//	  "close" and runs on, past the end of its input; exits at shutdown.
//	mute: reads its input and never answers (an agent whose handshake
//	  takes long).
//	invalid: writes one line that is not an event, one event that fails
//	  validation, then a valid notice.
//	deaf: reads no command until a byte comes through the FIFO named by
//	  AGENTD_TEST_RELEASE; then runs each prompt as a turn with one
//	  notice, the prompt's first word.
func runStub(name string) int {
	out := json.NewEncoder(os.Stdout)
	switch name {
	case "stubborn":
		sigs := make(chan os.Signal, 4)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			for s := range sigs {
				out.Encode(map[string]any{"type": "notice", "level": "info", "message": "got " + s.String()})
			}
		}()
		sc := bufio.NewScanner(os.Stdin)
		n := 0
		for sc.Scan() {
			var c struct{ Type string }
			json.Unmarshal(sc.Bytes(), &c)
			if c.Type == "prompt" {
				n++
				out.Encode(map[string]any{"type": "turn_started", "turnId": fmt.Sprintf("s%d", n), "source": "user"})
			}
		}
		select {} // stdin closed: still refuse to exit
	case "leaver":
		helper := exec.Command("sleep", "1000")
		if err := helper.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer helper.Process.Kill()
		go helper.Wait()
		out.Encode(map[string]any{"type": "agent_started", "agent": map[string]any{"name": "leaver"}})
		sc := bufio.NewScanner(os.Stdin)
		n := 0
		for sc.Scan() {
			var c struct{ Type string }
			json.Unmarshal(sc.Bytes(), &c)
			switch c.Type {
			case "prompt":
				n++
				out.Encode(map[string]any{"type": "turn_started", "turnId": fmt.Sprintf("l%d", n), "source": "user"})
				child := exec.Command("sleep", "1000")
				child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
				if err := child.Start(); err != nil {
					fmt.Fprintln(os.Stderr, err)
					return 1
				}
				go child.Wait()
				out.Encode(map[string]any{"type": "notice", "level": "info", "message": fmt.Sprintf("helper %d", helper.Process.Pid)})
				out.Encode(map[string]any{"type": "notice", "level": "info", "message": fmt.Sprintf("child %d", child.Process.Pid)})
			case "abort":
				out.Encode(map[string]any{"type": "turn_completed", "turnId": fmt.Sprintf("l%d", n), "stopReason": "cancelled"})
			case "shutdown":
				return 0 // at once, not after the shutdown grace
			}
		}
		return 0
	case "sigint":
		var mu sync.Mutex // the encoder, shared with the signal's goroutine
		say := func(v any) {
			mu.Lock()
			defer mu.Unlock()
			out.Encode(v)
		}
		// Notify installs a handler even where SIGINT came ignored (a
		// test binary started in the background by a shell): a shell
		// agent could not trap it there.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT)
		go func() {
			for range sigs {
				say(map[string]any{"type": "turn_completed", "turnId": "t1", "stopReason": "cancelled"})
			}
		}()
		say(map[string]any{"type": "agent_started", "agent": map[string]any{"name": "ends-at-sigint"}})
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			var c struct{ Type, Text string }
			json.Unmarshal(sc.Bytes(), &c)
			switch {
			case c.Type == "shutdown":
				return 0
			case c.Type == "prompt" && c.Text == "close":
				mu.Lock()
				os.Stdout.Close()
				mu.Unlock()
			case c.Type == "prompt":
				say(map[string]any{"type": "turn_started", "turnId": "t1", "source": "user"})
			}
		}
		select {} // stdin closed, as agentd does once stdout ended: runs on
	case "mute":
		io.Copy(io.Discard, os.Stdin)
		return 0
	case "deaf":
		out.Encode(map[string]any{"type": "agent_started", "agent": map[string]any{"name": "deaf"}})
		release, err := os.Open(os.Getenv("AGENTD_TEST_RELEASE"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		release.Read(make([]byte, 1))
		release.Close()
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(nil, 1<<20)
		n := 0
		for sc.Scan() {
			var c struct{ Type, Text string }
			json.Unmarshal(sc.Bytes(), &c)
			if c.Type == "shutdown" {
				return 0
			}
			if c.Type != "prompt" {
				continue
			}
			n++
			turn := fmt.Sprintf("d%d", n)
			word, _, _ := strings.Cut(c.Text, " ")
			out.Encode(map[string]any{"type": "turn_started", "turnId": turn, "source": "user"})
			out.Encode(map[string]any{"type": "notice", "level": "info", "message": word})
			out.Encode(map[string]any{"type": "turn_completed", "turnId": turn, "stopReason": "end_turn"})
		}
		return 0
	case "invalid":
		fmt.Println("this is not json")
		fmt.Println(`{"type":"text_delta","delta":42}`)
		fmt.Println(`{"type":"notice","level":"info","message":"still here"}`)
		bufio.NewScanner(os.Stdin).Scan() // until shutdown or EOF
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown stub", name)
	return 2
}
