package hub

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func msg(i int) *Message { return &Message{Data: []byte(fmt.Sprintf("m%d\n", i)), Seq: int64(i)} }

// A subscriber that never reads is dropped once its queue is full, while
// a reading subscriber gets every message, and Publish never waits.
func TestStalledSubscriberIsDropped(t *testing.T) {
	h := New(8, 0)
	stalled := h.Subscribe("t", nil)
	reader := h.Subscribe("t", nil)

	const n = 1000
	var got []int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range reader.Ready() {
			msgs := reader.Take()
			if len(msgs) == 0 && reader.Err() != nil {
				t.Errorf("reader dropped: %v", reader.Err())
				return
			}
			for _, m := range msgs {
				got = append(got, m.Seq)
			}
			if len(got) == n {
				return
			}
		}
	}()
	for i := 1; i <= n; i++ {
		// The publisher must never block, so it paces itself only on the
		// reader it wants to keep (a real publisher does not wait at all;
		// the test waits so the reader's queue of 8 never overflows).
		h.Publish("t", msg(i))
		waitDrained(reader)
	}
	wg.Wait()
	if stalled.Err() == nil {
		t.Fatal("stalled subscriber was not dropped")
	}
	if !errors.Is(stalled.Err(), ErrOverflow) {
		t.Fatalf("stalled.Err() = %v; want ErrOverflow", stalled.Err())
	}
	if len(got) != n {
		t.Fatalf("reader got %d messages; want %d", len(got), n)
	}
	for i, s := range got {
		if s != int64(i+1) {
			t.Fatalf("message %d has seq %d: out of order", i, s)
		}
	}
	if h.Len("t") != 1 {
		t.Fatalf("topic has %d subscribers; want 1", h.Len("t"))
	}
}

// waitDrained spins until s's queue is empty (the reader goroutine took it).
func waitDrained(s *Subscriber) {
	for {
		s.mu.Lock()
		n := len(s.queue)
		s.mu.Unlock()
		if n == 0 || s.Err() != nil {
			return
		}
		runtime.Gosched()
	}
}

// Publish to subscribers that never read completes: nothing blocks, and
// each subscriber's memory stays bounded by its queue limits.
func TestPublishNeverBlocks(t *testing.T) {
	h := New(0, 1<<10)
	subs := make([]*Subscriber, 10)
	for i := range subs {
		subs[i] = h.Subscribe("t", nil)
	}
	big := &Message{Data: make([]byte, 100)}
	for range 10000 {
		h.Publish("t", big)
	}
	for i, s := range subs {
		if s.Err() == nil {
			t.Fatalf("subscriber %d over its byte bound was not dropped", i)
		}
		if q := s.Take(); len(q) != 0 {
			t.Fatalf("dropped subscriber still holds %d messages", len(q))
		}
	}
}

// A publish larger than the bounds, in messages or bytes, is taken whole
// by a subscriber that has taken everything before it: a fast reader is
// not dropped for what it was sent at once. One that has not taken it
// when the next publish comes has fallen behind.
func TestPublishLargerThanTheBounds(t *testing.T) {
	h := New(2, 1<<10)
	s := h.Subscribe("t", nil)
	big := &Message{Data: make([]byte, 4<<10), Seq: 4}
	h.Publish("t", msg(1), msg(2), msg(3))
	if got := s.Take(); len(got) != 3 || s.Err() != nil {
		t.Fatalf("three messages into a queue of two: took %d, Err() = %v; want all three, not dropped", len(got), s.Err())
	}
	h.Publish("t", big)
	if got := s.Take(); len(got) != 1 || s.Err() != nil {
		t.Fatalf("4 KiB into a queue of 1 KiB: took %d, Err() = %v; want it, not dropped", len(got), s.Err())
	}
	h.Publish("t", big)
	h.Publish("t", msg(5))
	if !errors.Is(s.Err(), ErrOverflow) || len(s.Take()) != 0 {
		t.Fatalf("a publish on 4 KiB not taken: Err() = %v; want dropped, the queue released", s.Err())
	}
}

