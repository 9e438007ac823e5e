package hub

import (
	"errors"
	"strings"
	"sync"
)

// Default queue bounds per subscriber. A client that falls this far behind
// (what it has not taken yet reaches either bound when a publish comes)
// is dropped and resumes from its Last-Event-ID, which is cheaper for
// everyone than buffering without bound. A publish is taken whole
// whatever its own size (see push).
const (
	DefaultQueueLen   = 4096
	DefaultQueueBytes = 8 << 20
)

// Why a subscriber ended.
var (
	ErrOverflow = errors.New("hub: subscriber fell behind and was dropped")
	ErrClosed   = errors.New("hub: subscription closed")
)

// Message is one change record published to a topic: what changed, in
// the protocol's JSON, not yet framed for any wire. The adapter that sends
// it frames it (Wire), once per message however many subscribers it has.
type Message struct {
	// Event names the change (protocol.SSEArtifactCreated,
	// protocol.SSESessionUpdated, protocol.SSECommand, ...).
	Event string
	// Data is the change's JSON payload (an artifact, an artifact update, a
	// session record, a command), shared by all subscribers: never modify
	// it.
	Data []byte
	// Seq orders messages of one topic (an artifact revision, a command
	// id) so a subscriber can skip what its snapshot already covered, and
	// is the message's id on the wire; 0 when the topic has no order.
	Seq int64
	// Key is what subscriber filters look at (a session's project).
	Key string

	once sync.Once
	wire []byte
}

// Wire returns the message as frame encodes it for the wire. frame runs
// once per message, in whichever subscriber asks first; every other
// subscriber gets the same bytes (shared: never modify them), so fanning a
// message out to n subscribers costs one encoding, not n. Every caller of
// one message must pass the same frame.
func (m *Message) Wire(frame func(*Message) []byte) []byte {
	m.once.Do(func() { m.wire = frame(m) })
	return m.wire
}

// Hub routes messages to the subscribers of a topic. The zero value is not
// usable; call New.
type Hub struct {
	maxLen, maxBytes int

	mu     sync.Mutex
	topics map[string]map[*Subscriber]struct{}
	closed bool
}

// New returns a hub whose subscribers are dropped when a publish finds
// maxLen messages or maxBytes bytes of Data queued that they have not
// taken (values <= 0 select the defaults).
func New(maxLen, maxBytes int) *Hub {
	if maxLen <= 0 {
		maxLen = DefaultQueueLen
	}
	if maxBytes <= 0 {
		maxBytes = DefaultQueueBytes
	}
	return &Hub{maxLen: maxLen, maxBytes: maxBytes, topics: map[string]map[*Subscriber]struct{}{}}
}

// Subscriber receives the messages of one topic that pass its filter.
type Subscriber struct {
	hub    *Hub
	topic  string
	filter func(*Message) bool

	wake chan struct{}

	mu     sync.Mutex
	queue  []*Message
	bytes  int
	err    error
	ending bool
}

// Subscribe adds a subscriber to topic. filter, when not nil, picks the
// messages it wants. Subscribing to a closed hub returns a subscriber that
// has already ended.
func (h *Hub) Subscribe(topic string, filter func(*Message) bool) *Subscriber {
	s := &Subscriber{hub: h, topic: topic, filter: filter, wake: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.end(ErrClosed)
		return s
	}
	subs := h.topics[topic]
	if subs == nil {
		subs = map[*Subscriber]struct{}{}
		h.topics[topic] = subs
	}
	subs[s] = struct{}{}
	return s
}

// Publish queues msgs for every subscriber of topic. It never blocks on a
// subscriber: one whose queue is already full is dropped (see push).
func (h *Hub) Publish(topic string, msgs ...*Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.topics[topic] {
		if !s.push(msgs) {
			h.removeLocked(s)
			s.end(ErrOverflow)
		}
	}
}

// CloseTopic ends every subscriber of topic (a deleted session's streams).
func (h *Hub) CloseTopic(topic string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.topics[topic] {
		s.end(ErrClosed)
	}
	delete(h.topics, topic)
}

// Close ends every subscriber; later subscribers end at once.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, subs := range h.topics {
		for s := range subs {
			s.end(ErrClosed)
		}
	}
	h.topics = map[string]map[*Subscriber]struct{}{}
}

// Topics returns the topics starting with prefix that have subscribers,
// in no particular order.
func (h *Hub) Topics(prefix string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for t := range h.topics {
		if strings.HasPrefix(t, prefix) {
			out = append(out, t)
		}
	}
	return out
}

// Len returns the number of subscribers of topic.
func (h *Hub) Len(topic string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.topics[topic])
}

func (h *Hub) removeLocked(s *Subscriber) {
	if subs := h.topics[s.topic]; subs != nil {
		delete(subs, s)
		if len(subs) == 0 {
			delete(h.topics, s.topic)
		}
	}
}

// push appends msgs; false means the subscriber has fallen behind: what
// it has not taken yet already reaches the queue's bounds.
//
// The bounds are checked against what was queued before this publish,
// never against the publish's own size: one publish can be larger than
// the bounds (a replica relaying the changes it missed at once, an
// artifact grown past them relayed whole), and checking it counted
// against them dropped every subscriber, however fast it read, and again
// after every resume. Its messages are held by the publisher and shared
// by every subscriber, so a subscriber still holds at most the bounds
// plus one publish.
func (s *Subscriber) push(msgs []*Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ending {
		return true
	}
	added := false
	for _, m := range msgs {
		if s.filter != nil && !s.filter(m) {
			continue
		}
		if !added && (len(s.queue) >= s.hub.maxLen || s.bytes >= s.hub.maxBytes) {
			return false
		}
		s.queue = append(s.queue, m)
		s.bytes += len(m.Data)
		added = true
	}
	if added {
		s.Wake()
	}
	return true
}

// end marks s ended with err and releases its queue.
func (s *Subscriber) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ending {
		return
	}
	s.ending = true
	s.err = err
	s.queue, s.bytes = nil, 0
	s.Wake() // a reader waiting on Ready learns of the end too
}

// Wake makes Ready receive a value even with nothing queued, so one that
// waits only on Ready can be woken for something else (a timer, its
// client leaving): it then finds Take empty and looks at what woke it.
func (s *Subscriber) Wake() {
	select {
	case s.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Ready receives a value when messages are waiting, when the subscriber
// has ended, or after Wake; call Take then (and Err, when it is empty).
func (s *Subscriber) Ready() <-chan struct{} { return s.wake }

// Take removes and returns every queued message, oldest first.
func (s *Subscriber) Take() []*Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue, s.bytes = nil, 0
	return q
}

// Err says why the subscriber ended (nil while it has not): dropped, its
// topic closed, the hub closed, or Close called. Ready wakes a reader for
// the end as for a message.
func (s *Subscriber) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close unsubscribes. It is safe to call more than once and concurrently
// with Publish.
func (s *Subscriber) Close() {
	s.hub.mu.Lock()
	s.hub.removeLocked(s)
	s.hub.mu.Unlock()
	s.end(ErrClosed)
}
