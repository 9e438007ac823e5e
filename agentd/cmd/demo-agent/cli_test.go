package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestHelpVersionArgs runs the built binary: --help prints help and exits
// 0 without running the agent (no agent_started on stdout), --version the
// version, and any other argument is a usage error (exit 2).
func TestHelpVersionArgs(t *testing.T) {
	for _, tc := range []struct {
		arg, want string
		code      int
	}{
		{"--help", "DEMO_AGENT_DELAY", 0},
		{"-h", "Usage:", 0},
		{"--version", "demo-agent version dev", 0},
		{"--bogus", "", 2},
	} {
		cmd := exec.Command(bin, tc.arg)
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d (stderr %q)", tc.arg, code, tc.code, errOut.String())
		}
		if !strings.Contains(out.String(), tc.want) || strings.Contains(out.String(), "agent_started") {
			t.Errorf("%s: stdout %q, want it to contain %q and no events", tc.arg, out.String(), tc.want)
		}
		if tc.code == 2 && !strings.Contains(errOut.String(), "--help") {
			t.Errorf("%s: stderr %q does not point to --help", tc.arg, errOut.String())
		}
	}
}

// TestVersionFromBuild is what -ldflags "-X main.buildVersion=..." sets.
func TestVersionFromBuild(t *testing.T) {
	old := buildVersion
	buildVersion = "v1.2.3"
	defer func() { buildVersion = old }()
	if got := versionString(); got != "v1.2.3" {
		t.Fatalf("versionString() = %q", got)
	}
}
