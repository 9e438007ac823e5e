package agentd_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/agentd/internal/fulldisk"
	"github.com/rein-ai/rein/agentd/internal/outbox"
	"github.com/rein-ai/rein/agentd/internal/uploader"
	"github.com/rein-ai/rein/protocol"
)

func noSpaceNotice(level protocol.NoticeLevel) func(protocol.Event) bool {
	return func(ev protocol.Event) bool {
		return ev.Type == protocol.EventNotice && ev.NoticeCode == uploader.NoticeNoSpace && ev.Level == level
	}
}

// TestFullStateDiskHoldsTheAgentsOutput: the state dir's disk fills up
// (here a 1 MiB tmpfs that a file fills) before a turn that prints 100 KB.
// The agent's output waits, the session is told why, and once the space
// is back the whole output arrives and the turn completes. The old agentd
// stopped the adapter on the first refused write, killed the agent,
// restarted it in a loop and exited at its next heartbeat, with the
// turn's output lost.
func TestFullStateDiskHoldsTheAgentsOutput(t *testing.T) {
	state := fulldisk.Mount(t, 1<<20)
	srv := fakeserver.New(t, "s1")
	addr := freeAddr(t)
	metrics := "http://" + addr + "/metrics"
	// Heartbeats are small enough to fit in room the output waits for
	// more of: they must not end the wait, or the session would be told
	// "room again" and "no space" over and over.
	start(t, srv, agentd.Options{StateDir: state, MetricsAddr: addr, HeartbeatInterval: 50 * time.Millisecond})
	waitStarted(t, srv, 1)
	free := fulldisk.Fill(t, state)
	// One line of 100,000 bytes: demo-agent streams it in chunks of 32
	// KiB, more than the outbox can free by removing what the server
	// acknowledged, so it waits for space only others can free.
	const size = 100000
	srv.Prompt(`run: head -c 100000 /dev/zero | tr '\0' x`)
	evs := srv.Wait(t, "the notice that the disk is full", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, noSpaceNotice(protocol.LevelWarning))
	})
	if fakeserver.Count(evs, protocol.EventTurnCompleted) > 0 {
		t.Fatalf("the turn completed on a full disk:\n%s", fakeserver.Format(withoutHeartbeats(evs)))
	}
	// The disk stays full for ten heartbeats.
	time.Sleep(500 * time.Millisecond)
	if m := scrape(t, metrics); m["rein_agentd_outbox_blocked"] != 1 {
		t.Errorf("rein_agentd_outbox_blocked = %v while the disk is full; want 1", m["rein_agentd_outbox_blocked"])
	}
	free()
	evs = srv.Wait(t, "the turn's end and the notice that the wait is over", func(evs []protocol.Event) bool {
		return fakeserver.Count(evs, protocol.EventTurnCompleted) > 0 && fakeserver.Has(evs, noSpaceNotice(protocol.LevelInfo))
	})
	var out strings.Builder
	var last int64
	warned := -1
	for i, ev := range evs {
		if ev.AgentSeq <= last {
			t.Fatalf("event %d has agentSeq %d after %d\n%s", i, ev.AgentSeq, last, fakeserver.Format(withoutHeartbeats(evs)))
		}
		last = ev.AgentSeq
		if ev.Type == protocol.EventToolOutputDelta {
			out.WriteString(ev.Delta)
		}
		if noSpaceNotice(protocol.LevelWarning)(ev) {
			warned = i
			if !strings.Contains(ev.Message, state) {
				t.Errorf("the notice does not name the state dir %s: %q", state, ev.Message)
			}
		}
	}
	if out.String() != strings.Repeat("x", size) {
		t.Fatalf("the tool's output arrived as %d bytes, want the %d printed", out.Len(), size)
	}
	if m := scrape(t, metrics); m["rein_agentd_outbox_blocked"] != 0 {
		t.Errorf("rein_agentd_outbox_blocked = %v after the wait; want 0", m["rein_agentd_outbox_blocked"])
	}
	if resumed := slices.IndexFunc(evs, noSpaceNotice(protocol.LevelInfo)); resumed < warned {
		t.Errorf("the notice that the wait is over (event %d) comes before the warning (event %d)", resumed, warned)
	}
	warnings, infos := 0, 0
	for _, ev := range evs {
		if noSpaceNotice(protocol.LevelWarning)(ev) {
			warnings++
		}
		if noSpaceNotice(protocol.LevelInfo)(ev) {
			infos++
		}
	}
	if warnings != 1 || infos != 1 {
		t.Errorf("%d notices that the disk is full and %d that it has room again; want one of each for one wait", warnings, infos)
	}
}

