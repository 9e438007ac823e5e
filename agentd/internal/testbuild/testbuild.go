// Package testbuild builds the programs a package's tests run (the demo
// agent, agentd itself) the way the test binary was built: with the race
// detector when go test has it. The programs are then checked for races
// as the tests are, and their packages are the ones go test compiled for
// the test binaries already, so the build is little more than a link.
// Built without it, they needed the whole standard library and their
// dependencies compiled a second time, without instrumentation: with an
// empty build cache that was about half a minute of the unit tests' time
// on 2 cores, two test binaries compiling the same demo agent at once.
package testbuild

import (
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
)

// Race reports whether the running binary was built with -race.
func Race() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// Build runs go build -o out pkg in dir, with -race when Race. With it, it
// also sets GORACE atexit_sleep_ms=0 in this process's environment, which
// the programs inherit: a race binary otherwise sleeps a second at every
// exit (for goroutines still running to report), and the tests stop many
// of them against timeouts of a second or two. A race found while a
// program runs is reported all the same.
func Build(dir, out, pkg string) error {
	args := []string{"build", "-o", out}
	if Race() {
		args = append(args, "-race")
		if v := os.Getenv("GORACE"); !strings.Contains(v, "atexit_sleep_ms") {
			os.Setenv("GORACE", strings.TrimSpace(v+" atexit_sleep_ms=0"))
		}
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(cmd.Args[1:], " "), err, b)
	}
	return nil
}
