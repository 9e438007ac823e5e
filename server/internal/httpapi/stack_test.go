package httpapi

import (
	"net/http"
	"testing"
)

func TestOffStack(t *testing.T) {
	ran := false
	offStack(func() { ran = true })
	if !ran {
		t.Fatal("offStack returned before f ran")
	}
	// A panic in f is the caller's, as if f ran on its goroutine: net/http
	// recovers a handler's panic (http.ErrAbortHandler ends a response).
	for _, p := range []any{http.ErrAbortHandler, "boom"} {
		func() {
			defer func() {
				if got := recover(); got != p {
					t.Errorf("recovered %v; want %v", got, p)
				}
			}()
			offStack(func() { panic(p) })
		}()
	}
}
