//go:build linux

package agentd_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd"
)

// TestSweepBeforeTheServerAnswers: an agentd started on the state dir of
// one that died kills what that one's agent left running (found by the
// REIN_AGENTD_INSTANCE its environment carries) first thing, with the
// server unreachable: a leftover must not work on for as long as the
// network is down. A process with another instance's marker is not
// touched.
func TestSweepBeforeTheServerAnswers(t *testing.T) {
	stateDir := t.TempDir()
	const session, instance = "s1", "agentd-sweep0123456789abcdef"
	if err := os.MkdirAll(filepath.Join(stateDir, session), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stateDir, session, "instance"), []byte(instance+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sleep := func(marker string) *exec.Cmd {
		cmd := exec.Command("sleep", "1000")
		cmd.Env = append(os.Environ(), marker)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // as a tool the agent detached
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
		return cmd
	}
	leftover := sleep("REIN_AGENTD_INSTANCE=" + instance)
	other := sleep("REIN_AGENTD_INSTANCE=" + instance + "-other")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- agentd.Run(ctx, agentd.Options{
			Server: "http://127.0.0.1:1", Session: session, StateDir: stateDir,
			Command: []string{demoAgent}, Logger: testLogger(t),
			// Nothing can be posted: the stop need not wait 10 s to say so.
			FlushTimeout: 100 * time.Millisecond,
		})
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("agentd did not stop 30 s after its context ended")
		}
	}()
	waitGone(t, leftover.Process.Pid)
	select {
	case err := <-done:
		t.Fatalf("agentd returned (%v) though the server never answered", err)
	default:
	}
	if !alive(other.Process.Pid) {
		t.Error("a process marked by another instance was killed")
	}
}
