package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/rein-ai/rein/protocol"
)

// access is who may call a route when authentication is on.
type access int

const (
	// public routes need nothing (health checks).
	public access = iota
	// client routes need the client token.
	client
	// sandbox routes take the client token (an operator debugging) or the
	// sandbox token of the session in the path.
	sandbox
	// artifactStream takes the client token or a stream ticket for the
	// session in the path: EventSource cannot set headers.
	artifactStream
	// sessionStream takes the client token or a session stream ticket.
	sessionStream
)

// credKey carries, in a request's context, the hash of the sandbox token
// that authenticated it.
type credKey struct{}

// SandboxCredential returns the SHA-256 of the sandbox token that
// authenticated the request, if a sandbox token did. The service checks it
// again when it applies the request, so a token rotated while the request
// waited is refused too.
func SandboxCredential(ctx context.Context) ([32]byte, bool) {
	h, ok := ctx.Value(credKey{}).([32]byte)
	return h, ok
}

// guard wraps a route's handler with its access rule. A cross-site write
// or a request by DNS rebinding is refused first (fromBrowserPage). With
// authentication off (no client token) every other request passes: New
// only allows that on a loopback address, or when the operator insisted.
func (a *API) guard(acc access, h http.HandlerFunc) http.HandlerFunc {
	if acc == public {
		return h // GET only: a browser keeps their answers from other sites' pages
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if msg, err := a.fromBrowserPage(r, acc); err != nil {
			a.refuse(w, r, msg, err)
			return
		}
		if a.clientHash == nil {
			h(w, r)
			return
		}
		ctx, err := a.authorize(r, acc)
		if err != nil {
			a.refuse(w, r, "token refused", err)
			return
		}
		h(w, r.WithContext(ctx))
	}
}

// crossSite refuses a write (any method but GET, HEAD and OPTIONS) that a
// browser sent for a page on another origin than the server's own (the web
// view) or a --cors-origin one, as Sec-Fetch-Site or, from browsers that
// do not send it, Origin against Host tell. Such a request needs no
// preflight when it is a form or a text/plain fetch; the browser hides
// the answer from the page, but only after the server acted on it. With
// authentication off (the loopback default) nothing else would stop a
// page on any site the user visits from queueing a prompt the agent runs,
// forging events, or deleting a session; with it on, the page holds no
// token, but the refusal costs nothing. Clients that are not browsers send
// neither header and pass.
//
// A sandbox route is checked as a write whatever its method: opening the
// command stream (GET) takes it over from the agentd holding it, which is
// then superseded and stops for good, and the commands sent next go to
// the new holder. A page sends that GET without a preflight (an <img>, a
// no-cors fetch, an EventSource), and only agentd, never a page, opens it.
func (a *API) crossSite(r *http.Request, acc access) error {
	check := r
	if acc == sandbox && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		check = r.WithContext(r.Context()) // a shallow copy, to check as a POST
		check.Method = http.MethodPost
	}
	if a.crossOrigin.Check(check) == nil {
		return nil
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		origin = "another site"
	}
	return protocol.Errorf(protocol.CodeForbidden, "cross-origin %s from %q refused: a page may write here only from this server's own origin or a --cors-origin one", r.Method, origin)
}

// localHost reports whether a Host header names this machine as only its
// own user would: an IP address, "localhost", or a name under
// ".localhost" (RFC 6761: resolved to the loopback, never through DNS).
// Any other name reached a loopback port through a DNS answer, which a
// page on that name controls: DNS rebinding makes the page's requests to
// it same-origin, so it could read and drive every session of a server
// without a token. "" (an HTTP/1.0 client) is not a browser.
func localHost(host string) bool {
	if host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// fromBrowserPage refuses what a page on another site may send through
// the user's browser: with LocalHostsOnly a request whose Host is not
// local (localHost), and a cross-site write (crossSite). msg is what to
// log. Not inlined, like refuse, to keep guard's frame small.
//
//go:noinline
func (a *API) fromBrowserPage(r *http.Request, acc access) (msg string, err error) {
	if a.opts.LocalHostsOnly && !localHost(r.Host) {
		return "request for another host refused", protocol.Errorf(protocol.CodeForbidden,
			"Host %q is not this machine: without an API token the server answers only requests to localhost or an IP address (a page on another name reaching it would be DNS rebinding)", r.Host)
	}
	if err := a.crossSite(r, acc); err != nil {
		return "cross-origin write refused", err
	}
	return "", nil
}

// refuse logs (as msg) and answers a request guard refused. It is a function
// of its own, not inline, so guard's frame stays small: streams idle
// below it (see record).
//
//go:noinline
func (a *API) refuse(w http.ResponseWriter, r *http.Request, msg string, err error) {
	// Which route and why, never the token: an operator asking why an
	// agent cannot connect finds it here.
	attrs := []slog.Attr{slog.String("route", r.Pattern)}
	if id := r.PathValue("id"); id != "" {
		attrs = append(attrs, slog.String("session", id))
	}
	attrs = append(attrs, slog.String("code", string(protocol.CodeOf(err))), slog.String("remote", r.RemoteAddr))
	a.log.LogAttrs(r.Context(), slog.LevelWarn, msg, attrs...)
	if protocol.CodeOf(err) == protocol.CodeUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rein"`)
	}
	writeError(w, r, a.log, err)
}

// authorize decides a request. The bearer token is hashed once; the hash
// is compared with the client token's in constant time and looked up among
// the sandbox tokens (a map keyed by a hash of a 256-bit random token
// reveals nothing through its timing). Error messages never echo a token.
func (a *API) authorize(r *http.Request, acc access) (context.Context, error) {
	ctx := r.Context()
	tok, present, err := bearer(r)
	if err != nil {
		return nil, err
	}
	if !present {
		if t := r.URL.Query().Get("ticket"); t != "" && (acc == artifactStream || acc == sessionStream) {
			want := ticketScope{kind: ticketSessions}
			if acc == artifactStream {
				want = ticketScope{kind: ticketArtifacts, session: r.PathValue("id")}
			}
			return ctx, a.tickets.verify(t, want)
		}
		return nil, protocol.Errorf(protocol.CodeUnauthorized, "missing Authorization: Bearer <token>")
	}
	h := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(h[:], a.clientHash) == 1 {
		return ctx, nil
	}
	id, ok, err := a.svc.SandboxSession(ctx, h, r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if ok {
		if acc == sandbox && id == r.PathValue("id") {
			return context.WithValue(ctx, credKey{}, h), nil
		}
		return nil, protocol.Errorf(protocol.CodeForbidden, "a sandbox token may only open its own session's command stream and post its events")
	}
	return nil, protocol.Errorf(protocol.CodeUnauthorized, "the bearer token is not valid (wrong, rotated, or its session was deleted)")
}

// bearer returns the token of an "Authorization: Bearer <token>" header;
// present is false when there is no Authorization header at all.
func bearer(r *http.Request) (tok string, present bool, err error) {
	v := r.Header.Get("Authorization")
	if v == "" {
		return "", false, nil
	}
	scheme, tok, _ := strings.Cut(v, " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", true, protocol.Errorf(protocol.CodeUnauthorized, "the Authorization header must be \"Bearer <token>\"")
	}
	return tok, true, nil
}
