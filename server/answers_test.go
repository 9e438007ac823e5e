package server_test

import (
	"net/http"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/app"
)

// A sandbox instance that takes the session over ends the open turn as
// interrupted, and with it the requests the turn's agent made: they leave
// the inbox, and an answer to one is refused.
func TestPermissionClosedByTakeover(t *testing.T) {
	s := start(t, app.Options{})
	c := newClient(t, s)
	c.must(http.StatusCreated, nil, "POST", "/sessions/a", nil)
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "i1")
	c.must(http.StatusAccepted, nil, "POST", "/sessions/a/events", permissionEvents("t1", "tc1", "r1", 1), protocol.HeaderInstance, "i1")
	c.stream("/sessions/a/commands", protocol.HeaderInstance, "i2")
	var list []protocol.Approval
	c.must(http.StatusOK, &list, "GET", "/approvals", nil)
	if len(list) != 0 {
		t.Fatalf("GET /approvals after the takeover: %+v; want none", list)
	}
	if rec := c.session("a"); rec.PendingApprovals != 0 {
		t.Fatalf("pendingApprovals %d after the takeover; want 0", rec.PendingApprovals)
	}
}
