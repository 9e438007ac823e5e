package httpapi

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/internal/openapi"
)

// TestRoutesMatchOpenAPI fails when the mux serves a route the OpenAPI
// document lacks, or the document describes one the mux does not serve.
func TestRoutesMatchOpenAPI(t *testing.T) {
	doc, err := openapi.Document()
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range d.Paths {
		for method := range item {
			if method != "parameters" {
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	a := New(nil, nil, Options{UI: http.NotFoundHandler(), Metrics: http.NotFoundHandler()})
	served := map[string]bool{}
	for _, p := range a.Routes() {
		if p == CatchAll {
			continue
		}
		served[docRoute(t, p, documented)] = true
	}
	diff := func(a, b map[string]bool) (out []string) {
		for k := range a {
			if !b[k] {
				out = append(out, k)
			}
		}
		sort.Strings(out)
		return out
	}
	if m := diff(served, documented); len(m) > 0 {
		t.Errorf("served but not in openapi.json: %v", m)
	}
	if m := diff(documented, served); len(m) > 0 {
		t.Errorf("in openapi.json but not served: %v", m)
	}
}

// docRoute maps a ServeMux pattern to the document's "METHOD /path": "/{$}"
// is "/", and a subtree "/ui/" is the documented path under it with one
// parameter.
func docRoute(t *testing.T, pattern string, documented map[string]bool) string {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		t.Fatalf("route %q has no method", pattern)
	}
	path = strings.TrimSuffix(path, "{$}")
	if path != "/" && strings.HasSuffix(path, "/") {
		for k := range documented {
			m, p, _ := strings.Cut(k, " ")
			rest, under := strings.CutPrefix(p, path)
			if m == method && under && strings.HasPrefix(rest, "{") && strings.HasSuffix(rest, "}") && !strings.Contains(rest, "/") {
				return k
			}
		}
		return pattern + " (subtree)"
	}
	return method + " " + path
}

// TestRequestHeadersDocumented: every request header a route's handler
// reads is a parameter of that operation in the OpenAPI document, so a
// client written from it can send them (Rein-Command-Cursor, which
// acknowledges commands, was once missing).
func TestRequestHeadersDocumented(t *testing.T) {
	reads := map[string][]string{
		"POST /sessions/{id}/commands": {protocol.HeaderIdempotencyKey},
		"GET /sessions/{id}/commands":  {protocol.HeaderInstance, "Last-Event-ID", protocol.HeaderSessionCreated},
		"POST /sessions/{id}/events":   {protocol.HeaderInstance, protocol.HeaderCommandCursor, protocol.HeaderSessionCreated},
		"GET /sessions/{id}/stream":    {"Last-Event-ID"},
		"GET /approvals/stream":        {"Last-Event-ID"},
	}
	doc, err := openapi.Document()
	if err != nil {
		t.Fatal(err)
	}
	type param struct {
		Ref  string `json:"$ref"`
		Name string `json:"name"`
		In   string `json:"in"`
	}
	var d struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Parameters map[string]param `json:"parameters"`
		} `json:"components"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	for route, headers := range reads {
		method, path, _ := strings.Cut(route, " ")
		var op struct {
			Parameters []param `json:"parameters"`
		}
		if err := json.Unmarshal(d.Paths[path][strings.ToLower(method)], &op); err != nil {
			t.Fatalf("%s: %v", route, err)
		}
		documented := map[string]bool{}
		for _, p := range op.Parameters {
			if ref, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
				p = d.Components.Parameters[ref]
			}
			if p.In == "header" {
				documented[http.CanonicalHeaderKey(p.Name)] = true
			}
		}
		for _, h := range headers {
			if !documented[http.CanonicalHeaderKey(h)] {
				t.Errorf("%s reads the header %s, which openapi.json does not list among its parameters", route, h)
			}
		}
	}
}
