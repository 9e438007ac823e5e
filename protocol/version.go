package protocol

import "runtime/debug"

// BinaryVersion is what every Rein binary's --version prints: set, the
// version the build stamped (go build -ldflags "-X main.version=v1.2.3";
// the Makefile passes `git describe`), or, when set is "dev", "dev" with
// the VCS revision (marked "+dirty" when the tree had changes) and the Go
// version from the binary's build info. It lives here because it is the
// one piece of code every binary of both modules shares.
func BinaryVersion(set string) string {
	if set != "dev" {
		return set
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
