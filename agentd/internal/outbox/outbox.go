package outbox

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// Defaults and limits.
const (
	// DefaultMaxBytes bounds the log on disk: past it Append blocks (and
	// with it the agent's stdout) until the server acknowledges events.
	DefaultMaxBytes = 256 << 20
	// MinMaxBytes leaves room for the largest event the server accepts.
	MinMaxBytes = 4 << 20
)

// headerLen is a frame's header: payload length (u32), CRC-32C of seq and
// payload (u32), agentSeq (u64), all little-endian.
const headerLen = 16

// seqBlock is how many agentSeqs are reserved at a time. The reservation
// is durable before any of its seqs is used, and a reopened log starts
// after it: events are posted before they are fsynced, so after a power
// loss the log may have lost events the server has, and their seqs must
// not be used again (the server treats any seq at or below the highest it
// has as a duplicate).
const seqBlock = 1 << 20

// maxFrame bounds one payload when reading; anything longer is a corrupt
// length field, not an event.
const maxFrame = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("outbox closed")

// ErrUnreadable is wrapped by Open when a file of the state dir that
// exists cannot be read (an I/O error): the log it holds is neither
// cut nor replaced.
var ErrUnreadable = errors.New("state dir unreadable")

// Options configures Open. Dir is required.
type Options struct {
	// Dir is this session's state directory; it is created if missing.
	Dir string
	// MaxBytes bounds the log (DefaultMaxBytes when zero).
	MaxBytes int64
	Logger   *slog.Logger
}

// Record is one logged event as posted: its agentSeq and JSON.
type Record struct {
	Seq  int64
	Data []byte
	// end is the log offset just past the record, for Ack.
	end int64
	// ord counts the records Next returned since Open, for Pending.
	ord int64
}

// End is the log position just past r; pass the last posted record's End
// to Ack.
func (r Record) End() int64 { return r.end }

type segment struct {
	name string
	f    *os.File
	base int64 // log offset of the segment's first byte
	size int64
}

// Log is an open state directory. Append may be called from any goroutine;
// Next and Ack from one reader (the uploader's Run).
type Log struct {
	dir      string
	max      int64
	segBytes int64
	log      *slog.Logger
	lock     *os.File
	ackFile  *os.File // "acked", rewritten in place
	instance string
	ready    chan struct{}
	unsynced chan struct{}

	mu       sync.Mutex
	closed   bool
	segs     []*segment
	next     int64 // next agentSeq
	w        int64 // log offset of the end of what is written
	synced   int64 // log offset up to which the log is fsynced
	reserved int64 // agentSeqs up to this are reserved (durably)
	acked    int64 // highest agentSeq the server acknowledged
	a        int64 // log offset just past the last acknowledged record
	freed    chan struct{}
	// spaceSince is when the disk first refused a write (for want of
	// space, or read-only: space.go), zero once the wait is over; warned:
	// the log held nothing unacknowledged meanwhile, so only others can
	// let the write through, and that was logged.
	spaceSince   time.Time
	warned       bool
	spaceWaiters int   // Appends waiting on a refused write
	blockCause   error // the disk's last refusal while waiting
	// giveUp: refused writes fail instead of waiting (StopWaiting, which
	// closes stopWaiting).
	giveUp      bool
	stopWaiting chan struct{}
	turnID      string
	turnOpen    bool
	// agentRunning: an agent_started is logged with no agent_exited
	// after it (AgentRunning).
	agentRunning bool
	cursor       int64
	hasCur       bool
	// taken: commands after the cursor the agent took (file "taken").
	taken []int64
	// session is the createdAt of the server session the state belongs
	// to (file "session"); hasSess is false until one was saved.
	session int64
	hasSess bool

	r int64 // reader's offset: what Next returns next (reader only)

	// Pending counts: records unacknowledged at Open plus those appended
	// since, records Next returned, and of those, the acknowledged.
	total, read, ackedOrd int64
}

type turnFile struct {
	TurnID string `json:"turnId"`
	Open   bool   `json:"open"`
	// Agent: an agent was running (AgentRunning). Left out when false,
	// as in the files of an agentd from before it.
	Agent bool `json:"agent,omitempty"`
}

