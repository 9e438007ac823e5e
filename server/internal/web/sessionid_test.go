package web

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// TestSessionIDErrorMatchesProtocol runs the page's sessionIDError in Node
// on ids the server accepts and refuses, and wants the same verdict as
// protocol.ValidateSessionID. (The browser test checks the page refuses
// #/s/.. end to end.)
func TestSessionIDErrorMatchesProtocol(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("SKIP: node is not installed; the browser test (e2e TestBrowser) still checks the page refuses invalid ids")
	}
	src, err := files.ReadFile("static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	fn := regexp.MustCompile(`(?s)\nfunction sessionIDError\(id\) \{.*?\n\}\n`).Find(src)
	if fn == nil {
		t.Fatal("app.js has no function sessionIDError(id)")
	}
	ids := []string{"a", "sess-1", "A.b_c-9", ".a", "a..", "..-", strings.Repeat("x", 128),
		".", "..", "...", "stream", "stream-ticket", "", strings.Repeat("x", 129), "a/b", "a b", "a:b", "ü", "%zz"}
	in, _ := json.Marshal(ids)
	script := string(fn) + "\nconsole.log(JSON.stringify(" + string(in) + ".map(sessionIDError)));\n"
	out, err := exec.Command(node, "-e", script).Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	var got []string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node printed %q: %v", out, err)
	}
	for i, id := range ids {
		serverErr := protocol.ValidateSessionID(id)
		if (got[i] == "") != (serverErr == nil) {
			t.Errorf("id %q: page says %q, server says %v", id, got[i], serverErr)
		}
	}
}
