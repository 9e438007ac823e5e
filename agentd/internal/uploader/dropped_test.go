package uploader

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// refuseMarked is a handler that refuses, as invalid, every batch that
// holds "poison" (and, with notices, agentd's notices of dropped events).
func refuseMarked(notices bool) func(int, []byte) (int, bool, time.Duration) {
	return func(_ int, body []byte) (int, bool, time.Duration) {
		if bytes.Contains(body, []byte("poison")) || notices && bytes.Contains(body, []byte(NoticeDropped)) {
			return 400, false, 0
		}
		return 202, true, 0
	}
}

// enqueueRefusals queues a delta "a", n deltas the server refuses, a
// delta "b" (a refused type stored again), and one more refused delta.
func enqueueRefusals(t *testing.T, u *Uploader, n int) {
	t.Helper()
	delta := func(s string) protocol.Event { return protocol.Event{Type: protocol.EventTextDelta, Delta: s} }
	evs := []protocol.Event{delta("a")}
	for i := range n {
		evs = append(evs, delta(fmt.Sprintf("poison %d", i+1)))
	}
	evs = append(evs, delta("b"), delta("poison again"))
	for _, ev := range evs {
		if err := u.Enqueue(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

// The transcript is told of dropped events: a notice for the first, one
// per 100 after it, what is left once a refused type is stored again,
// and a notice of its own for the next refusal after that. Every event
// is stored or dropped in order: a notice comes after what it tells of,
// with an agentSeq above it, so the server takes none of the events
// after a drop for retries.
func TestDroppedEventsAreTold(t *testing.T) {
	for _, withOutbox := range []bool{false, true} {
		t.Run(fmt.Sprintf("outbox=%v", withOutbox), func(t *testing.T) {
			dir := t.TempDir()
			synctest.Test(t, func(t *testing.T) {
				f := &fakeServer{handler: refuseMarked(false)}
				opts := Options{}
				if withOutbox {
					opts.Outbox = openOutbox(t, dir)
				}
				u := newTest(f, opts)
				stop := run(u)
				enqueueRefusals(t, u, 250)
				if err := stop(); err != nil {
					t.Fatalf("Run = %v", err)
				}
				stored, seqs := f.storedSeqs()
				var deltas, notices []string
				var last, b int64
				for i, ev := range stored {
					if seqs[i] <= last {
						t.Fatalf("stored agentSeqs %v: not increasing", seqs)
					}
					last = seqs[i]
					if ev.Type != protocol.EventNotice {
						if ev.Delta == "b" {
							b = ev.AgentSeq
						}
						deltas = append(deltas, ev.Delta)
						continue
					}
					if ev.NoticeCode != NoticeDropped || ev.Level != protocol.LevelWarning {
						t.Fatalf("notice %+v: want a warning coded %s", ev, NoticeDropped)
					}
					if !strings.Contains(ev.Message, "not in the transcript") || !strings.Contains(ev.Message, "injected") {
						t.Errorf("notice %q: want it to say the events are not in the transcript and the server's reason", ev.Message)
					}
					// A notice comes after what it tells of.
					var named int64
					if _, after, ok := strings.Cut(ev.Message, "(agentSeq "); ok {
						fmt.Sscanf(after, "%d", &named)
					}
					if named == 0 || named >= ev.AgentSeq {
						t.Errorf("notice at agentSeq %d names agentSeq %d: %q", ev.AgentSeq, named, ev.Message)
					}
					switch msg := ev.Message; {
					case strings.Contains(msg, "refused a text_delta event (agentSeq "):
						notices = append(notices, "first")
					case strings.Contains(msg, "refused 100 more events (text_delta)"):
						notices = append(notices, "100 more")
					case strings.Contains(msg, "refused 49 more events (text_delta)") && strings.Contains(msg, fmt.Sprintf("stored again from agentSeq %d.", b)):
						notices = append(notices, "49 more, stored again")
					default:
						notices = append(notices, msg)
					}
				}
				if got := strings.Join(deltas, ","); got != "a,b" {
					t.Fatalf("stored deltas %s; want a,b", got)
				}
				if got, want := strings.Join(notices, "\n"), "first\n100 more\n100 more\n49 more, stored again\nfirst"; got != want {
					t.Fatalf("notices:\n%s\nwant:\n%s", got, want)
				}
				if n := u.Stats().Dropped; n != 251 {
					t.Fatalf("dropped %d; want 251", n)
				}
			})
		})
	}
}

// A notice of dropped events that the server refuses too (a session past
// its cap's reserve) is dropped without a notice of its own: each would be
// refused in turn, for ever.
func TestRefusedDroppedNoticeEndsThere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeServer{handler: refuseMarked(true)}
		u := newTest(f, Options{})
		stop := run(u)
		// The agent's own notice, refused, is not told either.
		if err := u.Enqueue(t.Context(), protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelInfo, Message: "poison notice"}); err != nil {
			t.Fatal(err)
		}
		enqueueRefusals(t, u, 150)
		if err := stop(); err != nil {
			t.Fatalf("Run = %v", err)
		}
		stored, _ := f.storedSeqs()
		if len(stored) != 2 || stored[0].Delta != "a" || stored[1].Delta != "b" {
			t.Fatalf("stored %+v; want a and b", stored)
		}
		// The agent's notice, 151 deltas, and agentd's notices of the
		// first, of 100 more, of 49 more once b was stored, and of the
		// last delta.
		if n := u.Stats().Dropped; n != 1+151+4 {
			t.Fatalf("dropped %d; want 156", n)
		}
		bodies, _, _ := f.snapshot()
		told := map[int64]string{}
		for _, body := range bodies {
			evs, err := protocol.DecodeEvents(body)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				if ev.NoticeCode == NoticeDropped {
					told[ev.AgentSeq] = ev.Message
				}
			}
		}
		for _, msg := range told {
			if strings.Contains(msg, "a notice event") || strings.Contains(msg, "(notice") {
				t.Errorf("agentd told of a refused notice: %q", msg)
			}
		}
		if len(told) != 4 {
			t.Errorf("agentd posted %d notices of dropped events; want 4: %v", len(told), told)
		}
	})
}