// Open opens (creating if needed) the state directory, locks it against a
// second agentd, and recovers the log: a torn or corrupt tail is cut off
// and logged, acknowledged segments are removed.
func Open(opts Options) (*Log, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxBytes < MinMaxBytes {
		return nil, fmt.Errorf("outbox max bytes %d is below the minimum %d", opts.MaxBytes, MinMaxBytes)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := mkdirDurable(opts.Dir); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	l := &Log{
		dir: opts.Dir, max: opts.MaxBytes, segBytes: opts.MaxBytes / 8,
		log: log.With("component", "outbox"), ready: make(chan struct{}, 1), unsynced: make(chan struct{}, 1), freed: make(chan struct{}), stopWaiting: make(chan struct{}),
	}
	lock, err := os.OpenFile(filepath.Join(opts.Dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open state dir lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("lock state dir %s (another agentd uses it?): %w", opts.Dir, err)
	}
	l.lock = lock
	if err := l.load(); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Log) load() error {
	inst, err := os.ReadFile(filepath.Join(l.dir, "instance"))
	switch {
	case err == nil && strings.TrimSpace(string(inst)) != "":
		l.instance = strings.TrimSpace(string(inst))
		if !protocol.ValidEventID(l.instance) {
			// Garbled (a disk's error, a hand edit), like a seq or cursor
			// that is not a number. Sent as Rein-Instance, the server
			// would refuse every request with 400 invalid, which the
			// uploader takes for a refusal of the one event posted and
			// drops it: the whole outbox would be dropped event by event.
			// Nor is a new id the answer: events posted under the old
			// one and not yet acknowledged would be stored twice.
			return fmt.Errorf("read instance: %q is not an instance id (1-%d characters of [A-Za-z0-9._:-]): restore the id agentd wrote there, or remove the state dir to start afresh as a new instance", l.instance, protocol.MaxIDLen)
		}
	case err == nil || errors.Is(err, fs.ErrNotExist):
		var b [12]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("instance id: %w", err)
		}
		l.instance = "agentd-" + hex.EncodeToString(b[:])
		if err := l.writeFile("instance", []byte(l.instance+"\n"), true); err != nil {
			return err
		}
	default:
		return fmt.Errorf("read instance id: %w: %w", ErrUnreadable, err)
	}
	if l.acked, err = l.readAcked(); err != nil {
		// Only costs duplicates: everything left in the log is posted
		// again, and agentSeqs continue after the reservation.
		l.log.Warn("outbox: acknowledged position unreadable; posting the whole log again", "err", err)
		l.acked = 0
	}
	if l.ackFile, err = os.OpenFile(filepath.Join(l.dir, "acked"), os.O_CREATE|os.O_RDWR, 0o600); err != nil {
		return fmt.Errorf("open acked: %w", err)
	}
	// Written now, at its fixed width, so that the file has its block:
	// Ack rewrites it in place, and on a full disk the first write to an
	// empty file would fail, and with it the Ack that frees space.
	if _, err := l.ackFile.WriteAt(fmt.Appendf(nil, "%020d\n", l.acked), 0); err != nil {
		l.log.Warn("outbox: acknowledged position not written", "err", err)
	}
	if l.reserved, _, err = l.readInt("seq"); err != nil {
		return err
	}
	if l.cursor, l.hasCur, err = l.readInt("cursor"); err != nil {
		return err
	}
	if l.session, l.hasSess, err = l.readInt("session"); err != nil {
		return err
	}
	if err := l.readTaken(); err != nil {
		return err
	}
	if l.hasSess && l.session == 0 {
		// No session was created at 0 (SetSession records what the
		// server sent, Unix ms): a disk's error or a hand edit. Sent as
		// Rein-Session-Created, the server would refuse every request
		// with 400 invalid, and agentd's startup probe would retry that
		// for ever without starting the agent. Nor is dropping it the
		// answer: it is what tells this state from that of a session
		// deleted and created again with the same id.
		return fmt.Errorf("read session: 0 is not a session's createdAt (Unix ms, > 0): restore the createdAt agentd wrote there, or remove the state dir to start afresh as a new instance")
	}
	if b, err := os.ReadFile(filepath.Join(l.dir, "turn")); err == nil {
		var t turnFile
		if json.Unmarshal(b, &t) == nil {
			l.turnID, l.turnOpen = t.TurnID, t.Open && t.TurnID != ""
			l.agentRunning = t.Agent
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		// Written now, so that on a full disk writeFile can rewrite it
		// in place (space.go): once the segment holding a turn_started
		// is removed, this file is the only record that the turn is
		// open, and a restart that missed it would not close the turn.
		if err := l.writeTurn(); err != nil {
			l.log.Warn("outbox: turn state not saved", "err", err)
		}
	} else {
		return fmt.Errorf("read turn state: %w: %w", ErrUnreadable, err)
	}
	return l.recover()
}

// recover scans the segments in order, verifying every frame.
func (l *Log) recover() error {
	names, err := filepath.Glob(filepath.Join(l.dir, "*.seg"))
	if err != nil {
		return fmt.Errorf("list outbox segments: %w", err)
	}
	slices.Sort(names) // zero-padded first agentSeq: name order is log order
	last := l.acked
	l.r = -1
	var base int64
	turnBefore := l.turnState()
	for i, name := range names {
		f, err := os.OpenFile(name, os.O_RDWR, 0o600)
		if err != nil {
			for _, s := range l.segs {
				s.f.Close()
			}
			l.segs = nil
			return fmt.Errorf("open outbox segment: %w: %w", ErrUnreadable, err)
		}
		seg := &segment{name: name, f: f, base: base}
		good, bad, err := l.scan(seg, &last)
		if err != nil {
			// Not a torn write: the disk failed to read what it holds,
			// and cutting there would lose every event after it.
			f.Close()
			for _, s := range l.segs {
				s.f.Close()
			}
			l.segs = nil
			return fmt.Errorf("read outbox segment %s (nothing cut; agentd can post it once the disk reads again): %w: %w", filepath.Base(name), ErrUnreadable, err)
		}
		if bad != nil {
			if i == len(names)-1 {
				l.log.Warn("outbox: dropping a torn or corrupt tail (an unfinished write before a crash)",
					"segment", filepath.Base(name), "offset", good, "err", bad)
			} else {
				// A segment was fsynced before the next one began, so
				// this is no write cut by a crash but a disk that
				// corrupted what it held: the frames after the damage
				// cannot be told apart, but the later segments are
				// whole, and are kept.
				l.log.Error("outbox: dropping the rest of a corrupt segment (a disk error); later segments are kept",
					"segment", filepath.Base(name), "offset", good, "err", bad)
			}
			if err := f.Truncate(good); err != nil {
				f.Close()
				return fmt.Errorf("truncate outbox segment: %w", err)
			}
		}
		seg.size = good
		l.segs = append(l.segs, seg)
		base += good
	}
	// The last segment may hold what an agentd killed a moment ago
	// wrote and no fsync has made durable yet (its page cache outlives
	// it, not a power loss): counted as unsynced, so that the state
	// files written from it (syncLog) wait for it.
	l.w, l.synced = base, 0
	if l.r < 0 {
		l.r = base
	}
	l.a = l.r
	l.next = max(last, l.reserved) + 1
	if len(l.segs) == 0 {
		if err := l.newSegment(); err != nil {
			return err
		}
	}
	if turnBefore != l.turnState() {
		_ = l.writeTurn()
	}
	// Compact what was acknowledged before the restart.
	return l.compact()
}

// scan verifies seg's frames, advancing *last and the turn state, and
// returns the length of the good prefix and why it ended early (bad: nil
// at a clean end), or err when the file could not be read: an I/O error
// says nothing about what the disk holds there.
func (l *Log) scan(seg *segment, last *int64) (good int64, bad, err error) {
	st, err := seg.f.Stat()
	if err != nil {
		return 0, nil, err
	}
	r := io.NewSectionReader(seg.f, 0, st.Size())
	var hdr [headerLen]byte
	var payload []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			switch err {
			case io.EOF:
				return good, nil, nil
			case io.ErrUnexpectedEOF:
				return good, fmt.Errorf("short header: %w", err), nil
			}
			return good, nil, err
		}
		n := binary.LittleEndian.Uint32(hdr[0:4])
		if n > maxFrame {
			return good, fmt.Errorf("frame length %d out of range", n), nil
		}
		payload = slices.Grow(payload[:0], int(n))[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return good, fmt.Errorf("short payload: %w", err), nil
			}
			return good, nil, err
		}
		seq := int64(binary.LittleEndian.Uint64(hdr[8:16]))
		if checksum(hdr[8:16], payload) != binary.LittleEndian.Uint32(hdr[4:8]) {
			return good, errors.New("checksum mismatch"), nil
		}
		if seq <= *last && seq > l.acked {
			return good, fmt.Errorf("agentSeq %d after %d", seq, *last), nil
		}
		if seq > l.acked && l.r < 0 {
			l.r = seg.base + good
		}
		if seq > l.acked {
			l.total++
		}
		*last = max(*last, seq)
		l.trackTurn(payload)
		good += int64(headerLen) + int64(n)
	}
}

