package codex_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd/internal/codex"
	"github.com/rein-ai/rein/protocol"
)

// TestFailedTurnStopReason: a turn Codex ends as failed reads error, with
// Codex's message. After an abort it reads cancelled, as with the Claude
// Code and ACP adapters: the user stopped it, whatever Codex made of the
// interrupt. Codex's message stays in the event, so the transcript still
// says what Codex said.
func TestFailedTurnStopReason(t *testing.T) {
	const failed = `{"method":"turn/completed","params":{"threadId":"th","turn":{"id":"c1","status":"failed","error":{"message":"stream disconnected before completion"}}}}`
	const interrupted = `{"method":"turn/completed","params":{"threadId":"th","turn":{"id":"c1","status":"interrupted"}}}`
	tests := []struct {
		name    string
		abort   bool
		end     string // the turn/completed Codex sends
		want    protocol.StopReason
		wantErr string
	}{
		{"failed", false, failed, protocol.StopError, "stream disconnected before completion"},
		{"aborted, failed", true, failed, protocol.StopCancelled, "stream disconnected before completion"},
		{"aborted, interrupted", true, interrupted, protocol.StopCancelled, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inR, inW := io.Pipe()   // adapter -> app-server
			outR, outW := io.Pipe() // app-server -> adapter
			cmds := make(chan protocol.Command)
			served := appServer(t, inR, outW, func(m rpcMessage, answer func(string)) bool {
				switch m.Method {
				case "initialize":
					answer(`"result":{"userAgent":"agentd/0.171.0 (test)"}`)
				case "thread/start":
					answer(`"result":{"thread":{"id":"th"},"model":"m"}`)
				case "turn/start":
					answer(`"result":{"turn":{"id":"c1","status":"inProgress"}}`)
					if !tt.abort {
						io.WriteString(outW, tt.end+"\n")
					}
				case "turn/interrupt":
					answer(`"result":{}`)
					io.WriteString(outW, tt.end+"\n")
				}
				return true
			})
			evs := make(chan protocol.Event, 100)
			done := make(chan error, 1)
			go func() {
				done <- codex.Serve(context.Background(), codex.Options{
					Stdin: inW, Stdout: outR, Commands: cmds, Cwd: "/w",
					Emit: func(_ context.Context, ev protocol.Event) error { evs <- ev; return nil },
				})
			}()
			timeout := time.NewTimer(10 * time.Second)
			defer timeout.Stop()
			next := func(typ protocol.EventType) protocol.Event {
				t.Helper()
				for {
					select {
					case ev := <-evs:
						if ev.Type == typ {
							return ev
						}
					case <-timeout.C:
						t.Fatalf("no %s", typ)
					}
				}
			}
			cmds <- protocol.Command{ID: 1, Type: protocol.CommandPrompt, Text: "p"}
			if tt.abort {
				next(protocol.EventTurnStarted) // an abort outside a turn does nothing
				cmds <- protocol.Command{ID: 2, Type: protocol.CommandAbort}
			}
			end := next(protocol.EventTurnCompleted)
			outW.Close() // the app-server exits
			if err := <-done; err != nil {
				t.Fatalf("Serve = %v", err)
			}
			inR.Close()
			<-served
			if end.StopReason != tt.want || end.Error != tt.wantErr {
				t.Errorf("turn_completed stopReason %q, error %q; want %q, %q", end.StopReason, end.Error, tt.want, tt.wantErr)
			}
		})
	}
}
