package agentd

import (
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/rein-ai/rein/agentd/internal/process"
)

// Killer ends the agent at once, from outside Run: cmd/agentd calls Kill
// on a second SIGINT/SIGTERM, when the graceful shutdown (the agent's
// --shutdown-grace, the kill steps, --flush-timeout) is taking longer than
// the operator will wait, and exits right after without waiting for Run.
// Exiting alone would orphan the agent: it runs in a process group of its
// own, which no terminal's ^C and no signal to agentd reaches. Nothing in
// the outbox is lost by such an exit: each event is written there before
// the agent's next line is read (it survives kill -9), and the next
// agentd on the state dir posts it.
//
// The zero value is ready; a nil *Killer (Options.Killer unset) kills
// nothing. Safe for concurrent use.
type Killer struct {
	mu     sync.Mutex
	killed bool
	agent  *process.Process // the running agent; nil between runs
}

// errKilled is what starting an agent returns once Kill has run.
var errKilled = errors.New("agentd was stopped at once (Killer.Kill): no agent starts")

// Kill kills the running agent's process group with SIGKILL, and every
// process below the agent that left its group (a tool in a session of its
// own), and keeps Run from starting another agent. It returns when the
// signals are sent: the processes are gone a moment later. It may be
// called more than once.
func (k *Killer) Kill() error {
	if k == nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.killed = true
	if k.agent == nil {
		return nil
	}
	pid := k.agent.Pid()
	// Stopped first, so that nothing in the group forks while the
	// processes that left it are found; the SIGKILL below ends the
	// stopped ones too.
	_ = k.agent.Signal(syscall.SIGSTOP)
	_, err := process.KillNew(pid, nil)
	if serr := k.agent.Signal(syscall.SIGKILL); serr != nil {
		err = errors.Join(err, serr)
	}
	// And what agentd adopted (process.AdoptOrphans): processes the agent
	// left outside its tree, which no longer show below it.
	if _, oerr := process.KillOrphans(); oerr != nil {
		err = errors.Join(err, oerr)
	}
	if err != nil {
		return fmt.Errorf("kill agent %d: %w", pid, err)
	}
	return nil
}

// start starts the agent unless Kill has run, holding the lock so that an
// agent Kill does not see cannot start.
func (k *Killer) start(spec process.Spec) (*process.Process, error) {
	if k == nil {
		return process.Start(spec)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.killed {
		return nil, errKilled
	}
	p, err := process.Start(spec)
	if err == nil {
		k.agent = p
	}
	return p, err
}

// exited forgets p once it has been waited for.
func (k *Killer) exited(p *process.Process) {
	if k == nil {
		return
	}
	k.mu.Lock()
	if k.agent == p {
		k.agent = nil
	}
	k.mu.Unlock()
}
