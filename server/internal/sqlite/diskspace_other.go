//go:build !linux && !darwin && !freebsd

package sqlite

// freeSpace is not known here: errors go without it.
func freeSpace(string) (uint64, bool) { return 0, false }
