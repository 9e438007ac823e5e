package outbox

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rein-ai/rein/agentd/internal/fulldisk"
	"github.com/rein-ai/rein/protocol"
)

func open(t *testing.T, dir string, max int64) *Log {
	t.Helper()
	l, err := Open(Options{Dir: dir, MaxBytes: max})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func appendN(t *testing.T, l *Log, n int, text string) {
	t.Helper()
	for range n {
		if err := l.Append(context.Background(), protocol.Event{Type: protocol.EventTextDelta, Delta: text}); err != nil {
			t.Fatal(err)
		}
	}
}

// drain returns every record Next has, in batches of at most batch.
func drain(t *testing.T, l *Log, batch int) []Record {
	t.Helper()
	var all []Record
	for {
		recs, err := l.Next(batch, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return all
		}
		all = append(all, recs...)
	}
}

func seqs(recs []Record) []int64 {
	var s []int64
	for _, r := range recs {
		s = append(s, r.Seq)
	}
	return s
}

func checkSeqs(t *testing.T, recs []Record, from, to int64) {
	t.Helper()
	if len(recs) != int(to-from+1) {
		t.Fatalf("got agentSeqs %v, want %d..%d", seqs(recs), from, to)
	}
	for i, r := range recs {
		if r.Seq != from+int64(i) {
			t.Fatalf("got agentSeqs %v, want %d..%d", seqs(recs), from, to)
		}
		var ev protocol.Event
		if err := json.Unmarshal(r.Data, &ev); err != nil || ev.AgentSeq != r.Seq {
			t.Fatalf("record %d: payload %s does not carry its agentSeq (%v)", r.Seq, r.Data, err)
		}
	}
}

func TestReopenReplaysWhatWasNotAcked(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 0)
	inst := l.Instance()
	if !strings.HasPrefix(inst, "agentd-") {
		t.Fatalf("instance %q", inst)
	}
	appendN(t, l, 10, "x")
	recs := drain(t, l, 4)
	checkSeqs(t, recs, 1, 10)
	if err := l.Ack(recs[5]); err != nil { // seq 6 stored by the server
		t.Fatal(err)
	}
	if got := l.Pending(); got != 4 {
		t.Fatalf("Pending = %d, want 4", got)
	}
	l.Close()

	l = open(t, dir, 0)
	if l.Instance() != inst {
		t.Fatalf("instance after reopen %q, want %q", l.Instance(), inst)
	}
	if got := l.Pending(); got != 4 {
		t.Fatalf("Pending after reopen = %d, want 4", got)
	}
	checkSeqs(t, drain(t, l, 100), 7, 10)
	appendN(t, l, 1, "y")
	recs = drain(t, l, 100)
	checkAfter(t, recs, 10)
	if got := l.Pending(); got != 5 {
		t.Fatalf("Pending = %d, want 5", got)
	}
	if err := l.Ack(recs[0]); err != nil {
		t.Fatal(err)
	}
	if got := l.Pending(); got != 0 {
		t.Fatalf("Pending after acking everything = %d, want 0", got)
	}
}

// TestAckedFileBeforeAndAfterTheFirstAck: an outbox reopened before the
// server acknowledged anything posts its whole log again without a word
// (Open wrote 0 in "acked"; an older agentd left it empty), while a
// garbled "acked" is warned about and costs the same replay.
func TestAckedFileBeforeAndAfterTheFirstAck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		acked string // written over "acked" before the reopen; "-" leaves it as Open made it
		warn  bool
	}{
		{"never acknowledged", "-", false},
		{"empty, from an older agentd", "", false},
		{"garbled", "12x\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := open(t, dir, 0)
			appendN(t, l, 3, "x")
			l.Close()
			if tc.acked != "-" {
				if err := os.WriteFile(filepath.Join(dir, "acked"), []byte(tc.acked), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var logged strings.Builder
			l, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			checkSeqs(t, drain(t, l, 100), 1, 3)
			if warned := strings.Contains(logged.String(), "unreadable"); warned != tc.warn {
				t.Fatalf("warned: %v, want %v; log:\n%s", warned, tc.warn, logged.String())
			}
		})
	}
}

// checkAfter: one record, past every agentSeq used before. A reopened log
// starts after its reserved block, so it is not necessarily after+1.
func checkAfter(t *testing.T, recs []Record, after int64) {
	t.Helper()
	if len(recs) != 1 || recs[0].Seq <= after {
		t.Fatalf("got agentSeqs %v, want one above %d", seqs(recs), after)
	}
}