func TestFilterWakeAndClose(t *testing.T) {
	h := New(0, 0)
	p := h.Subscribe("s", func(m *Message) bool { return m.Key == "p" })
	all := h.Subscribe("s", nil)
	other := h.Subscribe("other", nil)
	h.Publish("s", &Message{Key: "q", Data: []byte("1")}, &Message{Key: "p", Data: []byte("2")})
	h.Publish("s", &Message{Key: "p", Data: []byte("3")})
	<-p.Ready()
	if got := p.Take(); len(got) != 2 || string(got[0].Data) != "2" || string(got[1].Data) != "3" {
		t.Fatalf("filtered subscriber got %v", got)
	}
	select {
	case <-p.Ready():
		t.Fatal("a second wake-up is pending after Take")
	default:
	}
	if got := all.Take(); len(got) != 3 {
		t.Fatalf("unfiltered subscriber got %d messages; want 3", len(got))
	}
	// Ending is synchronous: a subscriber has ended once the call that
	// ended it returns.
	h.CloseTopic("s")
	if p.Err() == nil || all.Err() == nil {
		t.Fatal("CloseTopic left a subscriber of its topic running")
	}
	if other.Err() != nil {
		t.Fatal("CloseTopic ended another topic's subscriber")
	}
	h.Close()
	if other.Err() == nil {
		t.Fatal("Close left a subscriber running")
	}
	late := h.Subscribe("s", nil)
	if !errors.Is(late.Err(), ErrClosed) {
		t.Fatalf("late.Err() = %v; want ErrClosed", late.Err())
	}
	late.Close() // idempotent
}

// A reader that waits on Ready alone (the stream's live loop) is woken by
// Wake with nothing queued and by the subscriber's end, dropped or
// closed; either way Take is then empty and Err says which.
func TestReadyWakesOnWakeAndEnd(t *testing.T) {
	ready := func(s *Subscriber) bool {
		select {
		case <-s.Ready():
			return true
		default:
			return false
		}
	}
	h := New(1, 0)
	s := h.Subscribe("t", nil)
	if ready(s) {
		t.Fatal("Ready before anything happened")
	}
	s.Wake()
	s.Wake() // one wake-up pending at most: Wake never blocks
	if !ready(s) || len(s.Take()) != 0 || s.Err() != nil {
		t.Fatal("Wake: want one wake-up, nothing queued, no error")
	}
	if ready(s) {
		t.Fatal("a second wake-up after two Wakes")
	}
	h.Publish("t", msg(1))
	h.Publish("t", msg(2)) // the one not taken fills the queue: dropped
	if !ready(s) || len(s.Take()) != 0 || !errors.Is(s.Err(), ErrOverflow) {
		t.Fatalf("dropped: want a wake-up, the queue released and ErrOverflow; Err() = %v", s.Err())
	}
	c := h.Subscribe("t", nil)
	c.Close()
	if !ready(c) || !errors.Is(c.Err(), ErrClosed) {
		t.Fatalf("closed: want a wake-up and ErrClosed; Err() = %v", c.Err())
	}
}

// Wire frames a message once however many subscribers ask, concurrently,
// and every one of them gets the same bytes.
func TestWireFramesOnce(t *testing.T) {
	m := &Message{Event: "e", Data: []byte(`{"a":1}`), Seq: 7}
	var calls atomic.Int32
	frame := func(m *Message) []byte {
		calls.Add(1)
		return []byte(fmt.Sprintf("id: %d\nevent: %s\ndata: %s\n\n", m.Seq, m.Event, m.Data))
	}
	const subscribers = 16
	got := make([][]byte, subscribers)
	var wg sync.WaitGroup
	for i := range subscribers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = m.Wire(frame)
		}()
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("frame ran %d times; want 1", n)
	}
	for i, b := range got {
		if string(b) != "id: 7\nevent: e\ndata: {\"a\":1}\n\n" || &b[0] != &got[0][0] {
			t.Fatalf("subscriber %d got %q (shared: %v)", i, b, &b[0] == &got[0][0])
		}
	}
}
