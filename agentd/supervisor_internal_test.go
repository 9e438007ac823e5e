package agentd

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/agentd/internal/process"
	"github.com/rein-ai/rein/agentd/internal/uploader"
	"github.com/rein-ai/rein/protocol"
)

// The end of turn N-1 that the loop has not yet read must not call off
// the abort escalation armed for turn N: a stubborn agent would then never
// be signalled. The loop reads the commands and the turn ends in one
// select, which picks at random among those ready; the end is left
// unread whenever the loop was busy (forwarding a command, re-posting
// agent_started into a full queue) when the agent ended one turn and
// started the next. Many rounds, since the select does not pick the abort
// first every time.
func TestEarlierTurnEndKeepsAbortEscalation(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	// The stubborn stub (main_test.go): it ignores SIGINT and says so.
	proc, err := process.Start(process.Spec{Argv: []string{os.Args[0]}, Env: append(os.Environ(), "AGENTD_TEST_STUB=stubborn")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proc.Signal(syscall.SIGKILL)
		proc.Wait()
	})
	interrupts, ready := make(chan struct{}, 64), make(chan struct{}, 1)
	go func() {
		sc := bufio.NewScanner(proc.Stdout)
		for sc.Scan() {
			switch {
			case strings.Contains(sc.Text(), "got interrupt"):
				interrupts <- struct{}{}
			case strings.Contains(sc.Text(), "turn_started"):
				ready <- struct{}{}
			}
		}
	}()
	// The stub answers a prompt once it handles signals: one before
	// would kill it.
	if _, err := proc.Stdin.Write([]byte(`{"id":1,"type":"prompt","text":"hi"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case <-time.After(fakeserver.WaitTimeout):
		t.Fatal("the stub did not start")
	}
	commands := make(chan protocol.Command, 1)
	s := &supervisor{
		opts:      Options{AbortGrace: time.Millisecond, KillStep: time.Hour},
		log:       log,
		up:        uploader.New(uploader.Options{Server: "http://127.0.0.1:1", Session: "s1", Instance: "i1", QueueSize: 1 << 16, Logger: log}),
		commands:  commands,
		turnEnded: make(chan string, 1),
		cmds:      newCommandLog(nil, log),
		perms:     newPermissionLog("i1"),
		runCtx:    context.Background(),
		ownCtx:    context.Background(),
	}
	ctx := context.Background()
	for i := range 20 {
		prev, cur := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
		for _, ev := range []protocol.Event{
			{Type: protocol.EventTurnStarted, TurnID: prev, Source: protocol.SourceUser},
			{Type: protocol.EventTurnCompleted, TurnID: prev, StopReason: protocol.StopEndTurn},
			{Type: protocol.EventTurnStarted, TurnID: cur, Source: protocol.SourceUser},
		} {
			if err := s.emitFromAgent(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		commands <- protocol.Command{ID: int64(i + 1), Type: protocol.CommandAbort}
		r := &agentRun{proc: proc, cmds: make(chan protocol.Command, 1), done: make(chan struct{})}
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			s.watch(ctx, r, nil)
		}()
		select {
		case <-interrupts:
		case <-time.After(fakeserver.WaitTimeout):
			t.Errorf("round %d: the agent was never signalled after the abort of turn %s", i, cur)
		}
		close(r.done)
		<-watched
		if t.Failed() {
			return
		}
	}
}