func TestSecondOpenOfTheSameDirFails(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, 0)
	if l, err := Open(Options{Dir: dir}); err == nil {
		l.Close()
		t.Fatal("second Open of a locked state dir succeeded")
	}
}

// TestTornTailIsDropped cuts or damages the last frame as a crash mid-write
// would and checks that reopening keeps every whole record before it.
func TestTornTailIsDropped(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string, lastFrame int64)
	}{
		{"cut in header", func(t *testing.T, p string, at int64) { truncate(t, p, at+headerLen/2) }},
		{"cut in payload", func(t *testing.T, p string, at int64) { truncate(t, p, at+headerLen+3) }},
		{"cut before last byte", func(t *testing.T, p string, at int64) { truncate(t, p, size(t, p)-1) }},
		{"flipped payload byte", func(t *testing.T, p string, at int64) { flip(t, p, at+headerLen+2) }},
		{"garbage length", func(t *testing.T, p string, at int64) { flip(t, p, at+3) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := open(t, dir, 0)
			appendN(t, l, 5, "hello")
			before := l.w
			appendN(t, l, 1, "torn")
			l.Close()
			segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
			if len(segs) != 1 {
				t.Fatalf("segments %v", segs)
			}
			tc.damage(t, segs[0], before)

			l = open(t, dir, 0)
			checkSeqs(t, drain(t, l, 100), 1, 5)
			if got := size(t, segs[0]); got != before {
				t.Fatalf("segment is %d bytes after recovery, want the %d good ones", got, before)
			}
			// The torn record may have been posted before the crash:
			// its agentSeq is not used again.
			appendN(t, l, 1, "after")
			checkAfter(t, drain(t, l, 100), 6)
		})
	}
}

func truncate(t *testing.T, p string, n int64) {
	t.Helper()
	if err := os.Truncate(p, n); err != nil {
		t.Fatal(err)
	}
}

func size(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func flip(t *testing.T, p string, at int64) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[at] ^= 0xff
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	var n int64
	for _, s := range segs {
		n += size(t, s)
	}
	return n
}

// TestFullLogPushesBackUntilAcked fills the log, checks that it refuses
// more while nothing is acknowledged, and that acknowledging frees space
// and removes the acknowledged segments from disk.
func TestFullLogPushesBackUntilAcked(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, MinMaxBytes)
	ev := protocol.Event{Type: protocol.EventTextDelta, Delta: strings.Repeat("a", 4000)}
	n := 0
	for {
		ok, err := l.TryAppend(ev)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		n++
		if n > 10000 {
			t.Fatal("log never filled")
		}
	}
	if got := dirBytes(t, dir); got > MinMaxBytes {
		t.Fatalf("log holds %d bytes, bound is %d", got, MinMaxBytes)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Append(ctx, ev); err == nil {
		t.Fatal("Append to a full log with a done ctx succeeded")
	}
	recs := drain(t, l, 1000)
	checkSeqs(t, recs, 1, int64(n))
	if err := l.Ack(recs[len(recs)-1]); err != nil {
		t.Fatal(err)
	}
	if ok, err := l.TryAppend(ev); !ok || err != nil {
		t.Fatalf("TryAppend after the acks = %v, %v", ok, err)
	}
	if got := dirBytes(t, dir); got > MinMaxBytes/8+10000 {
		t.Fatalf("log holds %d bytes after everything was acked; want at most one segment", got)
	}
	l.Close()
	// Acknowledged segments are gone, and agentSeqs go on after them.
	l = open(t, dir, MinMaxBytes)
	appendN(t, l, 1, "after")
	recs = drain(t, l, 1000)
	checkSeqs(t, recs[:1], int64(n+1), int64(n+1))
	checkAfter(t, recs[1:], int64(n+1))
}

