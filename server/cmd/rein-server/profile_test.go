package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// REIN_CPU_PROFILE writes a CPU profile (gzip-compressed protobuf) when
// the run stops; unset, nothing is written; an unwritable path is an
// error naming the variable.
func TestCPUProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	t.Setenv(profileEnv, path)
	stop, err := startProfile()
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		t.Errorf("profile starts %x; want gzip", b[:min(len(b), 2)])
	}

	t.Setenv(profileEnv, "")
	stop, err = startProfile()
	if err != nil || stop() != nil {
		t.Fatalf("unset: %v", err)
	}

	t.Setenv(profileEnv, filepath.Join(t.TempDir(), "missing", "cpu.pprof"))
	if _, err := startProfile(); err == nil || !strings.Contains(err.Error(), profileEnv) {
		t.Errorf("unwritable path: %v; want an error naming %s", err, profileEnv)
	}
}
