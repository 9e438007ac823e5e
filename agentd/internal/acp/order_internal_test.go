package acp

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	acpsdk "github.com/coder/acp-go-sdk"

	"github.com/rein-ai/rein/protocol"
)

// The SDK runs each request from the agent in a goroutine of its own, so
// the handlers of two permission requests for the same tool call may run
// in the opposite order to the requests. Each must still get the answer
// to its own request. The test plays the SDK: it reads the lines the
// ordered reader passes on, decodes them as the SDK does, and runs the
// second request's handler first.
func TestPermissionAnswersReachTheirOwnRequests(t *testing.T) {
	ctx := context.Background()
	a := newAdapter(ctx, Options{Emit: func(context.Context, protocol.Event) error { return nil }}, slog.New(slog.DiscardHandler))
	a.beginTurn(protocol.Command{ID: 1, Type: protocol.CommandPrompt, Text: "go"})
	ask := func(id int, option string) string {
		b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "session/request_permission", "params": map[string]any{
			"sessionId": "s1",
			"toolCall":  map[string]any{"toolCallId": "x", "title": "run"},
			"options":   []any{map[string]any{"optionId": option, "name": option, "kind": "allow_once"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return string(b) + "\n"
	}
	in := &orderedReader{r: bufio.NewReader(strings.NewReader(ask(1, "first") + ask(2, "second"))), a: a, rec: &recorder{log: a.log}}
	sc := bufio.NewScanner(in)
	var reqs []acpsdk.RequestPermissionRequest
	for sc.Scan() {
		var m struct{ Params json.RawMessage }
		var req acpsdk.RequestPermissionRequest
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(m.Params, &req); err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, req)
	}
	if len(reqs) != 2 {
		t.Fatalf("%d requests passed on, want 2", len(reqs))
	}
	a.answer(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "turn-1:perm-2", OptionID: "second"})
	a.answer(protocol.Command{Type: protocol.CommandPermissionResponse, RequestID: "turn-1:perm-1", OptionID: "first"})
	for _, i := range []int{1, 0} {
		resp, err := a.RequestPermission(ctx, reqs[i])
		if err != nil {
			t.Fatal(err)
		}
		got := "cancelled"
		if resp.Outcome.Selected != nil {
			got = string(resp.Outcome.Selected.OptionId)
		}
		if want := []string{"first", "second"}[i]; got != want {
			t.Errorf("request %d answered %s, want %s", i+1, got, want)
		}
	}
}
