package codex

import (
	"bytes"
	"log/slog"
	"os"
	"testing"
)

// One line over the limit (a command's whole output in an item/completed)
// costs that message, not the app-server: the messages after it are
// still read.
func TestLineOverTheLimitIsDroppedAndReadingGoesOn(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() {
		defer w.Close()
		long := append([]byte(`{"method":"item/completed","params":{"output":"`), bytes.Repeat([]byte("x"), maxLine)...)
		w.Write(append(long, "\"}}\n"...))
		w.Write([]byte(`{"method":"turn/completed","params":{}}` + "\n"))
	}()
	out := make(chan *message)
	go readMessages(r, out, make(chan struct{}), slog.New(slog.DiscardHandler))
	var got []string
	for m := range out {
		got = append(got, m.Method)
	}
	if len(got) != 1 || got[0] != "turn/completed" {
		t.Fatalf("messages read = %q, want only turn/completed (the long line dropped)", got)
	}
}