func checksum(seq, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(seq, castagnoli), castagnoli, payload)
}

// trackTurn follows turn_started/turn_completed, and agent_started/
// agent_exited, in a logged payload.
func (l *Log) trackTurn(payload []byte) bool {
	var ev struct {
		Type   protocol.EventType `json:"type"`
		TurnID string             `json:"turnId"`
	}
	if json.Unmarshal(payload, &ev) != nil {
		return false
	}
	return l.turnEvent(ev.Type, ev.TurnID)
}

// turnEvent updates the open turn and whether an agent runs; it reports
// a change.
func (l *Log) turnEvent(t protocol.EventType, id string) bool {
	switch t {
	case protocol.EventAgentStarted:
		// Posted again at every command stream connection: only the
		// first of a run changes anything.
		if !l.agentRunning {
			l.agentRunning = true
			return true
		}
	case protocol.EventAgentExited:
		if l.agentRunning {
			l.agentRunning = false
			return true
		}
	case protocol.EventTurnStarted:
		l.turnID, l.turnOpen = id, true
		return true
	case protocol.EventTurnCompleted:
		if id == "" || id == l.turnID {
			l.turnID, l.turnOpen = "", false
			return true
		}
	}
	return false
}

// turnState is what the turn file records.
func (l *Log) turnState() turnFile {
	return turnFile{TurnID: l.turnID, Open: l.turnOpen, Agent: l.agentRunning}
}

