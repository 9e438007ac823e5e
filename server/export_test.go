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
	w.dropState(r.id)
	r.reply.ok(struct{}{})
}

// CachedStates returns the sessions whose reducer state is cached and the
// estimated bytes they hold.
func CachedStates(s *Server) (map[string]bool, int64) {
	r := newReply[cached]()
	c, _ := call(context.Background(), s.w, &cachedReq{reply: r}, r)
	return c.ids, c.bytes
}

type cached struct {
	ids   map[string]bool
	bytes int64
}

type cachedReq struct{ reply reply[cached] }

func (r *cachedReq) apply(w *writer, _ *group) {
	c := cached{ids: map[string]bool{}, bytes: w.stateBytes}
	for id := range w.states {
		c.ids[id] = true
	}
	r.reply.ok(c)
}

// Subscribers returns how many streams follow the session's artifacts.
func Subscribers(s *Server, id string) int { return s.hub.Len(artifactTopic(id)) }
