// Package writetest checks, for tests, that code hands big data on to
// its writer as it is: a copy of a tool's whole output per reader is what
// several of Rein's memory fixes took away.
package writetest

import (
	"io"
	"runtime"
)

// AsIs calls write with a writer that takes everything, and reports
// whether one of the writes it got was data itself (not a copy) and how
// many bytes write allocated meanwhile.
func AsIs(data []byte, write func(io.Writer) error) (asIs bool, alloc uint64, err error) {
	w := writerFunc(func(p []byte) (int, error) {
		if len(p) == len(data) && len(p) > 0 && &p[0] == &data[0] {
			asIs = true
		}
		return len(p), nil
	})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err = write(w)
	runtime.ReadMemStats(&after)
	return asIs, after.TotalAlloc - before.TotalAlloc, err
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
