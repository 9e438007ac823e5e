package server

import "context"

// Hooks for the external tests (package server_test), which run the
// domain behind the real HTTP adapter and store and need to reach inside
// now and then.

// DropState drops a session's cached reducer state, as eviction or a
// restart would, and returns once the writer has done it.
func DropState(s *Server, id string) {
	r := newReply[struct{}]()
	_, _ = call(context.Background(), s.w, &dropStateReq{id: id, reply: r}, r)
}

type dropStateReq struct {
	id    string
	reply reply[struct{}]
}

func (r *dropStateReq) apply(w *writer, _ *group) {
	delete(w.states, r.id)
	r.reply.ok(struct{}{})
}

// Subscribers returns how many streams follow the session's artifacts.
func Subscribers(s *Server, id string) int { return s.hub.Len(artifactTopic(id)) }
