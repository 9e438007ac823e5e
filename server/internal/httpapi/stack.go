package httpapi

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
		defer func() { done <- recover() }()
		f()
	}()
	if p := <-done; p != nil {
		panic(p)
	}
}
