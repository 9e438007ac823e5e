package httpapi

import (
	"encoding/base64"
	"fmt"
	"testing"
	"time"
)

// A ticket of the format before createdAt was added (version 1), issued
// by a server of the version before that shares the ticket key (a
// rolling upgrade), still opens its stream and names no createdAt; one of
// today's names the createdAt it was issued with, for its session only.
func TestTicketVersions(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	tk := newTickets(func() time.Time { return now }, []byte("0123456789abcdef0123456789abcdef"))
	scope := ticketScope{kind: ticketArtifacts, session: "a"}

	payload := fmt.Sprintf("1|%s|%s|%d", scope.kind, scope.session, now.Add(TicketTTL).UnixMilli())
	old := base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(tk.mac(payload))
	if err := tk.verify(old, scope); err != nil {
		t.Errorf("version 1 ticket: %v; want it honoured", err)
	}
	if c := tk.sessionCreated(old, "a"); c != 0 {
		t.Errorf("version 1 ticket names createdAt %d; want none (0)", c)
	}

	cur := tk.issue(scope, 42).Ticket
	if err := tk.verify(cur, scope); err != nil {
		t.Errorf("ticket: %v", err)
	}
	for _, tt := range []struct {
		ticket, session string
		want            int64
	}{
		{cur, "a", 42},
		{cur, "b", 0},
		{tk.issue(ticketScope{kind: ticketSessions}, 0).Ticket, "a", 0},
		{cur[:len(cur)-2], "a", 0},
		{"", "a", 0},
	} {
		if c := tk.sessionCreated(tt.ticket, tt.session); c != tt.want {
			t.Errorf("sessionCreated(%.20q…, %s) = %d; want %d", tt.ticket, tt.session, c, tt.want)
		}
	}
}
