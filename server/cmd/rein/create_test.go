package main

import (
	"strings"
	"testing"

	"github.com/rein-ai/rein/server/app"
)

// TestCreateSaysBootstrapTimeout: rein create warns that the session is
// removed if no sandbox connects in time, with or without a token file.
func TestCreateSaysBootstrapTimeout(t *testing.T) {
	s := startServer(t, app.Options{})
	for _, args := range [][]string{{"create", "b1"}, {"create", "b2", "--sandbox-token-file", t.TempDir() + "/b2.token"}} {
		out := mustRein(t, s.URL(), args...)
		if !strings.HasSuffix(out, "If no sandbox connects within the server's bootstrap timeout (--bootstrap-timeout, default 3m), the session is removed.\n") {
			t.Errorf("rein %v printed\n%s", args, out)
		}
	}
}
