package loadgen

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPUSeconds is a process's user+system CPU time so far (0 when it cannot
// be read).
func CPUSeconds(pid int) float64 {
	// utime and stime are fields 14 and 15 of the whole line.
	f := statFields(pid)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// MemKiB reads a memory field of /proc/PID/status in KiB: VmRSS (resident
// now) or VmHWM (peak). 0 when it cannot be read.
func MemKiB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			v, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return v
		}
	}
	return 0
}

// FilesSize is the total size of the files that exist among paths (a
// SQLite database with its -wal file, say).
func FilesSize(paths ...string) (int64, error) {
	var n int64
	for _, p := range paths {
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("size of %s: %w", p, err)
		}
		n += st.Size()
	}
	return n, nil
}

// statFields are the fields of /proc/PID/stat after the parenthesised
// command name (which may hold spaces): the state first, then the parent's
// pid. nil when the process is gone.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
}

// Alive reports whether pid is a running process: neither gone nor a
// zombie waiting for its parent.
func Alive(pid int) bool {
	f := statFields(pid)
	return len(f) > 0 && f[0] != "Z"
}

// Children returns the pids of the live processes whose parent is pid and
// whose command line holds name: the tests of the bench's tools find the
// servers they started with it.
func Children(pid int, name string) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("children of %d: %w", pid, err)
	}
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := statFields(p)
		if len(f) < 2 || f[0] == "Z" || f[1] != strconv.Itoa(pid) {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		if err == nil && strings.Contains(string(cmdline), name) {
			out = append(out, p)
		}
	}
	return out, nil
}

// WaitChildren polls Children(pid, name) every millisecond until it finds
// one, for at most timeout.
func WaitChildren(pid int, name string, timeout time.Duration) ([]int, error) {
	deadline := time.Now().Add(timeout)
	for {
		found, err := Children(pid, name)
		if err != nil || len(found) > 0 {
			return found, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no child of %d running %q within %v", pid, name, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}
