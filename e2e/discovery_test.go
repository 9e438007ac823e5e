package e2e

import (
	"github.com/rein-ai/rein/server/client"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDiscovery reads GET /.well-known/rein.json from the real server
// without a token, and checks its agent protocols against the agentd
// binary's own --protocol help: the server cannot import agentd, so this
// is where the two lists are kept equal.
func TestDiscovery(t *testing.T) {
	e := newEnv(t)
	var d struct {
		Server struct {
			Name, Version string
		}
		Protocol struct{ Version int }
		Auth     struct{ Mode string }
		Agents   []string `json:"agentProtocols"`
		Limits   struct {
			MaxBodyBytes int64
		}
		Features map[string]bool
		Links    map[string]string
	}
	anon, err := client.New(e.srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := anon.Do(e.ctx, "GET", "/.well-known/rein.json", nil, &d); err != nil {
		t.Fatal(err)
	}
	if d.Server.Name != "rein-server" || d.Server.Version == "" || d.Protocol.Version < 1 || d.Auth.Mode != "token" ||
		d.Limits.MaxBodyBytes != 1<<20 || !d.Features["webView"] || d.Links["webView"] != "/" {
		t.Errorf("discovery: %+v", d)
	}
	// The version is the one --version prints ("rein-server version X"):
	// a workspace build records no VCS data, so the toolchain's own says
	// only "(devel)".
	vout, err := exec.Command(bins.Server, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(vout)), "rein-server version ")); d.Server.Version != want {
		t.Errorf("discovery server.version %q; rein-server --version prints %q", d.Server.Version, want)
	}
	out, _ := exec.Command(bins.Agentd, "--help").CombinedOutput()
	m := regexp.MustCompile(`--protocol value\s+agent protocol: ([a-z, ]+?) \(default`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("agentd --help has no --protocol line:\n%s", out)
	}
	help := strings.FieldsFunc(strings.ReplaceAll(string(m[1]), " or ", ","), func(r rune) bool { return r == ',' || r == ' ' })
	slices.Sort(help)
	got := slices.Clone(d.Agents)
	slices.Sort(got)
	if !slices.Equal(got, help) {
		t.Errorf("discovery agentProtocols %v; agentd --help lists %v", d.Agents, help)
	}
}
