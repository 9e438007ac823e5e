//go:build !linux

package process

import (
	"errors"
	"syscall"
)

func becomeSubreaper() error { return errors.ErrUnsupported }

// dieWithParent: no such signal outside Linux; the next agentd's sweep
// (KillMarked) still finds what the agent left, where /proc exists.
func dieWithParent(*syscall.SysProcAttr) {}
