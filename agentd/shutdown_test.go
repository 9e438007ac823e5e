package agentd_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd"
	"github.com/rein-ai/rein/agentd/internal/fakeserver"
	"github.com/rein-ai/rein/protocol"
)

// A shutdown while the server is unreachable and the queue is full (in
// memory, or the outbox at --outbox-max-bytes): the agent's output waits
// on the queue, and the agent, stopped, can write no more. agentd must
// still stop within its shutdown budget (--shutdown-grace, the kill
// steps, --flush-timeout), rather than wait for the server as long as it
// takes, and say what it could not deliver.
func TestShutdownWithTheServerDownAndTheQueueFull(t *testing.T) {
	// An agent that writes without end and ignores its input.
	agent := []string{"sh", "-c", `while :; do echo '{"type":"notice","level":"info","message":"busy"}'; done`}
	down := func(srv *fakeserver.Server) <-chan struct{} {
		refused := make(chan struct{})
		var once sync.Once
		srv.EventsFault = func(int) (int, bool) {
			once.Do(func() { close(refused) })
			return 503, false
		}
		return refused
	}
	waitFor := func(c <-chan struct{}) {
		select {
		case <-c:
		case <-time.After(fakeserver.WaitTimeout):
			t.Fatal("no post reached the server")
		}
	}
	opts := agentd.Options{
		Command:        agent,
		AgentStartWait: 50 * time.Millisecond,
		ShutdownGrace:  100 * time.Millisecond,
		KillStep:       100 * time.Millisecond,
		FlushTimeout:   100 * time.Millisecond,
	}

	// Without a state dir: the events left in the queue are reported
	// not delivered. meanwhile runs once a post was refused.
	inMemory := func(t *testing.T, queue int, command []string, meanwhile func(*fakeserver.Server)) {
		srv := fakeserver.New(t, "s1")
		refused := down(srv)
		o := opts
		o.QueueSize = queue
		if command != nil {
			o.Command = command
		}
		d := start(t, srv, o)
		waitFor(refused)
		if meanwhile != nil {
			meanwhile(srv)
		}
		err := d.stop()
		if err == nil || !strings.Contains(err.Error(), "not delivered") {
			t.Fatalf("Run = %v, want the events not delivered", err)
		}
	}

	t.Run("in memory", func(t *testing.T) {
		inMemory(t, 2, nil, nil) // the queue of 2 is full behind the refused post
	})

	// The command stream reconnects while the queue is full: agentd
	// re-posts agent_started from the loop that carries the shutdown
	// through, and that post must not hold it while the server is down.
	t.Run("reconnected while full", func(t *testing.T) {
		const queue = 2
		reposts := make(chan int, 16)
		agentd.OnRepost(t, func(queued int) {
			select {
			case reposts <- queued:
			default:
			}
		})
		inMemory(t, queue, nil, func(srv *fakeserver.Server) {
			srv.WaitState(t, "the command stream connected", func() bool { return len(srv.StreamRequests()) == 1 && srv.OpenStreams() == 1 })
			// Until the loop re-posts agent_started with the queue full:
			// it then waits for room, which never comes (the uploader
			// takes no more from the queue while its post is refused),
			// when the shutdown comes. A re-post that found room (the
			// agent had not filled the queue yet) ends, and the next
			// reconnect brings another.
			for range 100 {
				srv.DropStreams()
				select {
				case n := <-reposts:
					if n >= queue {
						return
					}
				case <-time.After(fakeserver.WaitTimeout):
					t.Fatal("agentd did not re-post agent_started after the reconnect")
				}
			}
			t.Fatal("agentd never re-posted agent_started with the queue full")
		})
	})

	// The queue is full and the agent, quiet, waits: it exits at once
	// when asked, nothing of its own waits on the queue, and agentd's
	// own last event (agent_exited) finds no room. It waits no longer
	// than the agent's last output would have.
	t.Run("quiet agent", func(t *testing.T) {
		// agent_started (after AgentStartWait) is the first post, held
		// by the retries; the notice, written once that post was
		// refused, then fills the queue of 1.
		release := newFIFO(t, t.TempDir())
		queued := make(chan struct{})
		var once sync.Once
		agentd.OnQueued(t, func(ev protocol.Event) {
			if ev.Type == protocol.EventNotice && ev.Message == "one" {
				once.Do(func() { close(queued) })
			}
		})
		quiet := []string{"sh", "-c", `read x < "$0"; echo '{"type":"notice","level":"info","message":"one"}'; exec sleep 60`, release}
		inMemory(t, 1, quiet, func(*fakeserver.Server) {
			releaseFIFO(t, release)
			select {
			case <-queued:
			case <-time.After(fakeserver.WaitTimeout):
				t.Fatal("the agent's notice was not queued")
			}
		})
	})

	t.Run("outbox", func(t *testing.T) {
		srv := fakeserver.New(t, "s1")
		refused := down(srv)
		state := t.TempDir()
		o := opts
		o.StateDir, o.OutboxMaxBytes = state, 4<<20
		d := start(t, srv, o)
		waitFor(refused)
		// Full: less room left than one more line's frame.
		full := false
		for range 3000 {
			segs, _ := filepath.Glob(filepath.Join(state, srv.Session, "*.seg"))
			var n int64
			for _, s := range segs {
				if fi, err := os.Stat(s); err == nil {
					n += fi.Size()
				}
			}
			if full = n > 4<<20-200; full {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !full {
			t.Fatal("the outbox did not fill")
		}
		// Kept for the next start: a clean stop.
		if err := d.stop(); err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	})
}