// TestReadOnlyStateDiskHoldsTheAgent: the state dir's disk turns
// read-only (ext4 after an error) before a turn. The old agentd stopped
// the adapter, killed the agent in a loop and exited at its next
// heartbeat; now the agent's output waits, the session is told why (with
// the refusal), heartbeats keep it live, the gauge says the outbox is
// blocked, and a SIGTERM still stops agentd cleanly.
func TestReadOnlyStateDiskHoldsTheAgent(t *testing.T) {
	state, fail := fulldisk.Breakable(t)
	srv := fakeserver.New(t, "s1")
	addr := freeAddr(t)
	d := start(t, srv, agentd.Options{StateDir: state, MetricsAddr: addr, HeartbeatInterval: 50 * time.Millisecond})
	waitStarted(t, srv, 1)
	fail()
	srv.Prompt("run: echo never")
	evs := srv.Wait(t, "the notice that the disk refuses writes", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, func(ev protocol.Event) bool {
			return ev.Type == protocol.EventNotice && ev.NoticeCode == uploader.NoticeUnwritable && ev.Level == protocol.LevelWarning &&
				strings.Contains(ev.Message, "read-only file system") && strings.Contains(ev.Message, state)
		})
	})
	if fakeserver.Has(evs, isType(protocol.EventUserMessage)) {
		t.Fatalf("the prompt's events reached the server though they could not be logged:\n%s", fakeserver.Format(withoutHeartbeats(evs)))
	}
	heartbeats := fakeserver.Count(evs, protocol.EventHeartbeat)
	srv.Wait(t, "heartbeats while the disk refuses writes", func(evs []protocol.Event) bool {
		return fakeserver.Count(evs, protocol.EventHeartbeat) >= heartbeats+3
	})
	if m := scrape(t, "http://"+addr+"/metrics"); m["rein_agentd_outbox_blocked"] != 1 {
		t.Errorf("rein_agentd_outbox_blocked = %v; want 1", m["rein_agentd_outbox_blocked"])
	}
	if err := d.stop(); err != nil {
		t.Fatalf("agentd stopped on a read-only state disk with %v; want a clean stop", err)
	}
}

// TestStopWhileStartingOnAFullDisk: agentd starts on a state dir that
// leaves a turn open, on a disk already full with nothing of its own to
// free, so its first event (closing that turn as interrupted) waits for
// room before any agent runs. A SIGTERM then must still stop it: the
// wait gave up only in the supervisor's stop of a running agent, and
// here Run never returned.
func TestStopWhileStartingOnAFullDisk(t *testing.T) {
	state := fulldisk.Mount(t, 1<<20)
	dir := filepath.Join(state, "s1")
	ob, err := outbox.Open(outbox.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Append(context.Background(), protocol.Event{Type: protocol.EventTurnStarted, TurnID: "t9", Source: protocol.SourceUser}); err != nil {
		t.Fatal(err)
	}
	recs, err := ob.Next(10, 1<<20)
	if err != nil || len(recs) != 1 {
		t.Fatalf("Next = %d records, %v", len(recs), err)
	}
	if err := ob.Ack(recs[0]); err != nil {
		t.Fatal(err)
	}
	ob.Close()
	// The server had it all: no segment is left to free.
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	for _, s := range segs {
		if err := os.Remove(s); err != nil {
			t.Fatal(err)
		}
	}
	fulldisk.Fill(t, state)
	srv := fakeserver.New(t, "s1")
	d := start(t, srv, agentd.Options{StateDir: state})
	evs := srv.Wait(t, "the notice that the disk is full", func(evs []protocol.Event) bool {
		return fakeserver.Has(evs, noSpaceNotice(protocol.LevelWarning))
	})
	if fakeserver.Has(evs, isType(protocol.EventTurnCompleted)) {
		t.Fatalf("the open turn was closed on a full disk:\n%s", fakeserver.Format(evs))
	}
	if err := d.stop(); err != nil {
		t.Fatalf("agentd stopped on a full state disk at start with %v; want a clean stop", err)
	}
}