// TestBlockedAppendResumesAfterAck checks that an Append waiting on a full
// log goes through once another goroutine acknowledges.
func TestBlockedAppendResumesAfterAck(t *testing.T) {
	l := open(t, t.TempDir(), MinMaxBytes)
	ev := protocol.Event{Type: protocol.EventTextDelta, Delta: strings.Repeat("b", 8000)}
	for {
		if ok, err := l.TryAppend(ev); err != nil {
			t.Fatal(err)
		} else if !ok {
			break
		}
	}
	done := make(chan error)
	go func() { done <- l.Append(context.Background(), ev) }()
	recs := drain(t, l, 1000)
	if err := l.Ack(recs[len(recs)-1]); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestOpenTurnSurvivesReopen(t *testing.T) {
	for _, tc := range []struct {
		name      string
		events    []protocol.Event
		dropState bool // lose the turn file, as a crash right after the append would
		wantOpen  string
	}{
		{"no turn", nil, false, ""},
		{"open", []protocol.Event{{Type: protocol.EventTurnStarted, TurnID: "t1", Source: protocol.SourceUser}}, false, "t1"},
		{"open, state file lost", []protocol.Event{{Type: protocol.EventTurnStarted, TurnID: "t1", Source: protocol.SourceUser}}, true, "t1"},
		{"completed", []protocol.Event{
			{Type: protocol.EventTurnStarted, TurnID: "t1", Source: protocol.SourceUser},
			{Type: protocol.EventTurnCompleted, TurnID: "t1", StopReason: protocol.StopEndTurn},
		}, false, ""},
		{"second open", []protocol.Event{
			{Type: protocol.EventTurnStarted, TurnID: "t1", Source: protocol.SourceUser},
			{Type: protocol.EventTurnCompleted, TurnID: "t1", StopReason: protocol.StopEndTurn},
			{Type: protocol.EventTurnStarted, TurnID: "t2", Source: protocol.SourceUser},
		}, false, "t2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := open(t, dir, 0)
			for _, ev := range tc.events {
				if err := l.Append(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
			}
			l.Close()
			if tc.dropState {
				os.Remove(filepath.Join(dir, "turn"))
			}
			l = open(t, dir, 0)
			id, open := l.OpenTurn()
			if open != (tc.wantOpen != "") || id != tc.wantOpen {
				t.Fatalf("OpenTurn = %q, %v; want %q", id, open, tc.wantOpen)
			}
		})
	}
}

// An agent_started with no agent_exited after it survives a reopen, also
// once the server acknowledged its segment (the turn file is then the
// only record), so the next agentd can post the exit the killed one never
// told.
func TestRunningAgentSurvivesReopen(t *testing.T) {
	started := protocol.Event{Type: protocol.EventAgentStarted, Agent: &protocol.AgentInfo{Name: "a", Protocol: "native"}}
	exited := protocol.Event{Type: protocol.EventAgentExited}
	for _, tc := range []struct {
		name   string
		events []protocol.Event
		ack    bool // the server acknowledged every event
		want   bool
	}{
		{"no agent", nil, false, false},
		{"running", []protocol.Event{started}, false, true},
		{"running, acknowledged", []protocol.Event{started}, true, true},
		{"posted again at a reconnect", []protocol.Event{started, started}, true, true},
		{"exited", []protocol.Event{started, exited}, false, false},
		{"exited, acknowledged", []protocol.Event{started, exited}, true, false},
		{"restarted", []protocol.Event{started, exited, started}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := open(t, dir, MinMaxBytes)
			for _, ev := range tc.events {
				if err := l.Append(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
			}
			if tc.ack {
				// More than a segment after them, so that the reopen
				// removes the segment that holds them.
				appendN(t, l, 10, strings.Repeat("x", 64<<10))
				recs := drain(t, l, 100)
				if err := l.Ack(recs[len(recs)-1]); err != nil {
					t.Fatal(err)
				}
			}
			l.Close()
			l = open(t, dir, MinMaxBytes)
			if segs, _ := filepath.Glob(filepath.Join(dir, "*.seg")); tc.ack && len(segs) != 1 {
				t.Fatalf("%d segments after acknowledging everything; want the acknowledged ones removed", len(segs))
			}
			if got := l.AgentRunning(); got != tc.want {
				t.Fatalf("AgentRunning = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCursorPersists(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 0)
	if _, ok := l.Cursor(); ok {
		t.Fatal("fresh state dir has a cursor")
	}
	if err := l.SetCursor(42); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = open(t, dir, 0)
	if id, ok := l.Cursor(); !ok || id != 42 {
		t.Fatalf("Cursor = %d, %v; want 42", id, ok)
	}
}

func TestSessionPersists(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 0)
	if _, ok := l.Session(); ok {
		t.Fatal("fresh state dir has a session")
	}
	if err := l.SetSession(1_700_000_000_123); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = open(t, dir, 0)
	if at, ok := l.Session(); !ok || at != 1_700_000_000_123 {
		t.Fatalf("Session = %d, %v; want 1700000000123", at, ok)
	}
}

func TestMaxBytesBelowMinimumIsRefused(t *testing.T) {
	if _, err := Open(Options{Dir: t.TempDir(), MaxBytes: 1024}); err == nil {
		t.Fatal("Open with a 1 KiB bound succeeded")
	}
}

func TestConversationPersistsPerProtocol(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, DefaultMaxBytes)
	if id, err := l.Conversation("claude"); err != nil || id != "" {
		t.Fatalf("fresh dir: conversation %q, %v; want none", id, err)
	}
	if err := l.SetConversation("claude", "sess-1"); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = open(t, dir, DefaultMaxBytes)
	for _, tc := range []struct{ protocol, want string }{{"claude", "sess-1"}, {"codex", ""}} {
		if id, err := l.Conversation(tc.protocol); err != nil || id != tc.want {
			t.Errorf("after reopen, %s: conversation %q, %v; want %q", tc.protocol, id, err, tc.want)
		}
	}
	if err := l.SetConversation("claude", ""); err != nil {
		t.Fatal(err)
	}
	if id, err := l.Conversation("claude"); err != nil || id != "" {
		t.Errorf("forgotten: conversation %q, %v; want none", id, err)
	}
}

// TestCorruptSegmentBeforeTheLast: a damaged frame in a segment that is
// not the last one is no write cut by a crash (a segment is fsynced
// before the next begins) but a disk that corrupted it: the rest of that
// segment is cut, and the later segments, whole, are kept. Open used to
// remove them, losing their events (the server had not acknowledged
// them); before that, it went on through the removed segments' names and
// failed on the first ("no such file"), so agentd ran without its outbox.
func TestCorruptSegmentBeforeTheLast(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 0)
	l.segBytes = 100 // two records a segment
	appendN(t, l, 6, strings.Repeat("s", 20))
	l.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 3 {
		t.Fatalf("segments %v, want 3", segs)
	}
	flip(t, segs[0], size(t, segs[0])-1) // the second record's last byte

	l, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open after a damaged first segment: %v", err)
	}
	defer l.Close()
	if got := seqs(drain(t, l, 100)); fmt.Sprint(got) != "[1 3 4 5 6]" {
		t.Fatalf("got agentSeqs %v, want [1 3 4 5 6]: only the damaged record lost", got)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(left) != 3 {
		t.Fatalf("segments after recovery %v, want all 3", left)
	}
	appendN(t, l, 1, "after")
	checkAfter(t, drain(t, l, 100), 6)
}

// TestLockHeldByAnotherProcess: a second agentd on the state dir (another
// process) is refused while the first runs, and a first agentd killed
// with SIGKILL releases the directory, even though the agent it started
// lives on (its own process group): the lock must not pass to the agent.
func TestLockHeldByAnotherProcess(t *testing.T) {
	if dir := os.Getenv("OUTBOX_TEST_HOLD"); dir != "" {
		l, err := Open(Options{Dir: dir})
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(1)
		}
		defer l.Close()
		// The agent, as agentd starts it: a child that outlives it.
		agent := exec.Command("sleep", "60")
		agent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := agent.Start(); err != nil {
			fmt.Println("agent:", err)
			os.Exit(1)
		}
		fmt.Println("holding", agent.Process.Pid)
		time.Sleep(time.Minute) // until the test kills it
	}
	dir := t.TempDir()
	holder := exec.Command(os.Args[0], "-test.run=^TestLockHeldByAnotherProcess$")
	holder.Env = append(os.Environ(), "OUTBOX_TEST_HOLD="+dir)
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		holder.Process.Kill()
		holder.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "holding ") {
		t.Fatalf("holder said %q (%v)", line, err)
	}
	agentPid, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "holding ")))
	t.Cleanup(func() { syscall.Kill(agentPid, syscall.SIGKILL) })

	if l, err := Open(Options{Dir: dir}); err == nil {
		l.Close()
		t.Fatal("Open of a state dir another process holds succeeded")
	} else if !strings.Contains(err.Error(), "another agentd uses it") {
		t.Fatalf("Open of a held state dir = %v; want it to say another agentd uses it", err)
	}
	holder.Process.Kill()
	holder.Wait()
	if err := syscall.Kill(agentPid, 0); err != nil {
		t.Fatalf("the agent did not outlive agentd: %v", err)
	}
	l, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open after the holder was killed, its agent alive: %v", err)
	}
	l.Close()
}

