package agentd_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
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
	dir, err := os.MkdirTemp("", "agentd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	demoAgent = filepath.Join(dir, "demo-agent")
	build := exec.Command("go", "build", "-o", demoAgent, "./cmd/demo-agent")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
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
//	invalid: writes one line that is not an event, one event that fails
//	  validation, then a valid notice.
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
