package codex_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/rein-ai/rein/agentd/internal/codex"
	"github.com/rein-ai/rein/protocol"
)

// TestUsagePerTurn: Rein usage is per turn while Codex reports thread
// totals. A turn ended by a denial may get no report of its own: Codex
// then reports its request with the next turn's first one, which must not
// count as the next turn's.
func TestUsagePerTurn(t *testing.T) {
	// usage is a thread/tokenUsage/updated of Codex turn turn with the
	// thread's input total and the last request's input.
	usage := func(turn string, total, last int) string {
		return fmt.Sprintf(`{"method":"thread/tokenUsage/updated","params":{"threadId":"th","turnId":%q,"tokenUsage":{`+
			`"total":{"totalTokens":%d,"inputTokens":%d,"cachedInputTokens":0,"outputTokens":0},`+
			`"last":{"totalTokens":%d,"inputTokens":%d,"cachedInputTokens":0,"outputTokens":0},"modelContextWindow":1000}}}`,
			turn, total, total, last, last)
	}
	completed := func(turn, status string) string {
		return fmt.Sprintf(`{"method":"turn/completed","params":{"threadId":"th","turn":{"id":%q,"status":%q}}}`, turn, status)
	}
	tests := []struct {
		name string
		// notifications per turn, after turn/start's answer
		turns [][]string
		// want: inputTokens of each turn's usage_updated events, in order
		want [][]int64
	}{
		{"each turn reports its own", [][]string{
			{usage("c1", 100, 100), usage("c1", 200, 100), completed("c1", "completed")},
			{usage("c2", 300, 100), completed("c2", "completed")},
		}, [][]int64{{100, 200}, {100}}},
		{"the denied turn's request reported with the next", [][]string{
			{usage("c1", 100, 100), completed("c1", "completed")},
			{completed("c2", "interrupted")},
			{usage("c3", 300, 100), usage("c3", 400, 100), completed("c3", "completed")},
		}, [][]int64{{100}, nil, {100, 200}}},
		{"an aborted turn's report with nothing new", [][]string{
			{usage("c1", 100, 100), completed("c1", "completed")},
			{usage("c2", 100, 100), completed("c2", "interrupted")},
		}, [][]int64{{100}, {0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inR, inW := io.Pipe()   // adapter -> app-server
			outR, outW := io.Pipe() // app-server -> adapter
			cmds := make(chan protocol.Command)
			var mu sync.Mutex
			var evs []protocol.Event
			ended := make(chan struct{}, len(tt.turns))
			n := 0
			served := appServer(t, inR, outW, func(m rpcMessage, answer func(string)) bool {
				switch m.Method {
				case "initialize":
					answer(`"result":{"userAgent":"agentd/0.171.0 (test)"}`)
				case "thread/start":
					answer(`"result":{"thread":{"id":"th"},"model":"m"}`)
				case "turn/start":
					n++
					answer(fmt.Sprintf(`"result":{"turn":{"id":"c%d","status":"inProgress"}}`, n))
					for _, line := range tt.turns[n-1] {
						io.WriteString(outW, line+"\n")
					}
				}
				return true
			})
			done := make(chan error, 1)
			go func() {
				done <- codex.Serve(context.Background(), codex.Options{
					Stdin: inW, Stdout: outR, Commands: cmds, Cwd: "/w",
					Emit: func(_ context.Context, ev protocol.Event) error {
						mu.Lock()
						evs = append(evs, ev)
						mu.Unlock()
						if ev.Type == protocol.EventTurnCompleted {
							ended <- struct{}{}
						}
						return nil
					},
				})
			}()
			for i := range tt.turns {
				cmds <- protocol.Command{ID: int64(i + 1), Type: protocol.CommandPrompt, Text: "p"}
				<-ended
			}
			outW.Close() // the app-server exits
			if err := <-done; err != nil {
				t.Fatalf("Serve = %v", err)
			}
			inR.Close()
			<-served

			got := make([][]int64, len(tt.turns))
			turn := -1
			for _, ev := range evs {
				switch ev.Type {
				case protocol.EventTurnStarted:
					turn++
				case protocol.EventUsageUpdated:
					got[turn] = append(got[turn], *ev.InputTokens)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("inputTokens per turn %v; want %v", got, tt.want)
			}
		})
	}
}
