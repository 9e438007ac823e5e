package process

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Marked returns the pids of the processes whose environment holds
// marker, a whole "NAME=value" entry, read from /proc/PID/environ, but
// for this process and its ancestors: one started from a shell that
// inherited the marker must not kill itself or what started it. A
// process of another user, whose environment this one may not read, and
// a zombie, whose environment is gone, are not found.
func Marked(marker string) ([]int, error) {
	procs, err := list()
	if err != nil {
		return nil, err
	}
	spare := map[int]bool{}
	for p := os.Getpid(); p > 0 && !spare[p]; p = procs[p].ppid {
		spare[p] = true
	}
	want := []byte(marker)
	var out []int
	for p := range procs {
		if spare[p] {
			continue
		}
		env, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/environ")
		if err != nil {
			continue // exited meanwhile, or not ours to read
		}
		for kv := range bytes.SplitSeq(env, []byte{0}) {
			if bytes.Equal(kv, want) {
				out = append(out, p)
				break
			}
		}
	}
	return out, nil
}

// KillMarked kills every process Marked finds: what the agent of an
// agentd that is gone left running, found by the entry that agentd put in
// its agent's environment and every process below inherited. Like
// KillNew it stops them first, scanning again until no new one appears,
// then kills them; then it waits, at most wait, until none is running. It
// returns how many it killed.
func KillMarked(marker string, wait time.Duration) (int, error) {
	stopped, err := stopThenKill(func() ([]int, error) { return Marked(marker) }, nil)
	if err != nil {
		return len(stopped), err
	}
	// Killed processes linger until the kernel has torn them down (a
	// zombie, waiting for whichever process adopted it, runs no more and
	// is not found); one that escaped the scans above is killed here.
	deadline := time.Now().Add(wait)
	for {
		left, err := Marked(marker)
		if err != nil {
			return len(stopped), err
		}
		if len(left) == 0 {
			return len(stopped), nil
		}
		if time.Now().After(deadline) {
			return len(stopped), fmt.Errorf("%d process(es) still running %v after SIGKILL: %v", len(left), wait, left)
		}
		for _, p := range left {
			if !stopped[p] {
				stopped[p] = true
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}
