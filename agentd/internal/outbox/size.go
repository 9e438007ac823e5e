package outbox

// Bytes is the size of the log on disk that Options.MaxBytes bounds: the
// records the server has not acknowledged plus acknowledged ones not yet
// compacted away. For metrics: at MaxBytes, Append waits.
func (l *Log) Bytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.segs) == 0 {
		return 0
	}
	return l.w - l.segs[0].base
}
