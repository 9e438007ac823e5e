package protocol

import (
	"strings"
	"testing"
)

// A version the build set is printed as it is; "dev" gains the Go version
// from the build info.
func TestBinaryVersion(t *testing.T) {
	if got := BinaryVersion("v1.2.3"); got != "v1.2.3" {
		t.Errorf("BinaryVersion(v1.2.3) = %q", got)
	}
	if got := BinaryVersion("dev"); !strings.HasPrefix(got, "dev") || !strings.Contains(got, "go1.") {
		t.Errorf("BinaryVersion(dev) = %q; want dev ... go1.x", got)
	}
}
