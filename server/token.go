package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"sync"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/store"
)

// Sandbox tokens. Each session has one: 32 random bytes, base64url (43
// characters). Only its SHA-256 is stored: a hash of a random 256-bit value
// cannot be reversed or guessed, so neither salt nor a slow hash would add
// anything, and a lookup stays one map access per request.

// newSandboxToken returns a fresh token and its hash.
func newSandboxToken() (string, [32]byte) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	return tok, sha256.Sum256([]byte(tok))
}

// accepts reports whether a request authenticated with the sandbox token
// hash cred (nil: the client token, or authentication off) may act on the
// session now. The HTTP layer checked it when the request arrived; the
// writer checks again when it applies the request, so a request that
// waited while the token was rotated is refused too.
func (e *entry) accepts(cred *[32]byte) bool {
	return cred == nil || e.sandbox != nil && subtle.ConstantTimeCompare(cred[:], e.sandbox[:]) == 1
}

func revokedErr(id string) error {
	return protocol.Errorf(protocol.CodeUnauthorized, "the sandbox token for session %q was rotated", id)
}

// tokenIndex finds the session of a sandbox token hash for the HTTP layer,
// which checks every sandbox request without a round trip to the writer.
// The writer updates it after each commit, so it never names a token the
// database does not hold.
type tokenIndex struct {
	mu        sync.RWMutex
	byHash    map[[32]byte]string
	bySession map[string][32]byte
}

func newTokenIndex() *tokenIndex {
	return &tokenIndex{byHash: map[[32]byte]string{}, bySession: map[string][32]byte{}}
}

func (x *tokenIndex) set(id string, h [32]byte) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.bySession[id]; ok {
		delete(x.byHash, old)
	}
	x.bySession[id] = h
	x.byHash[h] = id
}

func (x *tokenIndex) remove(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.bySession[id]; ok {
		delete(x.byHash, old)
		delete(x.bySession, id)
	}
}

func (x *tokenIndex) session(h [32]byte) (string, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	id, ok := x.byHash[h]
	return id, ok
}

// rotateReq replaces a session's sandbox token.
type rotateReq struct {
	id    string
	hash  [32]byte
	reply reply[struct{}]
}

func (r *rotateReq) apply(w *writer, g *group) {
	e := g.entry(r.id)
	if e == nil {
		r.reply.fail(g.missing(r.id))
		return
	}
	h := r.hash
	e.sandbox = &h
	g.ops = append(g.ops, store.SetSandboxToken{SessionID: r.id, Hash: h, At: w.opts.Now().UnixMilli()})
	failOn(g, r.reply)
	g.onCommit(func() {
		w.index.set(r.id, h)
		// The old token's command stream ends now. Its release marks the
		// session disconnected; the sandbox's reconnect with the old token
		// gets 401, which agentd treats as final.
		if hd := w.holders[r.id]; hd != nil {
			hd.sub.Close()
		}
		r.reply.ok(struct{}{})
	})
}

// RotateSandboxToken gives the session a new sandbox token and returns it.
// The old token stops working at once: requests holding it, even those
// already waiting, are refused, and the command stream it opened ends.
func (s *Server) RotateSandboxToken(ctx context.Context, id string) (string, error) {
	tok, h := newSandboxToken()
	r := newReply[struct{}]()
	if _, err := call(ctx, s.w, &rotateReq{id: id, hash: h, reply: r}, r); err != nil {
		return "", fmt.Errorf("rotate sandbox token session=%s: %w", id, err)
	}
	return tok, nil
}
