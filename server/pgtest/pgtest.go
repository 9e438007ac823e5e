// Package pgtest starts throwaway PostgreSQL clusters for tests: a real
// server (Debian's postgresql package, or any initdb/postgres on PATH) in a
// temporary directory on a free loopback port, stopped and removed when the
// test binary ends.
//
// PostgreSQL refuses to run as root, so under root the cluster runs as the
// `postgres` system user (the Debian package creates it). Where no server
// can be started (no binaries, no postgres user) the tests that need one
// skip and say why, except on CI (CI=true), where they fail: CI must run
// them. `make test` installs Debian's postgresql when it is missing.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// and in a test:
//
//	dsn := pgtest.NewDatabase(t) // a fresh, empty database
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	// Dir holds the cluster's data and its Unix socket.
	Dir string
	// Port is the loopback TCP port the server listens on.
	Port int
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
}

var (
	shared     *Cluster
	sharedErr  error
	sharedOnce sync.Once
	dbCounter  atomic.Int64
)

// Main runs the tests and stops the shared cluster, if one was started,
// when they are done. It returns the exit code for os.Exit.
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	return code
}

// Shared returns the test binary's cluster, starting it on first use. It
// skips the test (fails it on CI) when no cluster can be started.
func Shared(tb testing.TB) *Cluster {
	tb.Helper()
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared, sharedErr = Start(ctx)
	})
	if sharedErr != nil {
		var un *UnavailableError
		if errors.As(sharedErr, &un) && os.Getenv("CI") == "" {
			tb.Skipf("PostgreSQL tests skipped: %v", sharedErr)
		}
		tb.Fatalf("start PostgreSQL: %v", sharedErr)
	}
	return shared
}

// NewDatabase creates an empty database on the shared cluster for this test
// and returns its connection string. The database is dropped at cleanup.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	c := Shared(tb)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbCounter.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// WITH (FORCE) ends connections a test left open (PostgreSQL 13+).
		if err := c.exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("drop database %s: %v", name, err)
		}
	})
	return c.DSN(name)
}

// DSN returns the connection string of database db on the cluster.
func (c *Cluster) DSN(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

func (c *Cluster) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// UnavailableError says why no cluster can be started on this machine
// (as opposed to one that was started and failed).
type UnavailableError struct{ Reason string }

func (e *UnavailableError) Error() string { return e.Reason }

// Start initialises and starts a new cluster. Stop it with Stop.
func Start(ctx context.Context) (*Cluster, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	cred, owner, err := runAs()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "rein-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: temp dir: %w", err)
	}
	if owner != nil {
		if err := os.Chown(dir, owner.uid, owner.gid); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: chown %s: %w", dir, err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c := &Cluster{Dir: dir, Port: port, done: make(chan struct{}), log: &bytes.Buffer{}}
	// fsync stays on: tests check durability rules, and a 2xx must mean
	// what it means in production. max_connections leaves room for several
	// replicas' pools in e2e.
	c.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-k", dir, "-p", strconv.Itoa(port), "-c", "listen_addresses=127.0.0.1",
		"-c", "max_connections=300", "-c", "shared_buffers=64MB")
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: start postgres: %w", err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	if err := c.waitReady(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) waitReady(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(pctx, c.DSN("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("pgtest: postgres exited during start:\n%s", c.log.String())
		case <-ctx.Done():
			return fmt.Errorf("pgtest: postgres not ready: %w (last: %v)\n%s", ctx.Err(), err, c.log.String())
		case <-tick.C:
		}
	}
}

// Stop ends the server (a fast shutdown, then SIGKILL) and removes its
// directory.
func (c *Cluster) Stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.done
		}
	}
	os.RemoveAll(c.Dir)
}

type owner struct{ uid, gid int }

// runAs returns the credential to run PostgreSQL with: none when not root,
// the postgres user's when root (PostgreSQL refuses to run as root).
func runAs() (*syscall.Credential, *owner, error) {
	if os.Geteuid() != 0 {
		return nil, nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, nil, &UnavailableError{Reason: "running as root and there is no postgres user to run PostgreSQL as (install Debian's postgresql package: make test does, as root on Debian)"}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, &owner{uid, gid}, nil
}

// findBin finds a directory holding initdb and postgres: REIN_PG_BIN, then
// PATH, then Debian's /usr/lib/postgresql/<version>/bin (newest first).
func findBin() (string, error) {
	if d := os.Getenv("REIN_PG_BIN"); d != "" {
		return d, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		d := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", &UnavailableError{Reason: "no PostgreSQL server binaries (initdb, postgres) found on PATH or in /usr/lib/postgresql/*/bin; install Debian's postgresql package (make test does, as root on Debian) or set REIN_PG_BIN"}
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
