package main

import "runtime/debug"

// versionString is what --version prints: the version the build set, or
// "dev" with the VCS revision (marked "+dirty" when the tree had changes)
// and the Go version from the binary's build info.
func versionString() string {
	if version != "dev" {
		return version
	}
	v := "dev"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " (" + rev + dirty + ")"
	}
	return v + " " + bi.GoVersion
}
