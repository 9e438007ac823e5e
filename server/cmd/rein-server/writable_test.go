//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rein-ai/rein/server/internal/disktest"
)

// TestUnwritableDatabaseRefused: a --db file rein-server cannot write is
// refused at start, exit 1, naming the flag, the file and the reason,
// before anything listens. It used to be opened read-only by SQLite:
// /healthz answered 200 and every write 503, as on a full disk.
func TestUnwritableDatabaseRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "rein-server")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	db := filepath.Join(dir, "rein.db")
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // start, create the database, stop
	var out, errOut strings.Builder
	if err := newApp(&out, &errOut).RunContext(ctx, []string{"rein-server", "--port", "0", "--db", db}); err != nil {
		t.Fatalf("create the database: %v\n%s", err, errOut.String())
	}
	disktest.Unwritable(t, db)

	srv := exec.Command(bin, "--port", "0", "--db", db)
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	srv.Stderr = &stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	if sc.Scan() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
		t.Fatalf("rein-server started on a database it cannot write: %q", sc.Text())
	}
	err = srv.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("rein-server on an unwritable database: %v; want exit status 1\n%s", err, stderr.String())
	}
	for _, want := range []string{"--db", db, "cannot be written"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q does not say %q", stderr.String(), want)
		}
	}
}
