package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/rein-ai/rein/server/app"
)

// Replays of one big artifact share its body (shared.go), found by the
// session, seq and revision: a session deleted and created again under its
// id numbers its artifacts the same way, so its output has the key of the
// deleted one's while a follower stalled on a slow link still holds that
// one. Every read of the new session shows its own output, byte for byte.
func TestRecreatedSessionShowsItsOwnBigOutput(t *testing.T) {
	t.Parallel()
	s := start(t, app.Options{})
	c := newClient(t, s)
	post := func(fill string) map[int64][]byte {
		t.Helper()
		c.must(http.StatusCreated, nil, "POST", "/sessions/r", nil)
		sr := &streamer{c: c, id: "r"}
		sr.post(ev("turn_started", "turnId", "t1", "source", "user"), ev("tool_call_start", "id", "x", "name", "sh", "input", map[string]any{"cmd": "cat big.log"}))
		line := strings.Repeat(fill, 999) + "\n"
		for i := range 32 {
			var evs []map[string]any
			for j := range 4 {
				evs = append(evs, ev("tool_output_delta", "id", "x", "delta", fmt.Sprintf("%04d", 4*i+j)+strings.Repeat(line, 128)))
			}
			sr.post(evs...)
		}
		sr.post(ev("tool_call_end", "id", "x", "status", "completed"))
		return wantArtifacts(t, s, "r")
	}
	before := post("a")
	if len(before[2]) < 16e6 {
		t.Fatalf("the tool's body is %d bytes; want a 16 MB output", len(before[2]))
	}
	checkArtifacts(t, c, "r", before)

	// A follower that reads nothing: the server blocks writing it the
	// output, holding the body it read.
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /sessions/r/stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
	if status, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.Contains(status, "200") {
		t.Fatalf("the stalled follower's stream: %q, %v", status, err)
	}

	c.must(http.StatusNoContent, nil, "DELETE", "/sessions/r", nil)
	after := post("b")
	if rev(t, after[2]) != rev(t, before[2]) || len(after[2]) != len(before[2]) {
		t.Fatalf("the new output is not numbered as the old one: rev %d, %d bytes; the old one rev %d, %d bytes", rev(t, after[2]), len(after[2]), rev(t, before[2]), len(before[2]))
	}
	checkArtifacts(t, c, "r", after)
	checkSnapshot(t, c, "r", "", after)
	checkArtifacts(t, c, "r", after)
}

func rev(t *testing.T, body []byte) int64 {
	t.Helper()
	var a struct{ Rev int64 }
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	return a.Rev
}
