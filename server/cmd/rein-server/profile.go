package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// profileEnv names a file for a CPU profile of the whole run, written when
// the server stops cleanly (SIGINT/SIGTERM). It is for measuring the real
// binary under a load such as rein-bench's, not an operator setting, so it
// is an environment variable and not a flag in --help.
const profileEnv = "REIN_CPU_PROFILE"

// startProfile starts the CPU profile profileEnv asks for and returns what
// stops it and closes the file; with profileEnv unset it does nothing.
func startProfile() (stop func() error, err error) {
	path := os.Getenv(profileEnv)
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", profileEnv, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%s: start cpu profile: %w", profileEnv, err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("%s: %w", profileEnv, err)
		}
		return nil
	}, nil
}
