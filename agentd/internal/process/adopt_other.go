//go:build !linux

package process

import "errors"

func becomeSubreaper() error { return errors.ErrUnsupported }
