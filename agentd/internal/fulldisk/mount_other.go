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