// AgentRunning reports whether the logged events leave an agent running:
// an agent_started with no agent_exited after it. agentd posts an
// agent's exit whenever it sees one, so at Open this says that the agent
// a previous agentd ran is gone without its exit told (agentd was killed
// with it): whatever it left open, within a turn or outside one, waits
// on nobody.
func (l *Log) AgentRunning() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.agentRunning
}

// Instance is the agentd instance id kept in the state directory.
func (l *Log) Instance() string { return l.instance }

// Dir is the state directory.
func (l *Log) Dir() string { return l.dir }

// OpenTurn is the turn the logged events leave open: a turn_started with
// no turn_completed after it.
func (l *Log) OpenTurn() (id string, open bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.turnID, l.turnOpen
}

// Cursor is the persisted command cursor; ok is false when none was saved.
func (l *Log) Cursor() (id int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cursor, l.hasCur
}

// SetCursor durably records the command cursor.
func (l *Log) SetCursor(id int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hasCur && id == l.cursor {
		return nil
	}
	// The cursor moves past a prompt once its turn_started is logged;
	// durable before that event, a power loss would keep the cursor and
	// take the event: the prompt would never run again, nor its turn be
	// in the transcript if it had not been posted yet.
	if err := l.syncLog(); err != nil {
		return fmt.Errorf("write cursor: %w", err)
	}
	if err := l.writeFile("cursor", []byte(strconv.FormatInt(id, 10)+"\n"), true); err != nil {
		return err
	}
	l.cursor, l.hasCur = id, true
	return nil
}

// Taken is the ids of the commands after the cursor that the agent took
// (SetTaken), in order; ids at or below the cursor are left out.
func (l *Log) Taken() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int64
	for _, id := range l.taken {
		if !l.hasCur || id > l.cursor {
			out = append(out, id)
		}
	}
	return out
}

// SetTaken durably records the ids of the commands after the cursor that
// the agent took: the cursor cannot move past them while a command
// before them (a prompt waiting for the turn before it) was not taken,
// and a restarted agentd, which gets every command after the cursor
// again, must not hand them to its agent a second time.
func (l *Log) SetTaken(ids []int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if slices.Equal(ids, l.taken) {
		return nil
	}
	b := make([]byte, 0, 8*len(ids)+1)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ' ')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	if err := l.writeFile("taken", append(b, '\n'), true); err != nil {
		return err
	}
	l.taken = slices.Clone(ids)
	return nil
}

