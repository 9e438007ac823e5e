//go:build !linux

package fulldisk

import "errors"

func mount(string, int64) error { return errors.New("tmpfs is Linux's") }

func unmount(string) error { return nil }
