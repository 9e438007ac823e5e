package httpapi

import (
	"bytes"
	"net/http"
	"strconv"

	"github.com/rein-ai/rein/protocol"
)

// Page sizes of GET /sessions/:id/events.
const (
	defaultEventsLimit = 500
	maxEventsLimit     = 5000
)

func (a *API) listTurns(w http.ResponseWriter, r *http.Request, id string) {
	list, err := a.svc.Turns(r.Context(), id)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	if list == nil {
		list = []protocol.Turn{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (a *API) getTurn(w http.ResponseWriter, r *http.Request, id string) {
	turnID := r.PathValue("turnId")
	if !protocol.ValidEventID(turnID) {
		writeError(w, r, a.log, protocol.Errorf(protocol.CodeInvalid, "turnId: 1-%d characters of [A-Za-z0-9._:-]", protocol.MaxIDLen))
		return
	}
	t, err := a.svc.Turn(r.Context(), id, turnID)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// eventLog serves GET /sessions/:id/events?after=POS&limit=N. The body is
// written by hand so each event is the stored JSON byte for byte:
// encoding/json would compact it and escape <, > and &, and the turn
// digests are over the stored bytes.
func (a *API) eventLog(w http.ResponseWriter, r *http.Request, id string) {
	after, limit, err := pageParams(r, defaultEventsLimit, maxEventsLimit)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	list, more, created, err := a.svc.EventLog(r.Context(), id, after, int(limit))
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	var b bytes.Buffer
	b.WriteString(`{"events":[`)
	for i, e := range list {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"pos":`)
		b.WriteString(strconv.FormatInt(e.Pos, 10))
		b.WriteString(`,"instance":`)
		b.WriteString(strconv.Quote(e.Instance)) // [A-Za-z0-9._:-] or "": the same in JSON
		b.WriteString(`,"agentSeq":`)
		b.WriteString(strconv.FormatInt(e.AgentSeq, 10))
		b.WriteString(`,"event":`)
		b.Write(e.Event)
		b.WriteByte('}')
	}
	b.WriteString(`],"next":`)
	if more && len(list) > 0 {
		b.WriteString(strconv.FormatInt(list[len(list)-1].Pos, 10))
	} else {
		b.WriteString("null")
	}
	b.WriteString("}\n")
	w.Header().Set("Content-Type", "application/json")
	// Which session the page is of (see artifacts): positions restart at
	// 1 in a session created again under the id.
	w.Header().Set(protocol.HeaderSessionCreated, strconv.FormatInt(created, 10))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
}