// readTaken reads the file "taken" (SetTaken). One that is not a list of
// ids (a disk's error, a hand edit) is logged and ignored: the cost is
// what it would have saved, a command taken before a restart given to
// the agent again.
func (l *Log) readTaken() error {
	b, err := os.ReadFile(filepath.Join(l.dir, "taken"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read taken: %w: %w", ErrUnreadable, err)
	}
	var ids []int64
	// Zeros at the end: a rewrite in place cut short (readInt).
	for _, f := range strings.Fields(strings.TrimRight(string(b), "\x00")) {
		id, err := strconv.ParseInt(f, 10, 64)
		if err != nil || id <= 0 {
			l.log.Warn("outbox: the commands taken after the cursor are unreadable; a restart may give them to the agent again", "file", "taken", "content", string(b))
			return nil
		}
		ids = append(ids, id)
	}
	l.taken = ids
	return nil
}

// Session is the createdAt (Unix ms) of the server session this state was
// saved for (protocol.HeaderSessionCreated); ok is false when none was
// saved (a fresh directory, or one from an agentd before the header).
func (l *Log) Session() (createdAt int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.session, l.hasSess
}

// SetSession durably records the createdAt of the session this state
// belongs to.
func (l *Log) SetSession(createdAt int64) error {
	if createdAt <= 0 {
		// Open would refuse the file (no session is created at 0).
		return fmt.Errorf("record session: createdAt %d: must be positive", createdAt)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hasSess && l.session == createdAt {
		return nil
	}
	if err := l.writeFile("session", []byte(strconv.FormatInt(createdAt, 10)+"\n"), true); err != nil {
		return err
	}
	l.session, l.hasSess = createdAt, true
	return nil
}

// Ready is signalled after every Append.
func (l *Log) Ready() <-chan struct{} { return l.ready }

// Pending is how many logged events the server has not acknowledged.
func (l *Log) Pending() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total - l.ackedOrd
}

// Append stamps ev with the next agentSeq and writes it to the log. It
// returns once the write reached the kernel: it survives kill -9 of agentd;
// Sync, run continuously beside the uploader, makes it survive power loss
// too. While the log is full it blocks until Ack frees space or ctx is
// done.
func (l *Log) Append(ctx context.Context, ev protocol.Event) error {
	return l.AppendStamped(ctx, ev, nil)
}

// AppendStamped is Append that also calls stamped, when not nil, with the
// agentSeq ev was written with, before anything can read ev from the log
// (and so before it can be posted). stamped runs under the log's lock: it
// must not call the log.
func (l *Log) AppendStamped(ctx context.Context, ev protocol.Event, stamped func(seq int64)) error {
	_, err := l.append(ctx, ev, true, stamped)
	return err
}

// TryAppend is Append without waiting: ok is false when the log is full.
func (l *Log) TryAppend(ev protocol.Event) (ok bool, err error) {
	return l.append(context.Background(), ev, false, nil)
}

func (l *Log) append(ctx context.Context, ev protocol.Event, wait bool, stamped func(int64)) (bool, error) {
	waited := false // for space (space.go)
	defer func() {
		if waited {
			l.mu.Lock()
			l.spaceWaiters--
			l.mu.Unlock()
		}
	}()
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return false, ErrClosed
		}
		if l.next > l.reserved {
			if err := l.writeFile("seq", []byte(strconv.FormatInt(l.next+seqBlock-1, 10)+"\n"), true); err != nil {
				if refused(err) {
					again, werr := l.noRoom(ctx, err, wait, &waited)
					if again {
						continue
					}
					return false, werr
				}
				l.mu.Unlock()
				return false, fmt.Errorf("reserve agentSeqs: %w", err)
			}
			l.reserved = l.next + seqBlock - 1
		}
		ev.AgentSeq = l.next
		// MarshalJSON directly: json.Marshal would call it and then copy
		// and re-validate its output, which is already compact.
		payload, err := ev.MarshalJSON()
		if err != nil {
			l.mu.Unlock()
			return false, fmt.Errorf("encode %s event: %w", ev.Type, err)
		}
		n := int64(headerLen + len(payload))
		used := l.w - l.segs[0].base
		if used+n > l.max && l.w > l.a {
			freed := l.freed
			l.mu.Unlock()
			if !wait {
				return false, nil
			}
			select {
			case <-freed:
				continue
			case <-ctx.Done():
				return false, fmt.Errorf("outbox full (%d bytes not yet acknowledged by the server): %w", used, ctx.Err())
			}
		}
		err = l.write(ev, payload)
		if refused(err) {
			again, werr := l.noRoom(ctx, err, wait, &waited)
			if again {
				continue
			}
			return false, werr
		}
		if err == nil {
			l.spaceAgain(waited)
			if stamped != nil {
				stamped(ev.AgentSeq)
			}
		}
		l.mu.Unlock()
		if err != nil {
			return false, err
		}
		for _, c := range []chan struct{}{l.ready, l.unsynced} {
			select {
			case c <- struct{}{}:
			default:
			}
		}
		return true, nil
	}
}

