package main

import (
	"context"
	"path/filepath"
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

// startBench runs the real rein-bench on ingest_single with TMPDIR=tmp,
// killed at the test's end if it still runs, and returns it with the
// pid of the first rein-server it starts, found the moment its process
// exists.
func startBench(t *testing.T, bin, tmp string) (*e2e.Proc, int) {
	t.Helper()
	p, err := e2e.Start(t.Logf, "rein-bench", []string{"TMPDIR=" + tmp}, filepath.Join(bin, "rein-bench"),
		"-bin", bin, "-only", "ingest_single", "-runs", "1", "-out", filepath.Join(tmp, "bench.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	servers, err := loadgen.WaitChildren(p.Pid(), "rein-server", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(servers[0], syscall.SIGKILL) })
	return p, servers[0]
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
			bench, server := startBench(t, bin, tmp)
			time.Sleep(tc.after)
			bench.Signal(syscall.SIGINT)
			if err := bench.Wait(time.Minute); err != nil {
				t.Fatal(err)
			}
			if code := bench.ExitCode(); code != 130 {
				t.Fatalf("rein-bench after SIGINT: exit status %d, want 130", code)
			}
			// The bench waited for its children to stop before it exited.
			if loadgen.Alive(server) {
				t.Errorf("rein-server (pid %d) still running after the bench exited", server)
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
	bench, server := startBench(t, buildBench(t), t.TempDir())
	bench.Kill()
	for deadline := time.Now().Add(10 * time.Second); loadgen.Alive(server); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("rein-server (pid %d) still runs 10 s after rein-bench was killed", server)
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
	p, err := e2e.Start(t.Logf, "trivial", nil, "sh", "-c", `trap '' INT; exec "$0" -mode trivial`, filepath.Join(bin, "rein-bench"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.WaitLine(ctx, "listening on "); err != nil {
		t.Fatal(err)
	}
	p.Signal(syscall.SIGINT)
	if err := p.Wait(30 * time.Second); err != nil {
		t.Fatalf("the baseline, started with SIGINT ignored: %v after SIGINT", err)
	}
	if code := p.ExitCode(); code != 0 {
		t.Fatalf("the baseline after SIGINT: exit status %d, want 0", code)
	}
}
