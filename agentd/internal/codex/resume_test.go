package codex_test

import (
	"context"
	"io"
	"slices"
	"sync"
	"testing"

	"github.com/rein-ai/rein/agentd/internal/codex"
	"github.com/rein-ai/rein/protocol"
)

// TestResumeThread: with a thread id to resume, the adapter calls
// thread/resume instead of thread/start; when the app-server cannot
// resume it, a new thread starts with a warning notice. Either way the
// thread the run is in is reported.
func TestResumeThread(t *testing.T) {
	tests := []struct {
		name        string
		resume      string
		refuse      bool
		wantMethods []string
		wantThread  string
		wantNotice  bool
	}{
		{"new thread", "", false, []string{"initialize", "initialized", "thread/start"}, "new-thread", false},
		{"resumed", "old-thread", false, []string{"initialize", "initialized", "thread/resume"}, "old-thread", false},
		{"resume refused", "old-thread", true, []string{"initialize", "initialized", "thread/resume", "thread/start"}, "new-thread", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inR, inW := io.Pipe()   // adapter -> app-server
			outR, outW := io.Pipe() // app-server -> adapter
			var mu sync.Mutex
			var methods []string
			var resumeParams map[string]any
			served := appServer(t, inR, outW, func(m rpcMessage, answer func(string)) bool {
				mu.Lock()
				methods = append(methods, m.Method)
				if m.Method == "thread/resume" {
					resumeParams = m.Params
				}
				mu.Unlock()
				switch m.Method {
				case "initialize":
					answer(`"result":{"userAgent":"agentd/1.2.3 (test)"}`)
				case "thread/start":
					answer(`"result":{"thread":{"id":"new-thread"},"model":"m"}`)
				case "thread/resume":
					if tt.refuse {
						answer(`"error":{"code":-32600,"message":"no rollout found for thread id old-thread"}`)
					} else {
						answer(`"result":{"thread":{"id":"old-thread"},"model":"m"}`)
					}
				}
				return true
			})
			var evs []protocol.Event
			var reported []string
			started := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- codex.Serve(context.Background(), codex.Options{
					Stdin: inW, Stdout: outR, Commands: make(chan protocol.Command), Cwd: "/w",
					Resume: tt.resume, Conversation: func(id string) { reported = append(reported, id) },
					Emit: func(_ context.Context, ev protocol.Event) error {
						evs = append(evs, ev)
						if ev.Type == protocol.EventAgentStarted {
							close(started)
						}
						return nil
					},
				})
			}()
			<-started
			outW.Close() // the app-server exits
			if err := <-done; err != nil {
				t.Fatalf("Serve = %v", err)
			}
			<-served
			if !slices.Equal(methods, tt.wantMethods) {
				t.Errorf("methods %q; want %q", methods, tt.wantMethods)
			}
			if tt.resume != "" && (resumeParams["threadId"] != tt.resume || resumeParams["cwd"] != "/w") {
				t.Errorf("thread/resume params %v; want threadId %s, cwd /w", resumeParams, tt.resume)
			}
			if !slices.Equal(reported, []string{tt.wantThread}) {
				t.Errorf("reported threads %q; want %q", reported, tt.wantThread)
			}
			notice := slices.ContainsFunc(evs, func(ev protocol.Event) bool {
				return ev.Type == protocol.EventNotice && ev.Level == protocol.LevelWarning && ev.NoticeCode == codex.NoticeResumeFailed
			})
			if notice != tt.wantNotice {
				t.Errorf("resume-failed notice %v; want %v (events %v)", notice, tt.wantNotice, evs)
			}
		})
	}
}
