package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rein-ai/rein/e2e"
	"github.com/rein-ai/rein/e2e/internal/loadgen"
)

// TestInterruptStopsTheServer: Ctrl-C on make soak reaches rein-soak only
// (its rein-server runs in a process group of its own). It used to die at
// once, leaving the server running and its database, hundreds of MB by
// the end of a soak, in the temp directory. Now it stops the server,
// removes its files, writes no results and exits with 130.
func TestInterruptStopsTheServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binaries; not in -short")
	}
	bin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := e2e.Build(ctx, bin, false); err != nil {
		t.Fatal(err)
	}
	soak, err := e2e.BuildHere(ctx, bin, "rein-soak")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	out := filepath.Join(tmp, "bench.json")
	cmd := exec.Command(soak, "-bin", bin, "-duration", "2m", "-every", "1s", "-sessions", "2", "-followers", "2", "-out", out)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // the test reads only the first few
			}
		}
		exited <- cmd.Wait()
	}()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	// Interrupt once the load runs and a window was reported: the
	// server then holds sessions and events.
	deadline := time.After(time.Minute)
	for reported := false; !reported; {
		select {
		case l := <-lines:
			reported = strings.HasPrefix(strings.TrimSpace(l), "1s ") || strings.HasPrefix(strings.TrimSpace(l), "1.0s")
		case <-deadline:
			t.Fatal("rein-soak reported no window within a minute")
		}
	}
	servers, err := loadgen.Children(cmd.Process.Pid, "rein-server")
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 1 {
		t.Fatalf("rein-soak runs %d rein-servers (%v), want 1", len(servers), servers)
	}
	defer func() { _ = syscall.Kill(servers[0], syscall.SIGKILL) }()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Fatalf("rein-soak after SIGINT: %v, want exit status 130", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("rein-soak still running a minute after SIGINT")
	}
	if loadgen.Alive(servers[0]) {
		t.Errorf("rein-server (pid %d) still running after rein-soak exited", servers[0])
	}
	left, err := filepath.Glob(filepath.Join(tmp, "rein-soak-*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("rein-soak left %v", left)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an interrupted soak wrote %s (stat: %v)", out, err)
	}
}
