package httpapi

import (
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/rein-ai/rein/protocol"
)

// History page sizes of GET /approvals/history.
const (
	defaultHistoryLimit = 100
	maxHistoryLimit     = 500
)

// projectParam returns the ?project= filter ("" for all), validated.
func projectParam(r *http.Request) (string, error) {
	p, _, err := queryParam(r, "project")
	if err != nil || p == "" {
		return "", err
	}
	if err := protocol.ValidateProject(p); err != nil {
		return "", err
	}
	return p, nil
}

// queryParam returns the query parameter name and whether it was given.
// It reads the raw query itself: url.Values drops a pair whose value does
// not decode (a malformed %-escape, a ';'), which then read as absent, so
// ?after=%zz answered the whole artifact list instead of a page and
// ?project=%zz every project's requests. Given twice, or not decodable,
// it is refused: what the client meant is not known, and taking the
// first, or nothing, answered 200 for what it did not ask.
func queryParam(r *http.Request, name string) (v string, given bool, err error) {
	n := 0
	for pair := range strings.SplitSeq(r.URL.RawQuery, "&") {
		k, raw, _ := strings.Cut(pair, "=")
		if k, kerr := url.QueryUnescape(k); kerr != nil || k != name {
			continue
		}
		n++
		dec, verr := url.QueryUnescape(raw)
		if verr != nil {
			return "", true, protocol.Errorf(protocol.CodeInvalid, "%s: %q does not decode as a URL query value (a %% starts an escape like %%2F)", name, raw)
		}
		v = dec
	}
	if n > 1 {
		return "", true, protocol.Errorf(protocol.CodeInvalid, "%s: given %d times; give it once", name, n)
	}
	return v, n == 1, nil
}

// intParam reads a non-negative integer query parameter; def when absent.
// Given empty (?limit=) it is not an integer, not absent.
func intParam(r *http.Request, name string, def, maxV int64) (int64, error) {
	v, given, err := queryParam(r, name)
	if err != nil || !given {
		return def, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if errors.Is(err, strconv.ErrRange) && v[0] != '-' {
		// A non-negative integer, only too large: say so, not that it is
		// not one.
		if maxV > 0 {
			return 0, protocol.Errorf(protocol.CodeInvalid, "%s: at most %d, got %q", name, maxV, v)
		}
		return 0, protocol.Errorf(protocol.CodeInvalid, "%s: at most %d, got %q", name, int64(math.MaxInt64), v)
	}
	if err != nil || n < 0 {
		return 0, protocol.Errorf(protocol.CodeInvalid, "%s: must be a non-negative integer, got %q", name, v)
	}
	if maxV > 0 && n > maxV {
		return 0, protocol.Errorf(protocol.CodeInvalid, "%s: at most %d, got %d", name, maxV, n)
	}
	return n, nil
}

// pageParams reads a page request: ?after= (default 0) and ?limit=
// (default def, 1 to maxV).
func pageParams(r *http.Request, def, maxV int64) (after, limit int64, err error) {
	if after, err = intParam(r, "after", 0, 0); err != nil {
		return 0, 0, err
	}
	limit, err = intParam(r, "limit", def, maxV)
	if err == nil && limit == 0 {
		err = protocol.Errorf(protocol.CodeInvalid, "limit: must be at least 1")
	}
	return after, limit, err
}

func (a *API) listApprovals(w http.ResponseWriter, r *http.Request) {
	project, err := projectParam(r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	list, err := a.svc.Approvals(r.Context(), project)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	if list == nil {
		list = []protocol.Approval{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (a *API) approvalHistory(w http.ResponseWriter, r *http.Request) {
	project, err := projectParam(r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	limit, err := intParam(r, "limit", defaultHistoryLimit, maxHistoryLimit)
	if err == nil && limit == 0 {
		err = protocol.Errorf(protocol.CodeInvalid, "limit: must be at least 1")
	}
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	list, err := a.svc.ApprovalHistory(r.Context(), project, int(limit))
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	if list == nil {
		list = []protocol.Decision{}
	}
	writeJSON(w, http.StatusOK, list)
}

// approvalStream serves GET /approvals/stream. Like the session stream it
// takes the client token or a session stream ticket (both already show
// every session).
func (a *API) approvalStream(w http.ResponseWriter, r *http.Request) {
	project, err := projectParam(r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	after, resume := lastEventID(r)
	a.serveStream(w, r, func() (*Stream, error) { return a.svc.ApprovalStream(r.Context(), project, after, resume) })
}
