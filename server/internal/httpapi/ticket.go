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
// base64url(HMAC-SHA256(key, payload)), payload "1|kind|session|expiresAtMs".
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

func (t *tickets) issue(s ticketScope) StreamTicket {
	exp := t.now().Add(TicketTTL).UnixMilli()
	payload := fmt.Sprintf("1|%s|%s|%d", s.kind, s.session, exp)
	enc := base64.RawURLEncoding
	return StreamTicket{Ticket: enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(t.mac(payload)), ExpiresAt: exp}
}

func (t *tickets) mac(payload string) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// verify checks a ticket: forged, malformed or expired is 401 (get a new
// one); a genuine ticket for another stream is 403.
func (t *tickets) verify(ticket string, want ticketScope) error {
	invalid := protocol.Errorf(protocol.CodeUnauthorized, "the stream ticket is not valid")
	p64, m64, ok := strings.Cut(ticket, ".")
	if !ok {
		return invalid
	}
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	sig, err2 := base64.RawURLEncoding.DecodeString(m64)
	if err1 != nil || err2 != nil || !hmac.Equal(sig, t.mac(string(payload))) {
		return invalid
	}
	parts := strings.Split(string(payload), "|")
	if len(parts) != 4 || parts[0] != "1" {
		return invalid
	}
	exp, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil {
		return invalid
	}
	if got := (ticketScope{kind: ticketKind(parts[1]), session: parts[2]}); got != want {
		return protocol.Errorf(protocol.CodeForbidden, "the stream ticket is for another stream")
	}
	if t.now().UnixMilli() >= exp {
		return protocol.Errorf(protocol.CodeUnauthorized, "the stream ticket expired; get a new one")
	}
	return nil
}