// TestReadErrorIsNotATornTail: a segment that cannot be read (EIO from a
// bad sector or a failing network disk, here from the kernel: a loop
// device cut short under the file) is not a torn tail. Open used to take
// the failed read for a write cut by a crash and cut the segment there,
// losing every event after it that the server had not acknowledged.
// Open now fails naming the segment and the error, and cuts nothing: once
// the disk reads again, every event is there.
func TestReadErrorIsNotATornTail(t *testing.T) {
	mnt, fail := fulldisk.Unreadable(t)
	dir := filepath.Join(mnt, "s1")
	l := open(t, dir, 0)
	appendN(t, l, 400, strings.Repeat("e", 100))
	l.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	before := size(t, segs[0])
	repair := fail(segs[0], 16<<10)

	l, err := Open(Options{Dir: dir})
	if err == nil {
		l.Close()
	}
	repair()
	if got := size(t, segs[0]); got != before {
		t.Errorf("segment is %d bytes after a read error, was %d", got, before)
	}
	if err == nil || !errors.Is(err, syscall.EIO) || !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), filepath.Base(segs[0])) {
		t.Errorf("Open on an unreadable segment: %v, want ErrUnreadable with EIO naming %s", err, filepath.Base(segs[0]))
	}
	l = open(t, dir, 0)
	checkSeqs(t, drain(t, l, 1000), 1, 400)
}

