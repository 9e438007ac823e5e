package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/rein-ai/rein/server/client"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The OpenAPI document is checked against the real server: every request
// below goes to a running rein-server binary, and the validator
// (getkin/kin-openapi's openapi3filter, which validates OpenAPI 3.1
// documents' schemas as JSON Schema 2020-12 with santhosh-tekuri/jsonschema)
// checks the request and the answer against the document the same server
// serves at GET /openapi.json. SSE streams are read and
// each event's data is checked against the schema the document names for
// that event (x-rein-events). At the end every documented route and
// status (but 503, which a healthy server does not give) must have been
// seen, so the document cannot promise what the server does not do.

// oaChecker sends requests and validates them.
type oaChecker struct {
	t    *testing.T
	ctx  context.Context
	base string
	// router finds a request's operation in the loaded document.
	router routers.Router
	doc    map[string]any
	// events maps "METHOD /path" to its SSE event schemas by event name.
	events map[string]map[string]*jsonschema.Schema

	mu   sync.Mutex
	seen map[string]bool // "METHOD /path status"
}

func newOAChecker(t *testing.T, ctx context.Context, base string) *oaChecker {
	t.Helper()
	c := &oaChecker{t: t, ctx: ctx, base: base, seen: map[string]bool{}, events: map[string]map[string]*jsonschema.Schema{}}
	res, err := http.Get(base + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d %v", res.StatusCode, err)
	}
	loader := openapi3.NewLoader()
	spec, err := loader.LoadFromData(body)
	if err != nil {
		t.Fatalf("load /openapi.json: %v", err)
	}
	if !spec.IsOpenAPI31OrLater() {
		t.Fatalf("/openapi.json says openapi %q, want 3.1", spec.OpenAPI)
	}
	if err := spec.Validate(loader.Context); err != nil {
		t.Fatalf("/openapi.json is not a valid OpenAPI 3.1 document: %v", err)
	}
	// openapi3filter cannot decode a parameter whose schema has a "not" at
	// its top (a TODO of its decoder), as SessionId has; such a parameter
	// is given the same schema with "not": X written "if": X, "then":
	// false, which JSON Schema 2020-12 defines to accept the same values.
	// Bodies and answers are checked against the schemas as served.
	notless(spec)
	// The document names the default address; the test's server listens
	// elsewhere, and the router matches requests against the servers.
	spec.Servers = openapi3.Servers{{URL: base}}
	if c.router, err = legacy.NewRouter(spec); err != nil {
		t.Fatalf("route /openapi.json: %v", err)
	}
	if err := json.Unmarshal(body, &c.doc); err != nil {
		t.Fatal(err)
	}
	// The SSE event schemas, compiled from the served document.
	comp := jsonschema.NewCompiler()
	comp.DefaultDraft(jsonschema.Draft2020)
	raw, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	const loc = "https://rein.test/openapi.json"
	if err := comp.AddResource(loc, raw); err != nil {
		t.Fatal(err)
	}
	for path, item := range c.doc["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			if method == "parameters" {
				continue
			}
			ok200, _ := op.(map[string]any)["responses"].(map[string]any)["200"].(map[string]any)
			evs, _ := ok200["x-rein-events"].(map[string]any)
			if evs == nil {
				continue
			}
			key := strings.ToUpper(method) + " " + path
			c.events[key] = map[string]*jsonschema.Schema{}
			for name, ev := range evs {
				ref := ev.(map[string]any)["data"].(map[string]any)["$ref"].(string)
				sch, err := comp.Compile(loc + ref)
				if err != nil {
					t.Fatalf("%s event %s: compile %s: %v", key, name, ref, err)
				}
				c.events[key][name] = sch
			}
		}
	}
	if len(c.events) != 4 {
		t.Fatalf("the document describes %d SSE routes, want 4", len(c.events))
	}
	return c
}

// template returns the document path that path matches, literal segments
// winning over parameters (as http.ServeMux decides).
func (c *oaChecker) template(path string) string {
	best, bestParams := "", 99
	segs := strings.Split(path, "/")
	for p := range c.doc["paths"].(map[string]any) {
		ps := strings.Split(p, "/")
		if len(ps) != len(segs) {
			continue
		}
		params, ok := 0, true
		for i := range ps {
			switch {
			case strings.HasPrefix(ps[i], "{"):
				params++
			case ps[i] != segs[i]:
				ok = false
			}
		}
		if ok && params < bestParams {
			best, bestParams = p, params
		}
	}
	if best == "" {
		c.t.Fatalf("no document path matches %s", path)
	}
	return best
}

