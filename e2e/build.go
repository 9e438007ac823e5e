package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"time"
)

// Binaries are the paths of the programs under test.
type Binaries struct {
	Server    string // rein-server
	Agentd    string // agentd
	DemoAgent string // demo-agent
}

// RepoRoot finds the monorepo root (the directory holding go.work) from the
// working directory upwards.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find repo root: no go.work above the working directory")
		}
		dir = parent
	}
}

// raceFlags are -race and the -gcflags the running test binary was built
// with, so the programs are built as make test built the tests: its RACE
// leaves SQLite transpiled from C out of the race detector (the Makefile
// says why), and the flags are written there alone.
func raceFlags() []string {
	flags := []string{"-race"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-gcflags" {
				flags = append(flags, "-gcflags="+s.Value)
			}
		}
	}
	return flags
}

// Build compiles the three programs into dir. With race set they are built
// with the race detector, so e2e runs under -race check the binaries too.
func Build(ctx context.Context, dir string, race bool) (Binaries, error) {
	root, err := RepoRoot()
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{
		Server:    filepath.Join(dir, "rein-server"),
		Agentd:    filepath.Join(dir, "agentd"),
		DemoAgent: filepath.Join(dir, "demo-agent"),
	}
	pkgs := []struct{ out, mod, pkg string }{
		{b.Server, "server", "./cmd/rein-server"},
		{b.Agentd, "agentd", "./cmd/agentd"},
		{b.DemoAgent, "agentd", "./cmd/demo-agent"},
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for _, p := range pkgs {
		args := []string{"build", "-o", p.out}
		if race {
			args = append(args, raceFlags()...)
		}
		args = append(args, p.pkg)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = filepath.Join(root, p.mod)
		cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			return Binaries{}, fmt.Errorf("build %s: %w\n%s", p.pkg, err, out)
		}
	}
	return b, nil
}

// BuildHere compiles the main package in the working directory into dir
// as name and returns its path: the tests of the tools in e2e/cmd run the
// tool itself, as a user does.
func BuildHere(ctx context.Context, dir, name string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, ".")
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", name, err, b)
	}
	return out, nil
}
