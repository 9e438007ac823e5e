package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rein-ai/rein/agentd"
	"github.com/rein-ai/rein/protocol"
)

func TestUsageErrors(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("  \n"), 0o600)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no server", nil, []string{"--session", "s", "--", "true"}, "missing server URL"},
		{"no session", nil, []string{"--server", "http://x", "--", "true"}, "missing session id"},
		{"no command", nil, []string{"--server", "http://x", "--session", "s"}, "missing agent command"},
		{"env vars are read", map[string]string{"REIN_SERVER": "http://x", "REIN_SESSION_ID": "s"}, nil, "missing agent command"},
		{"env protocol", map[string]string{"REIN_PROTOCOL": "smoke"}, []string{"--server", "http://x", "--session", "s", "--", "true"}, "unknown protocol"},
		{"token and file", nil, []string{"--token", "a", "--token-file", tokenFile, "--", "true"}, "not both"},
		// The platform set one in the environment, the user typed the
		// other: the error names the variable, or it speaks of a flag
		// the user never gave.
		{"token from env and file", map[string]string{"REIN_TOKEN": "a"}, []string{"--token-file", tokenFile, "--", "true"}, "REIN_TOKEN, set in the environment"},
		{"token file from env and token", map[string]string{"REIN_TOKEN_FILE": tokenFile}, []string{"--token", "a", "--", "true"}, "REIN_TOKEN_FILE, set in the environment"},
		{"empty token file", nil, []string{"--token-file", tokenFile, "--", "true"}, "is empty"},
		{"bad duration", map[string]string{"REIN_ABORT_GRACE": "0s"}, []string{"--server", "http://x", "--session", "s", "--", "true"}, "--abort-grace must be positive"},
		{"bad log level", nil, []string{"--log-level", "loud", "--", "true"}, "--log-level"},
		// The agent command is never one of agentd's own: urfave/cli's help
		// command took "help" and "h" and printed agentd's help.
		{"an agent named help", nil, []string{"--server", "http://x", "--session", "s", "--state-dir", "", "--", "help"}, `exec: "help"`},
		{"an agent named h", nil, []string{"--server", "http://x", "--session", "s", "--state-dir", "", "--", "h"}, `exec: "h"`},
		// What urfave/cli refuses before agentd sees the flags is a usage
		// error too (README: exit 2 for bad flag values).
		{"unknown flag", nil, []string{"--server", "http://x", "--session", "s", "--bogus", "--", "true"}, "bogus"},
		{"unparsable flag value", nil, []string{"--server", "http://x", "--session", "s", "--kill-step", "soon", "--", "true"}, "kill-step"},
		{"unparsable env value", map[string]string{"REIN_BATCH_MAX": "many"}, []string{"--server", "http://x", "--session", "s", "--", "true"}, "REIN_BATCH_MAX"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			err := newApp(nil).RunContext(context.Background(), append([]string{"agentd"}, tc.args...))
			if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != exitUsage {
				t.Errorf("err = %v (exit %d), want usage error containing %q", err, exitCode(err), tc.want)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("x: %w", agentd.ErrUsage), exitUsage},
		{fmt.Errorf("session s was deleted: %w", protocol.Errorf(protocol.CodeNotFound, "404")), exitNotFound},
		{fmt.Errorf("session s was deleted and created again: %w", &protocol.Error{Code: protocol.CodeConflict, Message: "409", Stated: true}), exitNotFound},
		{fmt.Errorf("a proxy's page: %w", protocol.Errorf(protocol.CodeConflict, "409")), exitError},
		{fmt.Errorf("wrap: %w", protocol.Errorf(protocol.CodeUnauthorized, "401")), exitAuth},
		{fmt.Errorf("wrap: %w", protocol.Errorf(protocol.CodeForbidden, "403")), exitAuth},
		{fmt.Errorf("wrap: %w", protocol.Errorf(protocol.CodeSuperseded, "409")), exitSuperseded},
		{errors.New("flush events: 3 events not delivered"), exitError},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
