package codex_test

import (
	"bufio"
	"encoding/json"
	"io"
	"testing"
)

// rpcMessage is a JSON-RPC message the adapter wrote to the app-server.
type rpcMessage struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params map[string]any  `json:"params"`
}

// appServer plays the Codex app-server for a test: it reads the adapter's
// messages from in, one a line, and hands each to handle with answer,
// which writes the response to it on out (member: `"result":…` or
// `"error":…`). It returns when in ends, or when handle returns false
// (the app-server then reads its stdin no more); the returned channel is
// closed then.
func appServer(t *testing.T, in io.Reader, out io.Writer, handle func(m rpcMessage, answer func(member string)) bool) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			var m rpcMessage
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("adapter wrote %q: %v", sc.Text(), err)
				return
			}
			answer := func(member string) {
				io.WriteString(out, `{"jsonrpc":"2.0","id":`+string(m.ID)+`,`+member+"}\n")
			}
			if !handle(m, answer) {
				return
			}
		}
	}()
	return done
}
