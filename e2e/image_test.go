package e2e

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestImageAgentdScratch builds deploy/agentd-prebuilt.Dockerfile (FROM
// scratch plus a static agentd built here: no registry is needed) with
// buildah or podman, exports the image as an OCI layout, unpacks its layers
// into a directory and runs agentd --version from there. Running the
// container itself may not be allowed where tests run, so the test never
// does. The builder keeps its storage in t.TempDir(), leaving the host's
// images alone.
func TestImageAgentdScratch(t *testing.T) {
	builder, args := imageBuilder(t)
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()

	// A static binary, as the Dockerfiles build it.
	bctx := filepath.Join(dir, "context")
	const version = "image-test-1"
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", filepath.Join(bctx, "agentd"), "./cmd/agentd")
	build.Dir = filepath.Join(root, "agentd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build agentd: %v\n%s", err, out)
	}

	storage := []string{"--root", filepath.Join(dir, "storage"), "--runroot", filepath.Join(dir, "run"), "--storage-driver", "vfs"}
	run := func(what string, a ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, builder, append(append([]string(nil), storage...), a...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %s %s: %v\n%s", what, builder, strings.Join(a, " "), err, out)
		}
	}
	image := "localhost/rein-agentd-test:latest"
	run("build the image", append(args, "--isolation", "chroot", "-f", filepath.Join(root, "deploy", "agentd-prebuilt.Dockerfile"), "-t", image, bctx)...)
	layout := filepath.Join(dir, "oci")
	run("export the image", "push", image, "oci:"+layout)
	// The vfs storage holds root-owned files a plain RemoveAll handles;
	// the image goes first so the builder's own bookkeeping is consistent.
	defer exec.Command(builder, append(append([]string(nil), storage...), "rmi", "-f", image)...).Run()

	rootfs := filepath.Join(dir, "rootfs")
	cfg := unpackOCI(t, layout, rootfs)
	if cfg.Config.User != "65532:65532" {
		t.Errorf("image user %q, want 65532:65532 (non-root)", cfg.Config.User)
	}
	if got := strings.Join(cfg.Config.Entrypoint, " "); got != "/usr/local/bin/agentd" {
		t.Errorf("entrypoint %q", got)
	}
	entries, err := os.ReadDir(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "usr" {
		t.Errorf("FROM scratch image holds %v; want only usr/local/bin/agentd", names)
	}
	out, err := exec.CommandContext(ctx, filepath.Join(rootfs, "usr", "local", "bin", "agentd"), "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("agentd --version from the image: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "agentd version "+version {
		t.Fatalf("agentd --version from the image printed %q", got)
	}
}

// imageBuilder returns buildah (with its build subcommand) or podman, or
// skips saying why.
func imageBuilder(t *testing.T) (string, []string) {
	if p, err := exec.LookPath("buildah"); err == nil {
		return p, []string{"bud"}
	}
	if p, err := exec.LookPath("podman"); err == nil {
		return p, []string{"build"}
	}
	t.Skip("SKIP image test: neither buildah nor podman is installed; `make image-deps` installs buildah (as root on Debian)")
	return "", nil
}

// ociConfig is the part of an OCI image config the test checks.
type ociConfig struct {
	Config struct {
		User       string   `json:"User"`
		Entrypoint []string `json:"Entrypoint"`
	} `json:"config"`
}

// unpackOCI extracts the single image of an OCI layout into dst, layer by
// layer, and returns its config.
func unpackOCI(t *testing.T, layout, dst string) ociConfig {
	t.Helper()
	readJSON := func(p string, v any) {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
	}
	blob := func(d desc) string {
		algo, hex, _ := strings.Cut(d.Digest, ":")
		return filepath.Join(layout, "blobs", algo, hex)
	}
	var index struct{ Manifests []desc }
	readJSON(filepath.Join(layout, "index.json"), &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("OCI layout has %d manifests, want 1", len(index.Manifests))
	}
	var manifest struct {
		Config desc
		Layers []desc
	}
	readJSON(blob(index.Manifests[0]), &manifest)
	var cfg ociConfig
	readJSON(blob(manifest.Config), &cfg)
	if len(manifest.Layers) == 0 {
		t.Fatal("the image has no layers")
	}
	for _, l := range manifest.Layers {
		if err := untarLayer(blob(l), l.MediaType, dst); err != nil {
			t.Fatalf("layer %s: %v", l.Digest, err)
		}
	}
	return cfg
}

// untarLayer extracts one layer (plain or gzip tar) into dst: regular
// files and directories, which is all a scratch image of a binary has.
func untarLayer(path, mediaType, dst string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(mediaType, "gzip") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		defer gz.Close()
		r = gz
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if name == "." || strings.HasPrefix(name, "..") || filepath.IsAbs(name) {
			if name == "." {
				continue
			}
			return fmt.Errorf("layer entry %q escapes the root", h.Name)
		}
		p := filepath.Join(dst, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755|0o400)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("layer entry %q: unexpected type %c in a scratch image", h.Name, h.Typeflag)
		}
	}
}
