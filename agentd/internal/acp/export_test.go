package acp

import "testing"

// SetMaxLine lowers the longest message the ordered reader keeps for the
// rest of t (and restores it after t's other cleanups, its peer's among
// them, registered after this): a test of a message over the limit then
// need not write 64 MiB, which under the race detector on a busy machine
// takes longer than the test waits.
func SetMaxLine(t *testing.T, n int) {
	old := maxLine
	maxLine = n
	t.Cleanup(func() { maxLine = old })
}
