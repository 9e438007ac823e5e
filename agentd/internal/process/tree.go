package process

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"syscall"
)

// Descendants returns the pids of every process below pid (its children,
// their children, ...), read from /proc. Processes that escaped the tree
// (double fork, reparented to init) are not found.
func Descendants(pid int) (map[int]bool, error) {
	procs, err := list()
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for p, info := range procs {
		children[info.ppid] = append(children[info.ppid], p)
	}
	out := map[int]bool{}
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if !out[c] {
				out[c] = true
				queue = append(queue, c)
			}
		}
	}
	return out, nil
}

// procInfo is what list reads of a process.
type procInfo struct {
	ppid   int
	zombie bool // exited, not yet waited for
}

// list reads every process's parent and state from /proc.
func list() (map[int]procInfo, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	out := map[int]procInfo{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parens.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(b[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, err := strconv.Atoi(string(f[1]))
		if err != nil {
			continue
		}
		out[p] = procInfo{ppid: ppid, zombie: string(f[0]) == "Z"}
	}
	return out, nil
}

// KillNew kills every process below pid that is not in keep: it stops
// them first, scanning again until no new one appears (a process forked
// while the others were being stopped would otherwise escape to init
// when its parent dies), then kills them all. It returns how many it
// killed, also with an error: it kills what it can.
func KillNew(pid int, keep map[int]bool) (int, error) { return killNewWith(pid, keep, syscall.Kill) }

// killNewWith is KillNew sending its signals through signal (see
// stopThenKillWith).
func killNewWith(pid int, keep map[int]bool, signal func(int, syscall.Signal) error) (int, error) {
	killed, err := stopThenKillWith(func() ([]int, error) {
		below, err := Descendants(pid)
		return slices.Collect(maps.Keys(below)), err
	}, keep, signal)
	return len(killed), err
}

// stopThenKill stops (SIGSTOP) every process find returns but those in
// keep, calling it again until no new one appears, then kills them all.
// A stopped process cannot fork, so nothing escapes between the scans
// and the kill. It returns the processes it killed.
//
// Whatever fails on the way (a scan, a SIGSTOP, a SIGKILL), every
// process it stopped is still sent SIGKILL before it returns: one left
// stopped would hold its files and memory until someone resumed it, and
// nobody would. A process that cannot be stopped is not counted as killed,
// and the others are stopped and killed all the same.
func stopThenKill(find func() ([]int, error), keep map[int]bool) (map[int]bool, error) {
	return stopThenKillWith(find, keep, syscall.Kill)
}

// stopThenKillWith is stopThenKill sending its signals through signal,
// which a test replaces to make them fail (as root here none does).
func stopThenKillWith(find func() ([]int, error), keep map[int]bool, signal func(int, syscall.Signal) error) (map[int]bool, error) {
	stopped := map[int]bool{}
	var errs []error
	tried := map[int]bool{}
	for range 10 {
		now, err := find()
		if err != nil {
			errs = append(errs, err)
			break
		}
		fresh := 0
		for _, p := range now {
			if keep[p] || tried[p] {
				continue
			}
			fresh++
			tried[p] = true
			if err := signal(p, syscall.SIGSTOP); err != nil && !errors.Is(err, syscall.ESRCH) {
				// Go on: the others are still to be stopped and killed.
				errs = append(errs, fmt.Errorf("stop process %d: %w", p, err))
				continue
			}
			stopped[p] = true
		}
		if fresh == 0 {
			break
		}
	}
	for p := range stopped {
		if err := signal(p, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill process %d: %w", p, err))
			delete(stopped, p)
		}
	}
	return stopped, errors.Join(errs...) // nil when nothing failed
}
