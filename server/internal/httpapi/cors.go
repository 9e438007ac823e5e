package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/rein-ai/rein/protocol"
)

// CORS: only the configured origins get Access-Control-Allow-Origin, and
// only their preflights are answered. No credentials mode: the API
// authenticates with bearer tokens a script sets, never with cookies a
// browser would attach on its own, so a page from another origin can do
// nothing it could not do without a browser.
const (
	corsMethods = "GET, POST, DELETE"
	corsHeaders = "Authorization, Content-Type, Last-Event-ID, " + protocol.HeaderInstance + ", " + protocol.HeaderIdempotencyKey
	// corsExposed are the answer headers beyond the CORS-safelisted ones
	// a page may read: whether a command's 202 was a replay, and which
	// session an artifact stream is of (a page following it with fetch
	// tells by it a session created again under the id from the one it
	// followed).
	corsExposed = protocol.HeaderIdempotentReplayed + ", " + protocol.HeaderSessionCreated
	corsMaxAge  = "600"
)

// CheckOrigin validates a --cors-origin value and returns it normalised
// (no trailing slash): scheme "http" or "https", a host, no path, query or
// credentials. Browsers send Origin exactly so; "*" is not accepted.
func CheckOrigin(origin string) (string, error) {
	o := strings.TrimSuffix(origin, "/")
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("cors origin %q: want scheme://host[:port], e.g. https://app.example.com", origin)
	}
	// The origin is also trusted to write cross-origin (API.crossOrigin):
	// New relies on every value passed here being one it takes.
	if err := http.NewCrossOriginProtection().AddTrustedOrigin(o); err != nil {
		return "", fmt.Errorf("cors origin %q: %w", origin, err)
	}
	return o, nil
}

// cors adds the CORS headers for allowed origins and answers preflights.
// It runs before authentication: browsers send preflights without the
// Authorization header, and a 401 must carry the headers for the page to
// read it.
func (a *API) cors(w http.ResponseWriter, r *http.Request) (done bool) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	allowed := a.origins[origin]
	if len(a.origins) > 0 {
		w.Header().Add("Vary", "Origin")
	}
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if !allowed {
		if preflight {
			writeError(w, r, a.log, protocol.Errorf(protocol.CodeForbidden, "origin %q is not allowed (see --cors-origin)", origin))
			return true
		}
		return false // no CORS headers: the browser keeps the answer from the page
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	if !preflight {
		h.Set("Access-Control-Expose-Headers", corsExposed)
		return false
	}
	h.Set("Access-Control-Allow-Methods", corsMethods)
	h.Set("Access-Control-Allow-Headers", corsHeaders)
	h.Set("Access-Control-Max-Age", corsMaxAge)
	w.WriteHeader(http.StatusNoContent)
	return true
}
