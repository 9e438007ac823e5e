package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
	p, err := e2e.Start(t.Logf, "rein-soak", []string{"TMPDIR=" + tmp}, soak,
		"-bin", bin, "-duration", "2m", "-every", "1s", "-sessions", "2", "-followers", "2", "-out", out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	// Interrupt once the load runs and a window was reported: the
	// server then holds sessions and events.
	window := regexp.MustCompile(`^\s*\d+s\s`)
	for deadline := time.Now().Add(time.Minute); !slices.ContainsFunc(p.Output(), window.MatchString); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("rein-soak reported no window within a minute; its output:\n%s", strings.Join(p.Output(), "\n"))
		}
	}
	servers, err := loadgen.Children(p.Pid(), "rein-server")
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 1 {
		t.Fatalf("rein-soak runs %d rein-servers (%v), want 1", len(servers), servers)
	}
	t.Cleanup(func() { _ = syscall.Kill(servers[0], syscall.SIGKILL) })
	p.Signal(syscall.SIGINT)
	if err := p.Wait(time.Minute); err != nil {
		t.Fatal(err)
	}
	if code := p.ExitCode(); code != 130 {
		t.Fatalf("rein-soak after SIGINT: exit status %d, want 130", code)
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