// write appends one frame; l.mu is held.
func (l *Log) write(ev protocol.Event, payload []byte) error {
	seg := l.segs[len(l.segs)-1]
	if seg.size >= l.segBytes {
		if err := l.roll(); err != nil {
			return err
		}
		seg = l.segs[len(l.segs)-1]
	}
	buf := make([]byte, headerLen, headerLen+len(payload))
	binary.LittleEndian.PutUint32(buf[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint64(buf[8:16], uint64(ev.AgentSeq))
	binary.LittleEndian.PutUint32(buf[4:8], checksum(buf[8:16], payload))
	buf = append(buf, payload...)
	if _, err := seg.f.WriteAt(buf, seg.size); err != nil {
		// A partial write is cut off by the next Open; this one must not
		// be followed by frames after a hole.
		_ = seg.f.Truncate(seg.size)
		return fmt.Errorf("write outbox %s: %w", seg.name, err)
	}
	seg.size += int64(len(buf))
	l.w += int64(len(buf))
	l.next++
	l.total++
	if l.turnEvent(ev.Type, ev.TurnID) {
		if err := l.writeTurn(); err != nil {
			l.log.Warn("outbox: turn state not saved (the log still has it)", "err", err)
		}
	}
	return nil
}

// roll syncs the active segment and starts a new one; l.mu is held.
func (l *Log) roll() error {
	seg := l.segs[len(l.segs)-1]
	if err := seg.f.Sync(); err != nil {
		return fmt.Errorf("sync outbox segment: %w", err)
	}
	l.synced = max(l.synced, l.w)
	return l.newSegment()
}

func (l *Log) newSegment() error {
	name := filepath.Join(l.dir, fmt.Sprintf("%020d.seg", l.next))
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create outbox segment: %w", err)
	}
	if err := syncDir(l.dir); err != nil {
		f.Close()
		return err
	}
	l.segs = append(l.segs, &segment{name: name, f: f, base: l.w})
	return nil
}

// Next returns the records after the last ones it returned, at most
// maxEvents and maxBytes of payload (at least one record). They need not
// be fsynced yet: agentSeqs are never reused (see seqBlock).
func (l *Log) Next(maxEvents, maxBytes int) ([]Record, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	w := l.w
	// Sizes are read under mu: Append grows the active segment.
	type view struct {
		seg       *segment
		base, end int64
	}
	segs := make([]view, len(l.segs))
	for i, seg := range l.segs {
		segs[i] = view{seg, seg.base, min(seg.base+seg.size, w)}
	}
	l.mu.Unlock()
	var recs []Record
	size := 0
	for _, v := range segs {
		for l.r >= v.base && l.r < v.end && len(recs) < maxEvents {
			// One read for many frames; a frame that does not fit is
			// read alone.
			chunk := make([]byte, min(v.end-l.r, int64(maxBytes)+headerLen, readChunk))
			if _, err := v.seg.f.ReadAt(chunk, l.r-v.base); err != nil {
				return nil, fmt.Errorf("read outbox %s at %d: %w", filepath.Base(v.seg.name), l.r-v.base, err)
			}
			progress := false
			for len(recs) < maxEvents {
				rec, n, ok, err := parseFrame(chunk)
				if err != nil {
					return nil, fmt.Errorf("read outbox %s at %d: %w", filepath.Base(v.seg.name), l.r-v.base, err)
				}
				if !ok {
					if progress {
						break // the next frame starts the next chunk
					}
					if rec, err = readFrame(v.seg, l.r-v.base); err != nil {
						return nil, err
					}
					n = headerLen + len(rec.Data)
				}
				if len(recs) > 0 && size+len(rec.Data) > maxBytes {
					return recs, nil
				}
				rec.end = l.r + int64(n)
				l.read++
				rec.ord = l.read
				recs = append(recs, rec)
				size += len(rec.Data)
				l.r = rec.end
				progress = true
				if !ok {
					break
				}
				chunk = chunk[n:]
			}
		}
	}
	return recs, nil
}

// readChunk bounds one read of Next.
const readChunk = 256 << 10

// parseFrame decodes the frame at the start of b; ok is false when b holds
// only part of it.
func parseFrame(b []byte) (rec Record, n int, ok bool, err error) {
	if len(b) < headerLen {
		return Record{}, 0, false, nil
	}
	size := binary.LittleEndian.Uint32(b[0:4])
	if size > maxFrame {
		return Record{}, 0, false, fmt.Errorf("frame length %d out of range", size)
	}
	n = headerLen + int(size)
	if len(b) < n {
		return Record{}, 0, false, nil
	}
	data := b[headerLen:n:n]
	if checksum(b[8:16], data) != binary.LittleEndian.Uint32(b[4:8]) {
		return Record{}, 0, false, errors.New("checksum mismatch")
	}
	return Record{Seq: int64(binary.LittleEndian.Uint64(b[8:16])), Data: data}, n, true, nil
}

func readFrame(seg *segment, off int64) (Record, error) {
	var hdr [headerLen]byte
	if _, err := seg.f.ReadAt(hdr[:], off); err != nil {
		return Record{}, fmt.Errorf("read outbox %s at %d: %w", filepath.Base(seg.name), off, err)
	}
	n := binary.LittleEndian.Uint32(hdr[0:4])
	if n > maxFrame {
		return Record{}, fmt.Errorf("read outbox %s at %d: frame length %d out of range", filepath.Base(seg.name), off, n)
	}
	data := make([]byte, n)
	if _, err := seg.f.ReadAt(data, off+headerLen); err != nil {
		return Record{}, fmt.Errorf("read outbox %s at %d: %w", filepath.Base(seg.name), off, err)
	}
	if checksum(hdr[8:16], data) != binary.LittleEndian.Uint32(hdr[4:8]) {
		return Record{}, fmt.Errorf("read outbox %s at %d: checksum mismatch", filepath.Base(seg.name), off)
	}
	return Record{Seq: int64(binary.LittleEndian.Uint64(hdr[8:16])), Data: data}, nil
}

// Unsynced is signalled after every Append: there is something to Sync.
func (l *Log) Unsynced() <-chan struct{} { return l.unsynced }

// Sync fsyncs everything appended so far: one fsync for every event
// written since the last (group commit). It may run beside Append, Next
// and Ack.
func (l *Log) Sync() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	w, active, synced := l.w, l.segs[len(l.segs)-1], l.synced
	l.mu.Unlock()
	if synced >= w {
		return nil
	}
	// A segment rolled and compacted meanwhile was synced when it rolled.
	if err := active.f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("sync outbox: %w", err)
	}
	l.mu.Lock()
	l.synced = max(l.synced, w)
	l.mu.Unlock()
	return nil
}

