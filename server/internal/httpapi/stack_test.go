package httpapi

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestOffStack(t *testing.T) {
	ran := false
	offStack(func() { ran = true })
	if !ran {
		t.Fatal("offStack returned before f ran")
	}
	recovered := func(f func()) (p any) {
		defer func() { p = recover() }()
		offStack(f)
		return nil
	}
	// net/http ends a response without logging on ErrAbortHandler: it
	// must arrive as it is.
	if p := recovered(func() { panic(http.ErrAbortHandler) }); p != http.ErrAbortHandler {
		t.Errorf("recovered %v; want http.ErrAbortHandler", p)
	}
	// Any other panic arrives with the stack of the goroutine it happened
	// on, which says where (the caller's does not).
	boom := errors.New("boom")
	p := recovered(func() { panic(boom) })
	err, ok := p.(error)
	if !ok || !errors.Is(err, boom) || !strings.Contains(err.Error(), "TestOffStack") {
		t.Errorf("recovered %v; want boom with the stack of TestOffStack's function", p)
	}
}
