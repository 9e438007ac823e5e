//go:build linux

package server

import (
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/disktest"
)

// A sandbox that goes on heartbeating while the disk is full gets 503 for
// each heartbeat, but it showed it is alive: once writes work again its
// session is still live, not marked disconnected for a heartbeat timeout
// that never passed without a heartbeat. The failed commits forgot each
// heartbeat, and the retried timeout committed disconnected the moment
// the disk had room.
func TestHeartbeatsWhileTheDiskIsFull(t *testing.T) {
	t.Parallel()
	dir := disktest.Mount(t, "8m")
	synctest.Test(t, func(t *testing.T) {
		w, st := bubbleWriter(t, filepath.Join(dir, "rein.db"), Options{HeartbeatTimeout: 45 * time.Second})
		cr := newReply[protocol.Session]()
		_, h := newSandboxToken()
		mustCall(t, w, &createReq{id: "a", sandbox: h, reply: cr}, cr)
		or := newReply[openedStream]()
		opened := mustCall(t, w, &openStreamReq{id: "a", from: Sandbox{Instance: "i1"}, reply: or}, or)
		defer opened.sub.Close()

		disktest.TakeAll(t, dir)
		for range 6 { // 90 s of heartbeats every 15 s
			time.Sleep(15 * time.Second)
			er := newReply[protocol.EventsAccepted]()
			_, err := call(t.Context(), w, &eventsReq{id: "a", from: Sandbox{Instance: "i1"}, events: []protocol.Event{{Type: protocol.EventHeartbeat}}, reply: er}, er)
			if protocol.CodeOf(err) != protocol.CodeUnavailable {
				t.Fatalf("a heartbeat on a full disk: %v; want unavailable", err)
			}
		}
		if err := os.Remove(filepath.Join(dir, "ballast")); err != nil {
			t.Fatal(err)
		}
		// Less than the timeout after the last heartbeat: the writer's
		// timer and probe run meanwhile, and writes work again.
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if w.failing.Load() != nil {
			t.Fatal("test setup: writes still fail after the disk has room")
		}
		if got := statusOf(t, st, "a"); got != protocol.StatusLive {
			t.Fatalf("after heartbeats on a full disk: a is %s; want live (its sandbox never stopped heartbeating)", got)
		}
	})
}
