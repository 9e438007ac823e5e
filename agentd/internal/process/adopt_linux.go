package process

import "syscall"

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER (linux/prctl.h), which
// the syscall package does not name.
const prSetChildSubreaper = 36

func becomeSubreaper() error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		return errno
	}
	return nil
}

// dieWithParent has the kernel SIGKILL the agent when the thread that
// started it exits, which in agentd (no goroutine of it locks a thread)
// is when agentd itself does: killed, crashed, or out of memory, it can
// no longer stop the agent, read it or tell its end, and an agent that
// does not watch its stdin would run on unsupervised.
func dieWithParent(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }
