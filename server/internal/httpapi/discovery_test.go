package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
)

func getDiscovery(t *testing.T, a *API) Discovery {
	t.Helper()
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest("GET", DiscoveryPath, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s = %d %s", DiscoveryPath, rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var d Discovery
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
	return d
}

func hasRoute(d Discovery, method, path string) bool {
	return slices.Contains(d.Routes, DiscoveryRoute{Method: method, Path: path, Auth: routeAuth(path, method)})
}

func routeAuth(path, method string) string {
	for _, kr := range knownRoutes {
		if kr.Method == method && kr.Path == path {
			return kr.Auth
		}
	}
	return "?"
}

// TestDiscovery: the manifest is public even with authentication on, says
// which auth mode is on, carries the protocol's limits and the server's
// options, and lists exactly the routes the router serves.
func TestDiscovery(t *testing.T) {
	ui := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	for _, tc := range []struct {
		name     string
		opts     Options
		mode     string
		webView  bool
		cors     bool
		boot     int64
		maxBytes int64
	}{
		{"auth off, defaults", Options{}, "none", false, false, 0, protocol.MaxBodyBytes},
		{"auth on, UI, CORS, server options", Options{
			APIToken: "0123456789abcdef0123", UI: ui, MaxBody: 4096, CORSOrigins: []string{"https://app.example.com"},
			Discovery: DiscoveryOptions{BootstrapTimeout: 3 * time.Minute, HeartbeatTimeout: 45 * time.Second, MaxArtifactsPerSession: 7, MaxSessionBytes: 1 << 20},
		}, "token", true, true, 180000, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := getDiscovery(t, New(&fake{}, nil, tc.opts))
			if d.Server.Name != "rein-server" || d.Server.Version == "" {
				t.Errorf("server %+v", d.Server)
			}
			if d.Protocol.Version != ProtocolVersion {
				t.Errorf("protocol %+v", d.Protocol)
			}
			if d.Auth.Mode != tc.mode || d.Auth.StreamTicketTTLMs != TicketTTL.Milliseconds() {
				t.Errorf("auth %+v; want mode %s", d.Auth, tc.mode)
			}
			if !slices.Equal(d.AgentProtocols, []string{"native", "acp", "claude", "codex"}) {
				t.Errorf("agentProtocols %v", d.AgentProtocols)
			}
			l := d.Limits
			if l.MaxBodyBytes != tc.maxBytes || l.MaxEventBytes != protocol.MaxEventBytes || l.MaxBatchEvents != protocol.MaxBatchEvents ||
				l.MaxTextBytes != protocol.MaxTextLen || l.MaxIDLength != protocol.MaxIDLen || l.MaxPlanEntries != protocol.MaxPlanEntries ||
				l.MaxPermissionOptions != protocol.MaxPermissionOptions || l.PingIntervalMs != 15000 || l.WriteTimeoutMs != 10000 || l.BodyTimeoutMs != 30000 {
				t.Errorf("limits %+v", l)
			}
			if l.BootstrapTimeoutMs != tc.boot {
				t.Errorf("bootstrapTimeoutMs %d; want %d", l.BootstrapTimeoutMs, tc.boot)
			}
			if tc.boot != 0 && (l.HeartbeatTimeoutMs != 45000 || l.MaxArtifactsPerSession != 7 || l.MaxSessionBytes != 1<<20) {
				t.Errorf("server limits %+v", l)
			}
			if d.Features["webView"] != tc.webView || d.Features["cors"] != tc.cors || !d.Features["streamTickets"] || !d.Features["commandAcks"] || !d.Features["queuedPrompts"] || !d.Features["idempotentCommands"] || d.Limits.MaxIdempotencyKeyLen != protocol.MaxIdempotencyKeyLen {
				t.Errorf("features %v", d.Features)
			}
			if !d.Features["openapi"] || d.Links["openapi"] != "/openapi.json" {
				t.Errorf("openapi feature %v link %q", d.Features["openapi"], d.Links["openapi"])
			}
			// Not built yet: reported absent, not promised.
			for _, f := range []string{"approvalsInbox", "turnHistory", "eventExport"} {
				if !d.Features[f] {
					t.Errorf("feature %s = false; want true (its route is registered)", f)
				}
			}
			for _, r := range [][2]string{{"GET", "/healthz"}, {"GET", DiscoveryPath}, {"POST", "/sessions/{id}"}, {"GET", "/sessions/{id}/stream"}, {"POST", "/sessions/{id}/events"}} {
				if !hasRoute(d, r[0], r[1]) {
					t.Errorf("route %s %s missing from %v", r[0], r[1], d.Routes)
				}
			}
			if hasRoute(d, "GET", "/") != tc.webView || (d.Links["webView"] != "") != tc.webView {
				t.Errorf("web view route/link with UI=%v: %v %v", tc.webView, d.Routes, d.Links)
			}
			if !hasRoute(d, "GET", "/approvals") || d.Links["health"] != "/healthz" {
				t.Errorf("routes %v links %v", d.Routes, d.Links)
			}
		})
	}
}

// TestDiscoveryRoutesAreServed: every route the manifest lists is one the
// router has registered, and a route registered later (as the OpenAPI
// document will be) appears with its link and feature.
func TestDiscoveryRoutesAreServed(t *testing.T) {
	a := New(&fake{}, nil, Options{UI: http.NotFoundHandler(), Metrics: http.NotFoundHandler()})
	d := getDiscovery(t, a)
	if len(d.Routes) != len(knownRoutes) {
		t.Errorf("%d routes listed; want %d: %v", len(d.Routes), len(knownRoutes), d.Routes)
	}
	for _, r := range d.Routes {
		if !a.serves(r.Method, r.Path) {
			t.Errorf("listed route %s %s is not served", r.Method, r.Path)
		}
	}
	// Without the web view mounted, "/" is not listed; once a route is
	// registered it appears with its link and feature.
	a = New(&fake{}, nil, Options{})
	if d = getDiscovery(t, a); hasRoute(d, "GET", "/") || d.Features["webView"] {
		t.Errorf("no UI: routes %v features %v", d.Routes, d.Features)
	}
	a.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {})
	d = getDiscovery(t, a)
	if !hasRoute(d, "GET", "/") || !d.Features["webView"] || d.Links["webView"] != "/" {
		t.Errorf("after registering /: routes %v links %v features %v", d.Routes, d.Links, d.Features)
	}
}

// TestDiscoveryIsPublic: with authentication on it needs no token, and
// it is GET only.
func TestDiscoveryIsPublic(t *testing.T) {
	a := New(&fake{}, nil, Options{APIToken: "0123456789abcdef0123"})
	getDiscovery(t, a)
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest("POST", DiscoveryPath, nil))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("POST %s without a token = %d; want 401 (the API's catch-all)", DiscoveryPath, rec.Code)
	}
}
