//go:build linux || darwin || freebsd

package sqlite

import "syscall"

// freeSpace is what an unprivileged writer may still use on the disk
// holding dir.
func freeSpace(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true
}
