package httpapi

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// TicketTTL is how long a stream ticket may be used to open a stream. A
// ticket travels in a URL (EventSource cannot set headers), where proxies
// and browser history may keep it, so it is short-lived and only opens one
// read-only stream. It is checked when the stream opens; an open stream
// is not cut when its ticket expires.
const TicketTTL = time.Minute

// StreamTicket is the body of POST /sessions/:id/stream-ticket and POST
// /sessions/stream-ticket.
type StreamTicket = protocol.StreamTicket

type ticketKind string

const (
	ticketArtifacts ticketKind = "artifacts" // GET /sessions/:id/stream
	ticketSessions  ticketKind = "sessions"  // GET /sessions/stream
)

// ticketScope is the one stream a ticket opens.
type ticketScope struct {
	kind    ticketKind
	session string // "" for the session stream
}

// tickets signs and checks stream tickets: base64url(payload) "."
// base64url(HMAC-SHA256(key, payload)), payload
// "2|kind|session|expiresAtMs|createdAtMs", where createdAtMs is the
// createdAt of the session an artifact stream ticket was issued for (0
// for the session stream). Version 1 tickets, without it, are honoured
// (a server of the version before, sharing the key, issued them) and
// name no createdAt.
// The key is Options.TicketKey when set, so every server behind one
// address (a restarted one, or replicas behind a load balancer) honours
// the tickets of the others. Otherwise it is random per process: tickets
// live a minute, so one that does not survive a restart costs a client
// one more POST, and no secret needs configuring or rotating.
type tickets struct {
	key []byte
	now func() time.Time
}

// MinTicketKeyLen is the shortest Options.TicketKey accepted: the key is an
// HMAC-SHA256 key, and fewer bytes than the hash would weaken it.
const MinTicketKeyLen = 32

func newTickets(now func() time.Time, key []byte) *tickets {
	t := &tickets{now: now, key: key}
	if len(key) == 0 {
		t.key = make([]byte, 32)
		_, _ = rand.Read(t.key) // never fails (crypto/rand since Go 1.24)
	}
	return t
}

// issue signs a ticket for the stream s; created is the createdAt of its
// session (0 for the session stream).
func (t *tickets) issue(s ticketScope, created int64) StreamTicket {
	exp := t.now().Add(TicketTTL).UnixMilli()
	payload := fmt.Sprintf("2|%s|%s|%d|%d", s.kind, s.session, exp, created)
	enc := base64.RawURLEncoding
	return StreamTicket{Ticket: enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(t.mac(payload)), ExpiresAt: exp}
}

func (t *tickets) mac(payload string) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// ticketPayload is a genuine ticket's contents.
type ticketPayload struct {
	scope   ticketScope
	expires int64 // Unix ms
	created int64 // the session's createdAt; 0: none named
}

// parse returns a ticket's contents, or false when it is forged or
// malformed.
func (t *tickets) parse(ticket string) (ticketPayload, bool) {
	p64, m64, ok := strings.Cut(ticket, ".")
	if !ok {
		return ticketPayload{}, false
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	sig, err2 := base64.RawURLEncoding.DecodeString(m64)
	if err1 != nil || err2 != nil || !hmac.Equal(sig, t.mac(string(payload))) {
		return ticketPayload{}, false
	}
	parts := strings.Split(string(payload), "|")
	switch {
	case len(parts) == 4 && parts[0] == "1":
		parts = append(parts, "0")
	case len(parts) == 5 && parts[0] == "2":
	default:
		return ticketPayload{}, false
	}
	exp, err1 := strconv.ParseInt(parts[3], 10, 64)
	created, err2 := strconv.ParseInt(parts[4], 10, 64)
	if err1 != nil || err2 != nil {
		return ticketPayload{}, false
	}
	return ticketPayload{scope: ticketScope{kind: ticketKind(parts[1]), session: parts[2]}, expires: exp, created: created}, true
}

// verify checks a ticket: forged, malformed or expired is 401 (get a new
// one); a genuine ticket for another stream is 403.
func (t *tickets) verify(ticket string, want ticketScope) error {
	p, ok := t.parse(ticket)
	if !ok {
		return protocol.Errorf(protocol.CodeUnauthorized, "the stream ticket is not valid")
	}
	if p.scope != want {
		return protocol.Errorf(protocol.CodeForbidden, "the stream ticket is for another stream")
	}
	if t.now().UnixMilli() >= p.expires {
		return protocol.Errorf(protocol.CodeUnauthorized, "the stream ticket expired; get a new one")
	}
	return nil
}

// sessionCreated returns the createdAt a genuine artifact stream ticket
// for session id names (0 for none, or for a ticket that is not one). It
// is read with authentication off too, where tickets open nothing that
// needs opening, because they still say which session a browser's page
// followed: see artifactStream.
func (t *tickets) sessionCreated(ticket, id string) int64 {
	if ticket == "" {
		return 0
	}
	p, ok := t.parse(ticket)
	if !ok || p.scope != (ticketScope{kind: ticketArtifacts, session: id}) {
		return 0
	}
	return p.created
}