// Drained reports that Next has returned everything appended.
func (l *Log) Drained() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r >= l.w
}

// Ack records that the server stored every record up to and including rec
// and removes segments that hold nothing else.
func (l *Log) Ack(rec Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rec.Seq <= l.acked {
		return nil
	}
	l.acked, l.a, l.ackedOrd = rec.Seq, rec.end, rec.ord
	// Rewritten in place, fixed width, not synced: a stale value after
	// power loss only replays events the server deduplicates. compact
	// syncs it before it removes anything.
	if _, err := l.ackFile.WriteAt(fmt.Appendf(nil, "%020d\n", l.acked), 0); err != nil {
		if refused(err) {
			// A disk that refuses writes: the acknowledgement holds in
			// memory, and a stale file costs only duplicates after a
			// restart. Nothing can be removed meanwhile.
			l.log.Debug("outbox: acknowledged position not written", "err", err)
			return nil
		}
		return fmt.Errorf("write acked: %w", err)
	}
	if err := l.compact(); err != nil {
		if refused(err) {
			l.log.Debug("outbox: acknowledged segments not removed", "err", err)
			return nil
		}
		return err
	}
	return nil
}

// compact removes leading segments wholly acknowledged, except the active
// one; l.mu is held (or Open is running).
func (l *Log) compact() error {
	n := 0
	for n < len(l.segs)-1 && l.segs[n].base+l.segs[n].size <= l.a {
		n++
	}
	if n == 0 {
		return nil
	}
	// Made durable before the events it covers are removed, so that the
	// state dir never says less was acknowledged than it has deleted.
	if _, err := l.ackFile.WriteAt(fmt.Appendf(nil, "%020d\n", l.acked), 0); err != nil {
		return fmt.Errorf("write acked: %w", err)
	}
	if err := l.ackFile.Sync(); err != nil {
		return fmt.Errorf("sync acked: %w", err)
	}
	for _, seg := range l.segs[:n] {
		seg.f.Close()
		if err := os.Remove(seg.name); err != nil {
			return fmt.Errorf("remove outbox segment: %w", err)
		}
	}
	l.segs = slices.Delete(l.segs, 0, n)
	close(l.freed)
	l.freed = make(chan struct{})
	return nil
}

// Close closes the log and releases the directory lock; blocked Appends
// return ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	close(l.freed)
	var err error
	for _, seg := range l.segs {
		if e := seg.f.Sync(); e != nil && err == nil {
			err = fmt.Errorf("sync outbox: %w", e)
		}
		seg.f.Close()
	}
	if l.ackFile != nil {
		l.ackFile.Close()
	}
	if l.lock != nil {
		l.lock.Close() // releases the flock
	}
	return err
}

