package process

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Orphans of the agent.
//
// A process the agent starts in a session or process group of its own
// (setsid, a daemon's double fork) is out of reach of a signal to the
// agent's group, and once its parent dies the kernel gives it to the
// nearest child subreaper, or to init: it runs on unsupervised, holding
// the agent's pipes, its files and its ports, after agent_exited said the
// agent was gone. AdoptOrphans makes this process that subreaper, so they
// come to it instead; when an agent's run ends (wait), every process it
// adopted is killed and reaped, whole trees, before the exit is reported,
// and one that exits while the agent runs is reaped at once, not left a
// zombie (as PID 1 of a container, this process gets every orphan of the
// container whether it asks or not: without reaping they would pile up).
//
// Which of this process's children are orphans is told by elimination:
// a child that is not an agent Start started and Wait has not yet seen
// exit. That would take this process's other children for orphans too
// (killed, and reaped, so that their own wait fails), so AdoptOrphans is
// for a process whose only children are its agents, as cmd/agentd's are;
// a library caller that starts children of its own must not call it.
// Nothing is ever waited for by pid -1, and an agent is registered under
// the lock its fork holds, so an agent's exit status is always its own
// Wait's.
var adoption struct {
	// mu is held from a Start's fork to the agent's registration in
	// live, and while orphans are listed and reaped: a child forked
	// meanwhile is never taken for an orphan.
	mu   sync.Mutex
	on   bool
	live map[int]bool // agents started and not yet waited for
}

// AdoptOrphans makes this process the child subreaper (Linux's
// PR_SET_CHILD_SUBREAPER) and from then on kills and reaps what the
// agents it starts leave behind; see above for who may call it. stop
// ends the reaping of exited orphans while agents run (the kill at a
// run's end goes on) and waits for it. On other systems it returns
// errors.ErrUnsupported.
func AdoptOrphans() (stop func(), err error) {
	if err := becomeSubreaper(); err != nil {
		return nil, fmt.Errorf("adopt orphans: become child subreaper: %w", err)
	}
	adoption.mu.Lock()
	adoption.on = true
	adoption.mu.Unlock()
	// An orphan that exits while its agent still runs is reaped at its
	// SIGCHLD rather than at the run's end: a long run that orphans many
	// short processes would otherwise fill the pid table with zombies.
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, syscall.SIGCHLD)
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-chld:
				_ = reapExitedOrphans()
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(chld)
			close(done)
			<-stopped
		})
	}, nil
}

// registerLocked notes a started agent: it is no orphan. Called with
// adoption.mu held.
func registerLocked(pid int) {
	if adoption.live == nil {
		adoption.live = map[int]bool{}
	}
	adoption.live[pid] = true
}

// unregister forgets an agent Wait has seen exit.
func unregister(pid int) {
	adoption.mu.Lock()
	delete(adoption.live, pid)
	adoption.mu.Unlock()
}

// orphansLocked lists this process's children that are not live agents,
// and whether each has exited (a zombie).
func orphansLocked() (map[int]bool, error) {
	procs, err := list()
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	out := map[int]bool{}
	for pid, p := range procs {
		if p.ppid == self && !adoption.live[pid] {
			out[pid] = p.zombie
		}
	}
	return out, nil
}

// reapExitedOrphans reaps the orphans that have exited.
func reapExitedOrphans() error {
	adoption.mu.Lock()
	defer adoption.mu.Unlock()
	if !adoption.on {
		return nil
	}
	orphans, err := orphansLocked()
	if err != nil {
		return err
	}
	for pid, zombie := range orphans {
		if zombie {
			reap(pid)
		}
	}
	return nil
}

// maxOrphanRounds bounds KillOrphans: each round reaps the orphans of the
// last, whose own children (killed with them) come to this process next.
const maxOrphanRounds = 64

// KillOrphans kills every process this process adopted (AdoptOrphans)
// and everything below them, and reaps them; it returns how many were
// still running. It does nothing unless AdoptOrphans was called. Agents
// Start started, and whatever runs below them, are left alone.
func KillOrphans() (int, error) { return killOrphans(nil) }

// Adopted lists the processes this process adopted (AdoptOrphans) that
// still run: what KillNewOrphans is to spare. It is empty unless
// AdoptOrphans was called.
func Adopted() (map[int]bool, error) {
	adoption.mu.Lock()
	defer adoption.mu.Unlock()
	out := map[int]bool{}
	if !adoption.on {
		return out, nil
	}
	orphans, err := orphansLocked()
	if err != nil {
		return nil, fmt.Errorf("list adopted processes: %w", err)
	}
	for pid, zombie := range orphans {
		if !zombie {
			out[pid] = true
		}
	}
	return out, nil
}

// KillNewOrphans is KillOrphans sparing the adopted processes in keep (an
// earlier Adopted), though not what they orphan meanwhile: an aborted
// turn's processes that left the agent's tree are killed, and those that
// ran before it are not.
func KillNewOrphans(keep map[int]bool) (int, error) { return killOrphans(keep) }

func killOrphans(keep map[int]bool) (int, error) { return killOrphansWith(keep, syscall.Kill) }

// killOrphansWith is killOrphans sending its signals through signal, which
// a test replaces to make them fail (as root here none does).
func killOrphansWith(keep map[int]bool, signal func(int, syscall.Signal) error) (int, error) {
	adoption.mu.Lock()
	defer adoption.mu.Unlock()
	if !adoption.on {
		return 0, nil
	}
	killed := 0
	for range maxOrphanRounds {
		orphans, err := orphansLocked()
		if err != nil {
			return killed, fmt.Errorf("kill orphans: %w", err)
		}
		for pid, zombie := range orphans {
			// A kept one that exited is reaped with the others.
			if keep[pid] && !zombie {
				delete(orphans, pid)
			}
		}
		if len(orphans) == 0 {
			return killed, nil
		}
		var errs []error
		// unkilled: the orphans the SIGKILL did not reach. Waiting for
		// one would block until it exits by itself: a non-root agentd's
		// orphan that became root (sudo's command, once sudo died) is
		// out of its reach, and the run's end, the aborted turn's reap
		// under the supervisor's lock, or agentd's exit at a second
		// signal (agentd.Killer) would hang for as long as it runs. The
		// SIGCHLD reaper (AdoptOrphans) reaps it when it exits.
		unkilled := map[int]bool{}
		for pid, zombie := range orphans {
			if zombie {
				continue
			}
			// Stopped first, so that it forks nothing while the tree
			// below it is found and killed.
			if err := signal(pid, syscall.SIGSTOP); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("stop process %d: %w", pid, err))
			}
			n, err := killNewWith(pid, nil, signal)
			killed += n
			if err != nil {
				errs = append(errs, err)
			}
			if err := signal(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("kill process %d: %w", pid, err))
				unkilled[pid] = true
				continue
			}
			killed++
		}
		for pid := range orphans {
			if !unkilled[pid] {
				reap(pid)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return killed, fmt.Errorf("kill orphans: %w", err)
		}
	}
	return killed, fmt.Errorf("kill orphans: still adopting new ones after %d rounds", maxOrphanRounds)
}

// reap waits for the child pid, which has exited or been killed.
func reap(pid int) {
	var ws syscall.WaitStatus
	for {
		if _, err := syscall.Wait4(pid, &ws, 0, nil); !errors.Is(err, syscall.EINTR) {
			return
		}
	}
}