// call sends a request and checks the status and the answer against the
// document; with validReq the request is checked too (error cases send
// requests the document refuses on purpose). It returns the answer's
// headers and body.
func (c *oaChecker) call(method, path string, hdr http.Header, body []byte, token string, want int, validReq bool) (http.Header, []byte) {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	got, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		c.t.Fatalf("%s %s: read answer: %v", method, path, err)
	}
	if res.StatusCode != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, res.StatusCode, want, got)
	}
	c.check(req, res, body, got, validReq)
	return res.Header, got
}

// check validates one exchange whose answer body was got.
func (c *oaChecker) check(req *http.Request, res *http.Response, body, got []byte, validReq bool) {
	c.t.Helper()
	if res.Header.Get("X-Content-Type-Options") != "nosniff" {
		c.t.Errorf("%s %s: no X-Content-Type-Options: nosniff", req.Method, req.URL.Path)
	}
	// The validator reads the bodies, so it gets fresh readers.
	vreq := req.Clone(context.Background())
	vreq.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := c.router.FindRoute(vreq)
	if err != nil {
		c.t.Errorf("%s %s: no operation of the document takes it: %v", req.Method, req.URL.String(), err)
		return
	}
	in := &openapi3filter.RequestValidationInput{
		Request: vreq, PathParams: params, Route: route,
		// A body the operation does not document is an error too.
		Options: &openapi3filter.Options{AuthenticationFunc: credentialPresent, RejectWhenRequestBodyNotSpecified: true, MultiError: true},
	}
	if validReq {
		if err := openapi3filter.ValidateRequest(c.ctx, in); err != nil {
			c.t.Errorf("%s %s: the request does not match the document: %v", req.Method, req.URL.String(), err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: res.StatusCode, Header: res.Header,
		// A status the operation does not document is an error.
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	out.SetBodyBytes(got)
	if err := openapi3filter.ValidateResponse(c.ctx, out); err != nil {
		c.t.Errorf("%s %s -> %d: the answer does not match the document: %v\n%.2000s", req.Method, req.URL.String(), res.StatusCode, err, got)
	}
	c.mu.Lock()
	c.seen[fmt.Sprintf("%s %s %d", req.Method, c.template(req.URL.Path), res.StatusCode)] = true
	c.mu.Unlock()
}

// stream opens an SSE route, checks its 200 answer, and returns a reader
// of its events that checks each against the document; cancel closes it.
func (c *oaChecker) stream(path string, hdr http.Header, token string) (next func() client.Event, cancel func()) {
	c.t.Helper()
	ctx, stop := context.WithCancel(c.ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		c.t.Fatalf("GET %s: status %d: %s", path, res.StatusCode, b)
	}
	// The answer is checked without its (endless) body: status, headers
	// and media type.
	c.check(req, res, nil, nil, true)
	schemas := c.events["GET "+c.template(req.URL.Path)]
	rd := client.NewEventReader(res.Body)
	next = func() client.Event {
		c.t.Helper()
		ev, err := rd.Next()
		if err != nil {
			c.t.Fatalf("GET %s: stream ended: %v", path, err)
		}
		sch, ok := schemas[ev.Name]
		if !ok {
			c.t.Fatalf("GET %s: event %q is not in the document", path, ev.Name)
		}
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(ev.Data))
		if err != nil {
			c.t.Fatalf("GET %s: event %s: data is not JSON: %v", path, ev.Name, err)
		}
		if err := sch.Validate(v); err != nil {
			c.t.Errorf("GET %s: event %s does not match the document: %v\n%s", path, ev.Name, err, ev.Data)
		}
		return ev
	}
	return next, func() { stop(); res.Body.Close() }
}

// until reads events until one named name arrives.
func until(next func() client.Event, name string) client.Event {
	for {
		if ev := next(); ev.Name == name {
			return ev
		}
	}
}

func TestOpenAPIConformance(t *testing.T) {
	t.Parallel() // see "Parallel tests" in doc.go
	e := newEnv(t)
	c := newOAChecker(t, e.ctx, e.srv.URL)
	tok := clientToken
	inst := func(id string) http.Header { return http.Header{"Rein-Instance": {id}} }
	big := []byte(`{"type":"prompt","text":"` + strings.Repeat("x", 1<<20+10) + `"}`)

	// Public routes; the document is checked against itself too.
	c.call("GET", "/openapi.json", nil, nil, "", 200, true)
	c.call("GET", "/healthz", nil, nil, "", 200, true)
	c.call("GET", "/.well-known/rein.json", nil, nil, "", 200, true)
	c.call("GET", "/metrics", nil, nil, tok, 200, true)
	c.call("GET", "/", nil, nil, "", 200, true)
	c.call("GET", "/ui/app.js", nil, nil, "", 200, true)
	// A missing file and a directory get the JSON 404 of every unknown
	// path, not net/http's plain text or a listing.
	c.call("GET", "/ui/nothing-here.js", nil, nil, "", 404, true)
	c.call("GET", "/ui/vendor", nil, nil, "", 404, true)

	// Sessions.
	_, b := c.call("POST", "/sessions/oa-1", nil, []byte(`{"project":"oa"}`), tok, 201, true)
	var created struct{ SandboxToken string }
	if err := json.Unmarshal(b, &created); err != nil {
		t.Fatal(err)
	}
	sbx := created.SandboxToken
	_, b = c.call("POST", "/sessions/oa-other", nil, nil, tok, 201, true)
	var other struct{ SandboxToken string }
	_ = json.Unmarshal(b, &other)
	c.call("POST", "/sessions/oa-1", nil, nil, tok, 409, true)
	// null is no project and no prompt (docs/PROTOCOL.md), and a body
	// saying so is a valid request.
	c.call("POST", "/sessions/oa-null", nil, []byte(`{"project":null,"prompt":null}`), tok, 201, true)
	c.call("POST", "/sessions/oa-2", nil, []byte(`{"project":7}`), tok, 400, false)
	c.call("POST", "/sessions/oa-2", nil, big, tok, 413, false)
	c.call("GET", "/sessions", nil, nil, tok, 200, true)
	c.call("GET", "/sessions?project=oa", nil, nil, tok, 200, true)
	c.call("GET", "/sessions/oa-1", nil, nil, tok, 200, true)

	// No sandbox yet: a command has nowhere to go.
	c.call("POST", "/sessions/oa-1/commands", nil, []byte(`{"type":"abort"}`), tok, 409, true)

	// The sandbox opens its command stream; a prompt arrives on it.
	cmds, closeCmds := c.stream("/sessions/oa-1/commands", inst("inst-1"), sbx)
	defer closeCmds()
	c.call("POST", "/sessions/oa-1/commands", nil, []byte(`{"type":"prompt","text":"hello"}`), tok, 202, true)
	if ev := until(cmds, "command"); !strings.Contains(ev.Data, `"hello"`) {
		t.Fatalf("command stream sent %s", ev.Data)
	}
	c.call("POST", "/sessions/oa-1/commands", nil, []byte(`{"type":"prompt"}`), tok, 400, false)
	c.call("POST", "/sessions/oa-1/commands", nil, big, tok, 413, false)
	// With an Idempotency-Key: stored, replayed, refused for another
	// command, refused when malformed.
	key := func(k string) http.Header { return http.Header{"Idempotency-Key": {k}} }
	c.call("POST", "/sessions/oa-1/commands", key("oa-key-1"), []byte(`{"type":"prompt","text":"once"}`), tok, 202, true)
	if h, _ := c.call("POST", "/sessions/oa-1/commands", key("oa-key-1"), []byte(`{"type":"prompt","text":"once"}`), tok, 202, true); h.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the resent command's answer has no Idempotent-Replayed: true: %v", h)
	}
	c.call("POST", "/sessions/oa-1/commands", key("oa-key-1"), []byte(`{"type":"abort"}`), tok, 409, true)
	c.call("POST", "/sessions/oa-1/commands", key("not a key"), []byte(`{"type":"abort"}`), tok, 400, false)

	// The session stream, opened with a ticket, sees what follows.
	_, b = c.call("POST", "/sessions/stream-ticket", nil, nil, tok, 200, true)
	var ticket struct{ Ticket string }
	_ = json.Unmarshal(b, &ticket)
	sess, closeSess := c.stream("/sessions/stream?ticket="+url.QueryEscape(ticket.Ticket), nil, "")
	defer closeSess()
	until(sess, "snapshot_complete")

	// Events of every kind, as a batch, from the sandbox.
	events := goldenBatch(t)
	c.call("POST", "/sessions/oa-1/events", inst("inst-1"), events, sbx, 202, true)
	c.call("POST", "/sessions/oa-1/events", inst("inst-1"), []byte(`{"type":"text_delta"}`), sbx, 400, false)
	c.call("POST", "/sessions/oa-1/events", inst("inst-1"), big, sbx, 413, false)
	c.call("GET", "/sessions/oa-1/artifacts", nil, nil, tok, 200, true)
	// The same, a page at a time by revision.
	_, b = c.call("GET", "/sessions/oa-1/artifacts?limit=2", nil, nil, tok, 200, true)
	var artPage struct {
		Artifacts []json.RawMessage
		Rev       int64
		Next      *int64
	}
	if err := json.Unmarshal(b, &artPage); err != nil || len(artPage.Artifacts) != 2 || artPage.Next == nil || artPage.Rev == 0 {
		t.Fatalf("GET /sessions/oa-1/artifacts?limit=2: %v %s", err, b)
	}
	_, b = c.call("GET", fmt.Sprintf("/sessions/oa-1/artifacts?after=%d", *artPage.Next), nil, nil, tok, 200, true)
	if err := json.Unmarshal(b, &artPage); err != nil || len(artPage.Artifacts) == 0 || artPage.Next != nil {
		t.Fatalf("GET /sessions/oa-1/artifacts after %d: %v %s", *artPage.Next, err, b)
	}
	for _, q := range []string{"limit=0", "limit=5001", "after=-1", "after=x"} {
		_, b = c.call("GET", "/sessions/oa-1/artifacts?"+q, nil, nil, tok, 400, false)
		if want := q[:strings.Index(q, "=")]; !strings.Contains(string(b), want) {
			t.Errorf("GET /sessions/oa-1/artifacts?%s: the error does not name %s: %s", q, want, b)
		}
	}

	// The artifact stream: the replay, then live creations and updates.
	arts, closeArts := c.stream("/sessions/oa-1/stream", nil, tok)
	defer closeArts()
	until(arts, "snapshot_complete")
	// Two POSTs: appends within one batch may be folded into the creation.
	live := `[{"type":"turn_started","turnId":"oa-t2","source":"user"},{"type":"text_delta","id":"oa-m2","delta":"a"}]`
	c.call("POST", "/sessions/oa-1/events", inst("inst-1"), []byte(live), sbx, 202, true)
	until(arts, "artifact_created")
	c.call("POST", "/sessions/oa-1/events", inst("inst-1"), []byte(`{"type":"text_delta","id":"oa-m2","delta":"b"}`), sbx, 202, true)
	until(arts, "artifact_updated")
	_, b = c.call("POST", "/sessions/oa-1/stream-ticket", nil, nil, tok, 200, true)
	_ = json.Unmarshal(b, &ticket)
	arts2, closeArts2 := c.stream("/sessions/oa-1/stream?ticket="+url.QueryEscape(ticket.Ticket), http.Header{"Last-Event-ID": {"1"}}, "")
	until(arts2, "snapshot_complete")
	closeArts2()

	// The approvals inbox. The golden batch's permission request was
	// resolved in the same batch, so one that waits is posted live.
	apps, closeApps := c.stream("/approvals/stream?project=oa", nil, tok)
	defer closeApps()
	until(apps, "snapshot_complete")
	perm := `{"type":"permission_requested","id":"oa-perm-1","title":"May I?","input":{"cmd":"ls"},` +
		`"options":[{"id":"allow","name":"Allow","kind":"allow_once"},{"id":"deny","name":"Deny","kind":"reject_once"}]}`
	c.call("POST", "/sessions/oa-1/events", inst("inst-1"), []byte(perm), sbx, 202, true)
	if ev := until(apps, "approval_added"); !strings.Contains(ev.Data, `"oa-perm-1"`) {
		t.Fatalf("approval_added %s", ev.Data)
	}
	var waiting []struct {
		Seq int64 `json:"seq"`
	}
	if _, b = c.call("GET", "/approvals", nil, nil, tok, 200, true); !strings.Contains(string(b), `"oa-perm-1"`) || json.Unmarshal(b, &waiting) != nil || len(waiting) != 1 || waiting[0].Seq == 0 {
		t.Fatalf("GET /approvals: %s; want oa-perm-1 with its seq", b)
	}
	if _, b = c.call("GET", "/approvals?project=none", nil, nil, tok, 200, true); string(b) != "[]\n" {
		t.Fatalf("GET /approvals?project=none: %q", b)
	}
	// A session stream ticket opens the approvals stream too; its
	// snapshot holds the waiting request.
	_, b = c.call("POST", "/sessions/stream-ticket", nil, nil, tok, 200, true)
	_ = json.Unmarshal(b, &ticket)
	apps2, closeApps2 := c.stream("/approvals/stream?ticket="+url.QueryEscape(ticket.Ticket), http.Header{"Last-Event-ID": {"1"}}, "")
	if ev := until(apps2, "approval_snapshot"); !strings.Contains(ev.Data, `"oa-perm-1"`) {
		t.Fatalf("approval_snapshot %s", ev.Data)
	}
	until(apps2, "snapshot_complete")
	closeApps2()
	// An answer that cannot take effect is refused: an option the
	// request does not offer, a request never asked, a second answer.
	c.call("POST", "/sessions/oa-1/commands", nil, []byte(`{"type":"permission_response","requestId":"oa-perm-1","optionId":"maybe"}`), tok, 400, true)
	c.call("POST", "/sessions/oa-1/commands", nil, []byte(`{"type":"permission_response","requestId":"oa-perm-9","optionId":"allow"}`), tok, 404, true)
	// One naming another request than the one its id names now.
	c.call("POST", "/sessions/oa-1/commands", nil, []byte(fmt.Sprintf(`{"type":"permission_response","requestId":"oa-perm-1","optionId":"allow","requestSeq":%d}`, waiting[0].Seq+1000)), tok, 409, true)
	c.call("POST", "/sessions/oa-1/commands", nil, []byte(fmt.Sprintf(`{"type":"permission_response","requestId":"oa-perm-1","optionId":"allow","requestSeq":%d}`, waiting[0].Seq)), tok, 202, true)
	// Answered, not yet taken by its agent: still listed, with the answer.
	if ev := until(apps, "approval_answered"); !strings.Contains(ev.Data, `"answer":{"commandId":`) {
		t.Fatalf("approval_answered %s", ev.Data)
	}
	if _, b = c.call("GET", "/approvals", nil, nil, tok, 200, true); !strings.Contains(string(b), `"answeredBy":"client"`) {
		t.Fatalf("GET /approvals after the answer: %s", b)
	}
	c.call("POST", "/sessions/oa-1/commands", nil, []byte(`{"type":"permission_response","requestId":"oa-perm-1","outcome":"cancelled"}`), tok, 409, true)
	until(cmds, "command")
	c.call("POST", "/sessions/oa-1/events", inst("inst-1"), []byte(`{"type":"permission_resolved","id":"oa-perm-1","outcome":"selected","optionId":"allow"}`), sbx, 202, true)
	if ev := until(apps, "approval_resolved"); !strings.Contains(ev.Data, `"decidedBy":"client"`) {
		t.Fatalf("approval_resolved %s", ev.Data)
	}
	if _, b = c.call("GET", "/approvals/history?project=oa&limit=5", nil, nil, tok, 200, true); !strings.Contains(string(b), `"approved"`) {
		t.Fatalf("GET /approvals/history: %s", b)
	}
	c.call("GET", "/approvals/history", nil, nil, tok, 200, true)
	for _, q := range []string{"/approvals?project=bad!p", "/approvals/stream?project=bad!p", "/approvals/history?project=bad!p",
		"/approvals/history?limit=0", "/approvals/history?limit=501", "/approvals/history?limit=x"} {
		_, b = c.call("GET", q, nil, nil, tok, 400, false)
		if want := q[strings.LastIndex(q, "?")+1 : strings.Index(q, "=")]; !strings.Contains(string(b), want) {
			t.Errorf("GET %s: the error does not name %s: %s", q, want, b)
		}
	}

	// Turn history: every turn, one that ended (recorded digest) and the
	// running one (no digest yet).
	_, b = c.call("GET", "/sessions/oa-1/turns", nil, nil, tok, 200, true)
	var turns []struct {
		ID             string
		Digest         *string
		DigestRecorded bool
	}
	if err := json.Unmarshal(b, &turns); err != nil || len(turns) < 2 {
		t.Fatalf("GET /sessions/oa-1/turns: %v %s", err, b)
	}
	if turns[0].Digest == nil || !turns[0].DigestRecorded {
		t.Errorf("the first turn ended but has no recorded digest: %s", b)
	}
	c.call("GET", "/sessions/oa-1/turns/"+turns[0].ID, nil, nil, tok, 200, true)
	if _, b = c.call("GET", "/sessions/oa-1/turns/oa-t2", nil, nil, tok, 200, true); !strings.Contains(string(b), `"digest":null`) {
		t.Errorf("the running turn has a digest: %s", b)
	}
	c.call("GET", "/sessions/oa-1/turns/no-such-turn", nil, nil, tok, 404, true)
	if _, b = c.call("GET", "/sessions/oa-1/turns/bad!turn", nil, nil, tok, 400, false); !strings.Contains(string(b), "turnId") {
		t.Errorf("the error does not name turnId: %s", b)
	}

	// The event log export, a page at a time.
	_, b = c.call("GET", "/sessions/oa-1/events?limit=2", nil, nil, tok, 200, true)
	var page struct {
		Events []json.RawMessage
		Next   *int64
	}
	if err := json.Unmarshal(b, &page); err != nil || len(page.Events) != 2 || page.Next == nil {
		t.Fatalf("GET /sessions/oa-1/events?limit=2: %v %s", err, b)
	}
	_, b = c.call("GET", fmt.Sprintf("/sessions/oa-1/events?after=%d&limit=5000", *page.Next), nil, nil, tok, 200, true)
	if err := json.Unmarshal(b, &page); err != nil || len(page.Events) == 0 || page.Next != nil {
		t.Fatalf("GET /sessions/oa-1/events after %d: %v %s", *page.Next, err, b)
	}
	c.call("GET", "/sessions/oa-1/events", nil, nil, tok, 200, true)
	for _, q := range []string{"limit=0", "limit=5001", "limit=x", "after=-1", "after=x"} {
		_, b = c.call("GET", "/sessions/oa-1/events?"+q, nil, nil, tok, 400, false)
		if want := q[:strings.Index(q, "=")]; !strings.Contains(string(b), want) {
			t.Errorf("GET /sessions/oa-1/events?%s: the error does not name %s: %s", q, want, b)
		}
	}

	// The session stream saw the session change, and sees one created and removed.
	until(sess, "session_updated")
	c.call("POST", "/sessions/oa-2", nil, nil, tok, 201, true)
	until(sess, "session_created")
	c.call("DELETE", "/sessions/oa-2", nil, nil, tok, 204, true)
	until(sess, "session_removed")

	// A newer agentd instance supersedes the first.
	cmds2, closeCmds2 := c.stream("/sessions/oa-1/commands", inst("inst-2"), sbx)
	_ = cmds2
	c.call("POST", "/sessions/oa-1/events", inst("inst-1"), []byte(`{"type":"heartbeat"}`), sbx, 409, true)
	c.call("GET", "/sessions/oa-1/commands", inst("inst-1"), nil, sbx, 409, true)
	c.call("GET", "/sessions/oa-1/commands", inst("bad header!"), nil, sbx, 400, false)
	closeCmds2()
	c.call("POST", "/sessions/oa-1/token", nil, nil, tok, 200, true)

	// Errors every session route shares: bad id, no or wrong credential,
	// a sandbox token where it does not open, an unknown session.
	for _, r := range []struct {
		method, path string
		body         []byte
	}{
		{"GET", "/sessions/%s", nil},
		{"POST", "/sessions/%s", nil},
		{"DELETE", "/sessions/%s", nil},
		{"POST", "/sessions/%s/token", nil},
		{"POST", "/sessions/%s/commands", []byte(`{"type":"abort"}`)},
		{"GET", "/sessions/%s/commands", nil},
		{"POST", "/sessions/%s/events", []byte(`{"type":"heartbeat"}`)},
		{"GET", "/sessions/%s/artifacts", nil},
		{"GET", "/sessions/%s/stream", nil},
		{"POST", "/sessions/%s/stream-ticket", nil},
		{"GET", "/sessions/%s/events", nil},
		{"GET", "/sessions/%s/turns", nil},
		{"GET", "/sessions/%s/turns/oa-t2", nil},
	} {
		p := func(id string) string { return fmt.Sprintf(r.path, id) }
		c.call(r.method, p("bad!id"), nil, r.body, tok, 400, false)
		// The requests lack a credential the document requires, so only
		// the answers are checked.
		c.call(r.method, p("oa-1"), nil, r.body, "", 401, false)
		c.call(r.method, p("oa-1"), nil, r.body, "wrong-token-0123456789", 401, false)
		// A sandbox token opens only its own session's sandbox routes.
		c.call(r.method, p("oa-1"), nil, r.body, other.SandboxToken, 403, true)
		if r.method != "POST" || r.path != "/sessions/%s" {
			c.call(r.method, p("oa-none"), nil, r.body, tok, 404, true)
		}
	}
	for _, r := range [][2]string{{"GET", "/sessions"}, {"GET", "/sessions/stream"}, {"POST", "/sessions/stream-ticket"},
		{"GET", "/approvals"}, {"GET", "/approvals/history"}, {"GET", "/approvals/stream"}, {"GET", "/metrics"}} {
		c.call(r[0], r[1], nil, nil, "", 401, false)
		c.call(r[0], r[1], nil, nil, other.SandboxToken, 403, true)
	}

	// Every documented route and status was seen, but 503.
	var missing []string
	for path, item := range c.doc["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			if method == "parameters" {
				continue
			}
			for status := range op.(map[string]any)["responses"].(map[string]any) {
				key := fmt.Sprintf("%s %s %s", strings.ToUpper(method), path, status)
				if status != "503" && !c.seen[key] {
					missing = append(missing, key)
				}
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("documented but never exercised:\n%s", strings.Join(missing, "\n"))
	}
}

// goldenBatch is every ReinEvent golden of protocol/testdata, as one batch
// in an order the reducer takes (turn first, turn end last).
func goldenBatch(t *testing.T) []byte {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	order := []string{"agent_started", "turn_started", "user_message", "text_delta", "text_end", "reasoning_delta", "reasoning_end",
		"tool_call_start", "tool_input_delta", "tool_call_update", "tool_output_delta", "permission_requested", "permission_resolved",
		"tool_call_end", "plan_updated", "file_changed", "usage_updated", "session_info", "notice", "heartbeat", "turn_completed", "agent_exited"}
	var items []json.RawMessage
	for _, name := range order {
		b, err := os.ReadFile(filepath.Join(root, "protocol", "testdata", "events", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		// agentSeq values in the goldens repeat across files: drop them.
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "agentSeq")
		b, _ = json.Marshal(m)
		items = append(items, b)
	}
	out, _ := json.Marshal(items)
	return out
}

// notless rewrites each parameter schema's top-level "not": X as "if": X,
// "then": false (see newOAChecker); false is written {"not": {}}, which
// the decoder does not look into. The schemas are copied, so the
// component a body refers to keeps its "not".
func notless(spec *openapi3.T) {
	rewrite := func(params openapi3.Parameters) {
		for i, p := range params {
			if p == nil || p.Value == nil || p.Value.Schema == nil || p.Value.Schema.Value == nil || p.Value.Schema.Value.Not == nil {
				continue
			}
			s := *p.Value.Schema.Value
			s.If, s.Then, s.Not = s.Not, &openapi3.SchemaRef{Value: &openapi3.Schema{Not: &openapi3.SchemaRef{Value: &openapi3.Schema{}}}}, nil
			param := *p.Value
			param.Schema = &openapi3.SchemaRef{Value: &s}
			params[i] = &openapi3.ParameterRef{Value: &param}
		}
	}
	for _, item := range spec.Paths.Map() {
		rewrite(item.Parameters)
		for _, op := range item.Operations() {
			rewrite(op.Parameters)
		}
	}
}

// credentialPresent stands in for the server's authentication when a
// request is checked: the request must carry a credential of the scheme
// the document's security requirement names (whether the server takes it
// is what the answer's status says).
func credentialPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s, req := in.SecurityScheme, in.RequestValidationInput.Request
	switch {
	case s.Type == "http" && strings.EqualFold(s.Scheme, "bearer"):
		if tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); !ok || tok == "" {
			return errors.New("no bearer token in Authorization")
		}
	case s.Type == "apiKey" && s.In == "query":
		if req.URL.Query().Get(s.Name) == "" {
			return fmt.Errorf("no %s in the query", s.Name)
		}
	default:
		return fmt.Errorf("security scheme %s %s %s is unknown to the test", in.SecuritySchemeName, s.Type, s.Scheme)
	}
	return nil
}

// The web view's files (*/* in the document, a string) are script, style
// and HTML; openapi3filter decodes only the media types registered with
// it, so anything else is read as text and checked against the schema.
func init() {
	openapi3filter.RegisterBodyDecoder("*/*", openapi3filter.PlainBodyDecoder)
}
