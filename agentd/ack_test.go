package agentd_test

import (
	"strconv"
	"testing"

	"github.com/rein-ai/rein/agentd"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

// TestCursorHeader: agentd tells the server which commands the agent took
// on its event posts (protocol.HeaderCommandCursor), with a state dir and
// without one (the cursor is then kept in memory).
func TestCursorHeader(t *testing.T) {
	for _, tt := range []struct {
		name  string
		state bool
	}{{"state dir", true}, {"in memory", false}} {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeserver.New(t, "s1")
			opts := agentd.Options{}
			if tt.state {
				opts.StateDir = t.TempDir()
			}
			start(t, srv, opts)
			waitStarted(t, srv, 1)
			id := srv.Prompt("hello")
			want := strconv.FormatInt(id, 10)
			srv.WaitState(t, "an event post acknowledging the prompt", func() bool {
				for _, r := range srv.PostRequests() {
					if r.Header.Get(protocol.HeaderCommandCursor) == want {
						return true
					}
				}
				return false
			})
			// The cursor never runs ahead of what was taken: no post
			// before the prompt was sent acknowledged it.
			for _, r := range srv.PostRequests() {
				if v := r.Header.Get(protocol.HeaderCommandCursor); v != "" && v != want && v != strconv.FormatInt(id-1, 10) {
					t.Errorf("post acknowledged %q; want %s or %d", v, want, id-1)
				}
			}
		})
	}
}
