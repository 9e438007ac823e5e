package process

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// An agent's last lines wait in the pipe while agentd is slow to read
// them (its queue full: the server unreachable, the state dir's disk
// full). Once the agent has exited, they must still be read, however
// long that took: the drain deadline is there for a writer that escaped
// the process group and keeps the pipe open, not for output already
// written.
func TestOutputWrittenBeforeExitIsReadAfterTheDrainDeadline(t *testing.T) {
	const lines = 200 // ~10 KiB: fits in the pipe, so the agent exits without being read
	script := fmt.Sprintf(`i=1; while [ $i -le %d ]; do echo "line $i of the agent's output, written before it exited"; i=$((i+1)); done`, lines)
	p, err := Start(Spec{Argv: []string{"sh", "-c", script}, DrainTimeout: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	// Not one byte read until the agent exited and the drain deadline
	// (1ns after) passed: as when Emit blocked on a full queue.
	<-p.Done()
	r := bufio.NewReader(p.Stdout)
	got := 0
	var rerr error
	for {
		b, err := ReadLine(r, 1<<10)
		if len(b) > 0 {
			got++
			if want := fmt.Sprintf("line %d of", got); string(b[:len(want)]) != want {
				t.Fatalf("line %d = %q", got, b)
			}
		}
		if err != nil {
			rerr = err
			break
		}
	}
	if got != lines || rerr != io.EOF {
		t.Fatalf("read %d of %d lines, then %v; want all of them, then EOF", got, lines, rerr)
	}
	if ex := p.Wait(); ex.Code == nil || *ex.Code != 0 {
		t.Fatalf("exit = %s", ex)
	}
}

// A process that escaped the group and writes without end keeps the pipe
// open and full; reading past the drain deadline still ends, after at
// most what a pipe can hold.
func TestEscapedWriterCannotHoldTheRunOpenPastTheDrainDeadline(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "escaped.pid")
	// The agent exits once the writer is out of its group (pid written):
	// the group's SIGKILL at the agent's exit must not reach it.
	script := `echo "the agent's last line"; setsid sh -c 'echo $$ > "$0"; exec yes' "$1" & while [ ! -s "$1" ]; do sleep 0.01; done; exit 0`
	p, err := Start(Spec{Argv: []string{"sh", "-c", script, "sh", pidFile}, DrainTimeout: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The escaped writer outlives the test unless killed; it writes
		// its pid before it starts writing.
		for range 100 {
			b, _ := os.ReadFile(pidFile)
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Errorf("the escaped writer's pid never appeared in %s", pidFile)
	})
	<-p.Done()
	r := bufio.NewReader(p.Stdout)
	first, err := ReadLine(r, 1<<10)
	if err != nil || string(first) != "the agent's last line" {
		t.Fatalf("first line = %q, %v", first, err)
	}
	n, err := io.Copy(io.Discard, r)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("reading the escaped writer's output ended with %v after %d bytes, want the drain deadline", err, n)
	}
	if n > pipeMax+64<<10 {
		t.Fatalf("read %d bytes past the drain deadline, want at most about %d", n, pipeMax)
	}
	p.Wait()
}

// The adapters close Stdout to unblock their reader when they stop early.
func TestStdoutCloses(t *testing.T) {
	p, err := Start(Spec{Argv: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	c, ok := p.Stdout.(io.Closer)
	if !ok {
		t.Fatalf("Stdout (%T) is not an io.Closer", p.Stdout)
	}
	read := make(chan error, 1)
	go func() {
		_, err := p.Stdout.Read(make([]byte, 1))
		read <- err
	}()
	c.Close()
	if err := <-read; err == nil {
		t.Fatal("a read of a closed Stdout succeeded")
	}
	p.Signal(syscall.SIGKILL)
	p.Wait()
}
