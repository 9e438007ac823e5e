package fakeserver

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// WaitProcess waits for a process whose /proc cmdline is cmdline (its
// arguments, each ended by a NUL) and returns its pid. Live agent tests use
// it to find the command a tool started.
func WaitProcess(tb testing.TB, cmdline string) int {
	tb.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if pid, perr := strconv.Atoi(e.Name()); err == nil && perr == nil && string(b) == cmdline {
				return pid
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no process runs %q", cmdline)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitGone waits for pid to exit (a zombie counts as gone).
func WaitGone(tb testing.TB, pid int) {
	tb.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && strings.HasPrefix(string(b[i+1:]), " Z") {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("process %d, started by the aborted turn, still runs", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
