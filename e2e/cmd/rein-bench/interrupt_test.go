package main

import (
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

// buildBench builds rein-bench, rein-server and agentd into a temporary
// directory: the tests below run the bench as a user does.
func buildBench(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the real binaries; not in -short")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := e2e.Build(ctx, dir, false); err != nil {
		t.Fatal(err)
	}
	if _, err := e2e.BuildHere(ctx, dir, "rein-bench"); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestInterruptStopsWhatTheBenchStarted: Ctrl-C on make bench reaches
// rein-bench only (each child runs in a process group of its own). It
// used to die at once and leave its rein-server and baselines running
// and its files in the temp directory; now it stops them, removes its
// files and exits with 130: interrupted while a server is measured, and
// the moment a server's process exists, before the bench knows it as
// started (which CI met once: that server outlived the bench).
func TestInterruptStopsWhatTheBenchStarted(t *testing.T) {
	bin := buildBench(t)
	for _, tc := range []struct {
		name  string
		after time.Duration // from the server's process appearing to the SIGINT
	}{
		{"while the server starts", 0},
		{"while it is measured", time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			cmd := exec.Command(filepath.Join(bin, "rein-bench"), "-bin", bin, "-only", "ingest_single", "-runs", "1", "-out", filepath.Join(tmp, "bench.json"))
			cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() {
				if cmd.ProcessState == nil {
					_ = cmd.Process.Kill()
					<-exited
				}
			}()
			servers, err := loadgen.WaitChildren(cmd.Process.Pid, "rein-server", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				for _, p := range servers {
					_ = syscall.Kill(p, syscall.SIGKILL)
				}
			}()
			time.Sleep(tc.after)
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 130 {
					t.Fatalf("rein-bench after SIGINT: %v, want exit status 130", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("rein-bench still running a minute after SIGINT")
			}
			// The bench waited for its children to stop before it exited.
			for _, p := range servers {
				if loadgen.Alive(p) {
					t.Errorf("rein-server (pid %d) still running after the bench exited", p)
				}
			}
			left, err := filepath.Glob(filepath.Join(tmp, "rein-bench-*"))
			if err != nil {
				t.Fatal(err)
			}
			if len(left) > 0 {
				t.Errorf("the bench left %v", left)
			}
		})
	}
}

// TestKilledBenchTakesItsServerAlong: a bench killed outright (kill -9,
// the OOM killer), which can stop nothing, takes the servers it started
// with it: the kernel kills them (e2e.Start's Pdeathsig).
func TestKilledBenchTakesItsServerAlong(t *testing.T) {
	bin := buildBench(t)
	tmp := t.TempDir()
	cmd := exec.Command(filepath.Join(bin, "rein-bench"), "-bin", bin, "-only", "ingest_single", "-runs", "1", "-out", filepath.Join(tmp, "bench.json"))
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	servers, err := loadgen.WaitChildren(cmd.Process.Pid, "rein-server", time.Minute)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal(err)
	}
	defer func() {
		for _, p := range servers {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	for _, p := range servers {
		for deadline := time.Now().Add(10 * time.Second); loadgen.Alive(p); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("rein-server (pid %d) still runs 10 s after rein-bench was killed", p)
			}
		}
	}
}

// TestBaselineExitsOnIgnoredInterrupt: a baseline started with SIGINT
// ignored (the bench run as a shell's background job, or under nohup,
// passes that on) still exits on the SIGINT the bench stops it with,
// rather than running out the grace to a SIGKILL each time.
func TestBaselineExitsOnIgnoredInterrupt(t *testing.T) {
	bin := buildBench(t)
	// trap '' INT ignores SIGINT, and exec passes that on.
	cmd := exec.Command("sh", "-c", `trap '' INT; exec "$0" -mode trivial`, filepath.Join(bin, "rein-bench"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	line := make([]byte, 256)
	if n, err := out.Read(line); err != nil || !strings.Contains(string(line[:n]), "listening on ") {
		t.Fatalf("the baseline printed %q (%v), want its address", line[:n], err)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the baseline after SIGINT: %v, want exit status 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the baseline, started with SIGINT ignored, still running 30 s after SIGINT")
	}
}