// TestGarbledInstanceIsRefused: an instance file that does not hold an
// instance id the server takes (a disk's error, a hand edit) fails Open,
// as a garbled seq or cursor does. Sent as Rein-Instance, the server
// refuses every request with 400 invalid, and the uploader would drop
// the outbox's events one by one as if each were refused on its own.
func TestGarbledInstanceIsRefused(t *testing.T) {
	for _, garbled := range []string{"agentd 7f3a", "agentd-7f3a/x", "agentd-\u00e97f3a", strings.Repeat("a", protocol.MaxIDLen+1)} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "instance"), []byte(garbled+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := Open(Options{Dir: dir})
		if err == nil {
			inst := l.Instance()
			l.Close()
			t.Fatalf("Open with instance file %q: no error, instance %q; want an error naming the file", garbled, inst)
		}
		if !strings.Contains(err.Error(), "read instance") {
			t.Errorf("Open with instance file %q: %v; want it to name the instance file", garbled, err)
		}
	}
	// Whitespace around a valid id is not garbling: the file ends with a
	// newline as agentd writes it.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "instance"), []byte("  agentd-7f3a:b.c_d\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if l := open(t, dir, 0); l.Instance() != "agentd-7f3a:b.c_d" {
		t.Fatalf("instance %q, want agentd-7f3a:b.c_d", l.Instance())
	}
}

// TestZeroSessionIsRefused: a session file holding 0 (a disk's error, a
// hand edit) passed as a non-negative integer, but no session was
// created at 0: sent as Rein-Session-Created, the server refuses every
// request with 400 invalid, and agentd's startup probe retried that for
// ever without starting the agent. Open refuses it as it refuses a
// garbled instance; a session's createdAt opens as it is.
func TestZeroSessionIsRefused(t *testing.T) {
	for _, garbled := range []string{"0", "00\n"} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "session"), []byte(garbled), 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := Open(Options{Dir: dir})
		if err == nil {
			at, ok := l.Session()
			l.Close()
			t.Fatalf("Open with session file %q: no error, session %d %v; want an error naming the file", garbled, at, ok)
		}
		if !strings.Contains(err.Error(), "read session") {
			t.Errorf("Open with session file %q: %v; want it to name the session file", garbled, err)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "session"), []byte("1732190001234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if at, ok := open(t, dir, 0).Session(); at != 1732190001234 || !ok {
		t.Fatalf("session %d %v; want 1732190001234", at, ok)
	}
}

// SetSession refuses what Open would refuse to read back: a session file
// of 0 or less stops the next agentd.
func TestSetSessionRefusesWhatIsNotACreatedAt(t *testing.T) {
	l := open(t, t.TempDir(), 0)
	for _, at := range []int64{0, -1} {
		if err := l.SetSession(at); err == nil {
			t.Errorf("SetSession(%d): no error; want one", at)
		}
	}
	if _, ok := l.Session(); ok {
		t.Error("a session was recorded")
	}
}
