package httpapi

import (
	"fmt"
	"net/http"
	"runtime/debug"
)

// offStack runs f on a goroutine of its own and waits for it, re-raising
// a panic of f on the caller's goroutine.
//
// Why: a stream's handler goroutine lives as long as the stream, and Go
// gives a grown goroutine stack back only when a garbage collection finds
// less than a quarter of it in use. Opening a stream reads the store
// (modernc.org/sqlite's translated C runs deep) and writes the response
// header (net/http's chunkWriter.writeHeader alone has a 2.8 KiB frame):
// on the handler goroutine that grows its stack to 16 KiB, which an idle
// stream, using some 3.5 KiB, then keeps for its whole life. On a
// goroutine that ends, that depth is paid once and released.
func offStack(f func()) {
	done := make(chan any, 1)
	go func() {
		defer func() {
			p := recover()
			if p != nil && p != http.ErrAbortHandler {
				// The caller's re-raise has its own stack; keep f's,
				// which says where it failed (net/http logs the value).
				p = &offStackPanic{value: p, stack: debug.Stack()}
			}
			done <- p
		}()
		f()
	}()
	if p := <-done; p != nil {
		panic(p)
	}
}

// offStackPanic is a panic of a function offStack ran, with the stack of
// the goroutine it ran on.
type offStackPanic struct {
	value any
	stack []byte
}

func (p *offStackPanic) Error() string {
	return fmt.Sprintf("%v\n\ngoroutine of offStack:\n%s", p.value, p.stack)
}

// Unwrap returns the panic's value when it is an error.
func (p *offStackPanic) Unwrap() error {
	err, _ := p.value.(error)
	return err
}