func (l *Log) writeTurn() error {
	b, _ := json.Marshal(l.turnState())
	// Durable: once the segments holding a turn's events are
	// acknowledged and removed, this file is the only record that the
	// turn is open. Renamed unsynced, the new file could survive a power
	// loss empty (the rename durable, its data not) and the open turn be
	// forgotten. Nor may it be durable before the event it records: a
	// power loss that kept it and took a turn_completed not yet posted
	// would leave the turn running for good in the transcript (the
	// segments holding its start removed, nothing says it is open). So
	// the log is synced first. Written at a turn's start and end, and an
	// agent's, only: four fsyncs a turn. When that fsync fails the file
	// is written all the same: the events are then safe from a kill of
	// agentd only (as Sync's failures leave them), and against a kill the
	// file must say what the log says.
	if err := l.syncLog(); err != nil {
		l.log.Warn("outbox: not synced before the turn state is written; safe from a kill of agentd, not from a power loss", "err", err)
	}
	return l.writeFile("turn", b, true)
}

// syncLog makes everything appended so far durable, for a state file
// that must not be durable before the events it follows from (the
// turn, the cursor); l.mu is held. Segments before the active one were
// synced when they rolled.
func (l *Log) syncLog() error {
	if l.synced >= l.w || len(l.segs) == 0 {
		return nil
	}
	if err := l.segs[len(l.segs)-1].f.Sync(); err != nil {
		return fmt.Errorf("sync outbox: %w", err)
	}
	l.synced = l.w
	return nil
}

// writeFile replaces a small state file atomically (write, rename), with
// fsyncs when durable.
func (l *Log) writeFile(name string, data []byte, durable bool) error {
	path := filepath.Join(l.dir, name)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil && durable {
		err = syncDir(l.dir)
	}
	if err != nil {
		_ = os.Remove(tmp) // a full disk leaves no half-written file behind
		if noSpace(err) && rewrite(path, data, durable) == nil {
			return nil
		}
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// readAcked reads the highest acknowledged agentSeq. An empty file is
// one that an outbox from before Open wrote it created, restarted before
// the server acknowledged anything: 0, not a file to warn about.
func (l *Log) readAcked() (int64, error) {
	if fi, err := os.Stat(filepath.Join(l.dir, "acked")); err == nil && fi.Size() == 0 {
		return 0, nil
	}
	v, _, err := l.readInt("acked")
	return v, err
}

func (l *Log) readInt(name string) (int64, bool, error) {
	b, err := os.ReadFile(filepath.Join(l.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read %s: %w: %w", name, ErrUnreadable, err)
	}
	// Zeros after the number are a rewrite in place (space.go) cut short
	// by a power loss: the file's new size was kept and its new bytes
	// were not, so what is left is the old number, still true (a cursor
	// behind costs a prompt run again; a reservation is written before
	// its agentSeqs are used).
	v, err := strconv.ParseInt(strings.TrimSpace(strings.TrimRight(string(b), "\x00")), 10, 64)
	if err != nil || v < 0 {
		return 0, false, fmt.Errorf("read %s: %q is not a non-negative integer", name, strings.TrimSpace(string(b)))
	}
	return v, true, nil
}

// mkdirDurable creates dir and its missing parents, and syncs the parent
// of each directory it creates: until then a power loss can take the new
// directory back, with every file in it, fsynced or not (POSIX; ext4's
// journal happens to commit it with the next fsync, other filesystems
// need not).
func mkdirDurable(dir string) error {
	var created []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || !errors.Is(err, fs.ErrNotExist) {
			break
		}
		created = append(created, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// Outermost first: each sync makes the next one's directory reachable.
	for i := len(created) - 1; i >= 0; i-- {
		if err := syncDir(filepath.Dir(created[i])); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync state dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync state dir: %w", err)
	}
	return nil
}

// conversationFile is the agent's own conversation id, so a restarted
// agent resumes it.
type conversationFile struct {
	Protocol string `json:"protocol"`
	ID       string `json:"id"`
}

// Conversation is the agent conversation id saved for protocol ("" when
// none was, or it was saved for another protocol: an id of one agent means
// nothing to another).
func (l *Log) Conversation(protocol string) (string, error) {
	b, err := os.ReadFile(filepath.Join(l.dir, "conversation"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read conversation: %w", err)
	}
	var c conversationFile
	if err := json.Unmarshal(b, &c); err != nil {
		return "", fmt.Errorf("read conversation: %w", err)
	}
	if c.Protocol != protocol {
		return "", nil
	}
	return c.ID, nil
}

// SetConversation durably records the agent's conversation id ("" forgets
// it: the next agent starts a new conversation).
func (l *Log) SetConversation(protocol, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if id == "" {
		if err := os.Remove(filepath.Join(l.dir, "conversation")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("forget conversation: %w", err)
		}
		return nil
	}
	b, err := json.Marshal(conversationFile{Protocol: protocol, ID: id})
	if err != nil {
		return fmt.Errorf("write conversation: %w", err)
	}
	return l.writeFile("conversation", append(b, '\n'), true)
}
