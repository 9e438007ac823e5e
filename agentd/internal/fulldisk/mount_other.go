//go:build !linux

package fulldisk

import (
	"errors"
	"testing"
)

func mount(string, int64) error { return errors.New("tmpfs is Linux's") }

func unmount(string) error { return nil }

func breakable(testing.TB) (string, string, error) {
	return "", "", errors.New("ext4 and loop devices are Linux's")
}

func failExt4(string) error { return errors.New("ext4 is Linux's") }

func unreadable(testing.TB) (string, string, string, error) {
	return "", "", "", errors.New("ext4 and loop devices are Linux's")
}

func cutAt(string, string, string, int64) (func() error, error) {
	return nil, errors.New("loop devices are Linux's")
}
