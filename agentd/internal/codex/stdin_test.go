package codex_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd/internal/codex"
	"github.com/rein-ai/rein/protocol"
)

// eofReader closes eof when a read reaches the end, as agentd's process
// package does to start an agent's kill grace.
type eofReader struct {
	r   io.Reader
	eof chan struct{}
}

func (r *eofReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err == io.EOF {
		select {
		case <-r.eof:
		default:
			close(r.eof)
		}
	}
	return n, err
}

// TestStdoutEndReadWhileStdinIsNotRead: an app-server that stops reading
// its stdin, writes a line and closes its stdout must not hold the
// adapter's reader with that line while the adapter waits to write to it:
// the end of its stdout is what tells agentd to stop it.
func TestStdoutEndReadWhileStdinIsNotRead(t *testing.T) {
	inR, inW := io.Pipe()   // adapter -> app-server
	outR, outW := io.Pipe() // app-server -> adapter
	// Answer the handshake, then read no more.
	handshaken := appServer(t, inR, outW, func(m rpcMessage, answer func(string)) bool {
		switch m.Method {
		case "initialize":
			answer(`"result":{"userAgent":"agentd/0.171.0 (test)"}`)
		case "thread/start":
			answer(`"result":{"thread":{"id":"th"},"model":"m"}`)
			return false
		}
		return true
	})
	stdout := &eofReader{r: outR, eof: make(chan struct{})}
	cmds := make(chan protocol.Command, 1)
	evs := make(chan protocol.Event, 100)
	done := make(chan error, 1)
	go func() {
		done <- codex.Serve(context.Background(), codex.Options{
			Stdin: inW, Stdout: stdout, Commands: cmds, Cwd: "/w",
			Emit: func(_ context.Context, ev protocol.Event) error { evs <- ev; return nil },
		})
	}()
	t.Cleanup(func() {
		inR.Close() // the kill: the write fails
		outW.Close()
		<-done
	})
	<-handshaken
	cmds <- protocol.Command{ID: 1, Type: protocol.CommandPrompt, Text: strings.Repeat("x", 1<<10)}
	for ev := range evs {
		if ev.Type == protocol.EventUserMessage {
			break // the adapter writes turn/start next, which nobody reads
		}
	}
	io.WriteString(outW, `{"method":"warning","params":{"message":"w"}}`+"\n")
	outW.Close()
	select {
	case <-stdout.eof:
	case <-time.After(5 * time.Second):
		t.Fatal("the app-server's stdout ended but the adapter never read its end")
	}
}
