package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestAgentPinsAgree keeps every mention of an agent CLI's version in the
// repository equal to the version the Makefile installs and tests
// (make test-agents). The Dockerfile once shipped Codex 0.169.0 while the
// adapters were tested against 0.171.0, and nothing noticed. It compares
// the repository's own pins with each other, not with a version written
// here, so an upgrade is one edit of the Makefile plus the mentions this
// test then names.
func TestAgentPinsAgree(t *testing.T) {
	root := filepath.Join("..")
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^([A-Z_]+_VERSION)\s*:=\s*(\S+)`).FindAllStringSubmatch(string(mk), -1) {
		vars[m[1]] = m[2]
	}
	// package -> the Makefile variable its npm install uses.
	pkgVar := map[string]string{}
	for _, m := range regexp.MustCompile(`npm install [^\n]*?((?:@[a-z0-9-]+/)?[a-z0-9-]+)@\$\(([A-Z_]+_VERSION)\)`).FindAllStringSubmatch(string(mk), -1) {
		if _, ok := vars[m[2]]; !ok {
			t.Fatalf("Makefile installs %s@$(%s) but sets no %s", m[1], m[2], m[2])
		}
		pkgVar[m[1]] = m[2]
	}
	if len(pkgVar) < 2 {
		t.Fatalf("found %d npm pins in the Makefile (%v): the pattern no longer matches it", len(pkgVar), pkgVar)
	}

	var files []string
	for _, glob := range []string{"*.md", "*/*.md", "deploy/*", "scripts/*"} {
		m, err := filepath.Glob(filepath.Join(root, glob))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	// Each package's two patterns, compiled once: pkg@1.2.3 in a doc or
	// a RUN line, ARG CODEX_VERSION=1.2.3 in a Dockerfile.
	type pin struct {
		pkg, v, want string
		mention, arg *regexp.Regexp
	}
	var pins []pin
	for pkg, v := range pkgVar {
		pins = append(pins, pin{pkg, v, vars[v],
			regexp.MustCompile(regexp.QuoteMeta(pkg) + `@([0-9][0-9A-Za-z.+-]*)`),
			regexp.MustCompile(`^ARG\s+` + v + `=(\S+)`)})
	}
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, p := range pins {
				for _, m := range p.mention.FindAllStringSubmatch(line, -1) {
					checked++
					if m[1] != p.want {
						t.Errorf("%s:%d: %s@%s; the Makefile installs and tests %s (%s)", f, i+1, p.pkg, m[1], p.want, p.v)
					}
				}
				if m := p.arg.FindStringSubmatch(line); m != nil {
					checked++
					if m[1] != p.want {
						t.Errorf("%s:%d: ARG %s=%s; the Makefile installs and tests %s", f, i+1, p.v, m[1], p.want)
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no pinned agent version found in the docs or deploy/: the patterns no longer match them")
	}
	t.Logf("checked %d mentions of %d pinned agent CLIs against the Makefile", checked, len(pkgVar))
}
