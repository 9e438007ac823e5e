package e2e

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string { return tcpServer(t, "") }

// tcpServer serves loopback connections until the test ends: each is
// greeted with greeting's line (none when empty), then echoed.
func tcpServer(t *testing.T, greeting string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if greeting != "" {
					if _, err := c.Write([]byte(greeting + "\n")); err != nil {
						return
					}
				}
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got, err := r.ReadString('\n')
	if err != nil || got != msg+"\n" {
		t.Fatalf("echo of %q: got %q, %v", msg, got, err)
	}
}

func TestProxyPauseCutRestore(t *testing.T) {
	p, err := NewProxy(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	roundTrip(t, c, r, "hello")

	// Paused: the write is accepted, but nothing comes back until Restore.
	p.Pause()
	if _, err := c.Write([]byte("held\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := r.ReadString('\n'); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read while paused: %v, want a deadline error", err)
	}
	c.SetReadDeadline(time.Time{})
	p.Restore()
	r = bufio.NewReader(c) // the timed-out reader may hold a partial read state
	if got, err := r.ReadString('\n'); err != nil || got != "held\n" {
		t.Fatalf("after restore: %q, %v", got, err)
	}

	// Cut: the open connection is closed and new ones are refused.
	p.Cut()
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("read on a cut connection succeeded")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err == nil {
		c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c2.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a connection made while cut was not closed: %v", err)
		}
		c2.Close()
	}

	p.Restore()
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	roundTrip(t, c3, bufio.NewReader(c3), "again")
}

// nameServer greets every connection with its name and then echoes.
func nameServer(t *testing.T, name string) string { return tcpServer(t, name) }

// deadAddr is a loopback address nothing listens on (a killed replica).
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// greet connects through b and returns the name of the server reached,
// keeping the connection open until the test ends.
func greet(t *testing.T, b *Balancer) (string, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a bound on a hang, not an assertion
	name, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("greeting through the balancer: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	return strings.TrimSpace(name), c
}

func TestBalancer(t *testing.T) {
	a, b, c := nameServer(t, "a"), nameServer(t, "b"), nameServer(t, "c")
	for _, tc := range []struct {
		name    string
		targets []string
		change  func(lb *Balancer)
		want    []string // the servers reached by successive connections
	}{
		{name: "round robin in order", targets: []string{a, b, c}, want: []string{"a", "b", "c", "a", "b"}},
		{name: "a dead target is skipped", targets: []string{a, deadAddr(t), c}, want: []string{"a", "c", "c", "a", "c"}},
		{name: "no target answers", targets: []string{deadAddr(t)}, want: []string{""}},
		{
			name: "replace: a restarted replica on a new port", targets: []string{a, deadAddr(t)},
			change: func(lb *Balancer) {
				if !lb.Replace(lb.Targets()[1], b) {
					t.Fatal("Replace: target not found")
				}
			},
			want: []string{"a", "b", "a", "b"},
		},
		{
			name: "remove and add", targets: []string{a, b},
			change: func(lb *Balancer) {
				if !lb.Remove(a) || lb.Remove(a) {
					t.Fatal("Remove: want true, then false")
				}
				lb.Add(c)
			},
			want: []string{"b", "c", "b", "c"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lb, err := NewBalancer(tc.targets...)
			if err != nil {
				t.Fatal(err)
			}
			defer lb.Close()
			if tc.change != nil {
				tc.change(lb)
			}
			var got []string
			for range tc.want {
				conn, err := net.Dial("tcp", lb.Addr())
				if err != nil {
					t.Fatal(err)
				}
				conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // a bound on a hang, not an assertion
				name, _ := bufio.NewReader(conn).ReadString('\n')
				conn.Close()
				got = append(got, strings.TrimSpace(name))
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("connections reached %q, want %q", got, tc.want)
			}
		})
	}
}

// Holding says where open connections are, and Cut closes them all and
// refuses new ones until Restore.
func TestBalancerHoldingCutRestore(t *testing.T) {
	a, b := nameServer(t, "a"), nameServer(t, "b")
	lb, err := NewBalancer(a, b)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	_, c1 := greet(t, lb)
	_, c2 := greet(t, lb)
	_, c3 := greet(t, lb)
	if h := lb.Holding(); h[a] != 2 || h[b] != 1 || len(h) != 2 {
		t.Fatalf("holding %v, want 2 on a and 1 on b", h)
	}
	lb.Cut()
	for i, c := range []net.Conn{c1, c2, c3} {
		c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a bound on a hang, not an assertion
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection %d still open after Cut: %v", i+1, err)
		}
	}
	if c, err := net.Dial("tcp", lb.Addr()); err == nil {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a connection made while cut was not closed: %v", err)
		}
		c.Close()
	}
	lb.Restore()
	if name, _ := greet(t, lb); name != "a" && name != "b" {
		t.Fatalf("after Restore reached %q", name)
	}
}

// A race a child built with -race reports (on stderr, between lines of
// "=") is counted, so that TestMain fails the run: the binaries were
// built with the race detector, and its reports went only to a test's
// log, which a passing test does not show. The report here is a shell's
// imitation; the count is given back so the run itself does not fail.
func TestChildRaceReportCounted(t *testing.T) {
	before := ChildRaces()
	p, err := Start(t.Logf, "racer", nil, "sh", "-c", `printf '==================\nWARNING: DATA RACE\nWrite at 0x1 by goroutine 7:\n==================\n' >&2`)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	got := ChildRaces() - before
	childRaces.Add(-got)
	if got != 1 {
		t.Fatalf("%d races counted; want 1", got)
	}
}

// A child still running a grace period after Stop's SIGINT is counted,
// so that TestMain fails the run: Stop's SIGKILL used to end such a
// shutdown hang quietly (agentd once hung there and only a test that
// waited on agentd's exit found it). rein-server, which exits on SIGINT,
// is not counted. The counts are given back so the run itself does not
// fail.
func TestChildHangCounted(t *testing.T) {
	t.Run("exits on SIGINT", func(t *testing.T) {
		// A Go binary that asks for SIGINT gets it even when the suite
		// was started with SIGINT ignored (a background job of a
		// non-interactive shell), which a shell script would inherit.
		e := newEnv(t)
		before := ChildHangs()
		e.srv.Stop(15 * time.Second)
		if got := ChildHangs() - before; got != 0 {
			childHangs.Add(-got)
			t.Fatalf("rein-server: %d hangs counted; want 0", got)
		}
	})
	t.Run("ignores SIGINT", func(t *testing.T) {
		before := ChildHangs()
		// An ignored signal stays ignored in the children (sleep too).
		p, err := Start(t.Logf, "hanger", nil, "sh", "-c", `trap '' INT; echo ready; sleep 60`)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.WaitLine(t.Context(), "ready"); err != nil {
			t.Fatal(err)
		}
		p.Stop(time.Second)
		got := ChildHangs() - before
		childHangs.Add(-got)
		if got != 1 {
			t.Fatalf("%d hangs counted; want 1", got)
		}
	})
}
