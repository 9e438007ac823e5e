package server_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
	"github.com/rein-ai/rein/server"
	"github.com/rein-ai/rein/server/app"
	"github.com/rein-ai/rein/server/pgtest"
	"github.com/rein-ai/rein/server/store"
)

// randomSeeds: go test -run TestRandomHistories -args -random-seeds=50
// runs more histories than CI's (seeds 1 to n); -random-first=1001 starts
// them elsewhere, for histories no earlier run has tried.
var (
	randomSeeds = flag.Int("random-seeds", 4, "TestRandomHistoriesReadAsTheFold: how many seeds to run")
	randomFirst = flag.Uint64("random-first", 1, "TestRandomHistoriesReadAsTheFold: the first seed")
)

// randomScale divides the big deltas and the sessions' sizes under the
// race detector, and randomSteps are fewer, which took the four seeds
// from 45 s to about 15 (10 s without it at full size); make test runs
// this package at full size on PostgreSQL, without the race detector.
var (
	randomScale = map[bool]int{false: 1, true: 4}[server.RaceEnabled]
	randomSteps = map[bool]int{false: 60, true: 40}[server.RaceEnabled]
)

// Random histories of streamed sessions, read back after every step.
// The write policy has many paths (appends or whole bodies, heads of big
// outputs, deferred groups and settles, released bodies restored for a
// late change, chunked rebases after a restart, NUL on a store that can
// or cannot append it), and each test of them follows one sequence; here
// they mix: groups of deltas from a byte to the protocol's 256 KiB with
// JSON escapes, NUL, U+2028 and multi-byte runes, tools
// that outgrow the whole-body limit, late changes to closed tools,
// dropped states, restarts, and (on SQLite) crashes whose refused group
// is posted again, as agentd's outbox does. On PostgreSQL two replicas
// of one database take the requests, each to either at random, and one
// or the other restarts. After each step the stored log holds exactly
// the events acknowledged, and GET /artifacts, a new stream's snapshot,
// a follower that stayed connected (reconnecting with Last-Event-ID
// across restarts) and streams resumed from earlier revisions all hold
// the fold of that log, byte for byte.
func TestRandomHistoriesReadAsTheFold(t *testing.T) {
	for seed := *randomFirst; seed < *randomFirst+uint64(*randomSeeds); seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			// Seeds 2 and 4 (mod 4) defer every group; 3 and 4 make
			// artifacts big at a few hundred KiB.
			if seed%2 == 0 {
				server.DeferEveryGroup(t)
			}
			if (seed-1)%4 >= 2 {
				server.SmallThresholds(t)
			}
			h := newHistory(t, seed)
			h.run(randomSteps)
			// The step-by-step folds are the fold of the whole log.
			for _, id := range h.ids {
				want := wantArtifacts(t, h.reps[0], id)
				if got := h.folds[id].bodies(); !reflect.DeepEqual(got, want) {
					t.Fatalf("the test's fold of %s step by step is not the fold of its log", id)
				}
			}
			t.Logf("steps %v; the largest artifact %d bytes", h.counts, h.largest)
		})
	}
}

// history is one random history: the server under test (restarted as it
// goes), the sessions' generators and the readers that follow them.
type history struct {
	t   *testing.T
	rnd *rand.Rand
	// db is the database every start opens: a SQLite file or, with
	// REIN_TEST_DB=postgres, a PostgreSQL URL.
	db string
	pg bool
	fs *fullStore // SQLite: the store, which a crash makes fail
	// clk is every start's clock: the timed settle runs only when a
	// step moves it, so sessions of deferred groups lag until a read
	// or a tick settles them, and crashes and dropped states find them
	// lagging.
	clk *fakeClock
	// reps are the servers, one on SQLite and two replicas of one
	// database on PostgreSQL; cs their clients. Each request goes to
	// one of them at random, as behind a load balancer.
	reps []*app.App
	cs   []*client
	gen  map[string]*sessionGen
	// folds are the sessions' folds of their stored logs (see fold).
	folds map[string]*fold
	ids   []string
	// followers stay connected; checkpoints are models as a follower
	// held them at some revision, for resumes.
	followers   []*follower
	checkpoints []checkpoint
	log         []string // the steps, printed when a check fails
	// counts of the steps by kind, and the largest artifact read back.
	counts  map[string]int
	largest int
}

type follower struct {
	id       string
	rep      int // the replica it follows on
	m        *model
	st       *sseStream
	verified map[int64]verified // see check
}

type checkpoint struct {
	id   string
	rev  int64
	arts map[int64][]byte
}

func newHistory(t *testing.T, seed uint64) *history {
	h := &history{t: t, rnd: rand.New(rand.NewPCG(seed, 0x5eed)), gen: map[string]*sessionGen{}, folds: map[string]*fold{}, counts: map[string]int{}, clk: newFakeClock()}
	if os.Getenv("REIN_TEST_DB") == "postgres" {
		h.pg, h.db = true, pgtest.NewDatabase(t)
	} else {
		h.db = filepath.Join(t.TempDir(), "rein.db")
	}
	n := 1
	if h.pg {
		n = 2
	}
	h.reps, h.cs = make([]*app.App, n), make([]*client, n)
	for i := range n {
		h.open(i)
	}
	for _, id := range []string{"h1", "h2"} {
		h.c().must(http.StatusCreated, nil, "POST", "/sessions/"+id, nil)
		h.gen[id] = &sessionGen{id: id, rnd: h.rnd}
		h.ids = append(h.ids, id)
		h.follow(id)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d, the steps:\n%s", seed, strings.Join(h.log, "\n"))
		}
	})
	return h
}

// open starts server i on the database.
func (h *history) open(i int) {
	if h.pg {
		h.reps[i] = start(h.t, app.Options{DBPath: h.db, Now: h.clk.Now})
	} else {
		h.fs = &fullStore{Store: openSQLite(h.t, h.db)}
		h.reps[i] = start(h.t, app.Options{Store: h.fs, Now: h.clk.Now})
	}
	h.cs[i] = newClient(h.t, h.reps[i])
}

// pick returns a server's index at random.
func (h *history) pick() int { return h.rnd.IntN(len(h.reps)) }

// c returns a server's client at random.
func (h *history) c() *client { return h.cs[h.pick()] }

// restart stops server i (and the SQLite store), as a stop or, after a
// refused commit, a crash leaves them, and starts it again; its
// followers' streams end, and they resume on any server.
func (h *history) restart(i int) {
	err := h.reps[i].Close()
	if h.fs != nil {
		if cerr := h.fs.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil && (h.fs == nil || !h.fs.full.Load()) {
		h.t.Fatalf("close: %v", err)
	}
	for _, f := range h.followers {
		if f.rep == i {
			f.st.expectEnd()
		}
	}
	h.open(i)
	for _, f := range h.followers {
		if f.rep == i {
			h.reattach(f)
		}
	}
}

// reattach resumes a follower whose stream ended on a server at random,
// from the last revision it saw, as a client does with Last-Event-ID.
func (h *history) reattach(f *follower) {
	f.rep = h.pick()
	f.st = h.cs[f.rep].stream("/sessions/"+f.id+"/stream", "Last-Event-ID", f.m.lastID)
	f.m.readSnapshot(f.st)
}

func (h *history) run(steps int) {
	for step := range steps {
		id := h.ids[h.rnd.IntN(len(h.ids))]
		// The sessions the step may have changed: id, or all of them.
		touched := []string{id}
		switch r := h.rnd.IntN(100); {
		case r < 75:
			g := h.gen[id].group()
			h.logf("%d: post %s", step, describe(g))
			h.post(id, g)
		case r < 80:
			i := h.pick()
			h.logf("%d: restart %d", step, i)
			h.restart(i)
			touched = h.ids
		case r < 84 && !h.pg:
			// A crash: the disk refuses the next group's commit, and the
			// server stops without settling. The group was not
			// acknowledged; agentd posts it again to the next start.
			g := h.gen[id].group()
			h.logf("%d: crash on post %s", step, describe(g))
			h.fs.full.Store(true)
			status, body := h.cs[0].do("POST", "/sessions/"+id+"/events", g, protocol.HeaderInstance, "i1")
			if status < 500 {
				h.t.Fatalf("a post to a full disk: %d %s; want a 5xx", status, body)
			}
			h.restart(0)
			h.post(id, g)
			touched = h.ids
		case r < 88:
			i := h.pick()
			h.logf("%d: drop %s's state on %d", step, id, i)
			server.DropState(h.reps[i].Server, id)
		case r < 91:
			h.logf("%d: tick", step)
			h.clk.Add(server.SettleEvery)
			touched = h.ids
		case r < 94 && len(h.followers) < 5:
			h.logf("%d: follow %s", step, id)
			h.follow(id)
		case r < 95:
			// The session deleted and created again under its id: its
			// new events get the old ones' seqs, ids and revisions.
			h.logf("%d: recreate %s", step, id)
			h.c().must(http.StatusNoContent, nil, "DELETE", "/sessions/"+id, nil)
			h.c().must(http.StatusCreated, nil, "POST", "/sessions/"+id, nil)
			h.gen[id] = &sessionGen{id: id, rnd: h.rnd}
			delete(h.folds, id)
			h.followers = slices.DeleteFunc(h.followers, func(f *follower) bool {
				if f.id == id {
					f.st.expectEnd()
				}
				return f.id == id
			})
			h.checkpoints = slices.DeleteFunc(h.checkpoints, func(cp checkpoint) bool { return cp.id == id })
			h.follow(id)
		default:
			if len(h.checkpoints) == 0 {
				continue
			}
			cp := h.checkpoints[h.rnd.IntN(len(h.checkpoints))]
			h.logf("%d: resume %s from %d", step, cp.id, cp.rev)
			h.resume(cp)
		}
		// Reads settle a lagging session: two steps in three leave
		// them to a later one.
		h.check(step, touched, h.rnd.IntN(3) == 0)
	}
}

func (h *history) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	h.log = append(h.log, line)
	_, kind, _ := strings.Cut(line, ": ")
	kind, _, _ = strings.Cut(kind, " ")
	h.counts[kind]++
}

// post posts a group and records its events as acknowledged.
func (h *history) post(id string, g []map[string]any) {
	h.t.Helper()
	h.c().must(http.StatusAccepted, nil, "POST", "/sessions/"+id+"/events", g, protocol.HeaderInstance, "i1")
	for _, e := range g {
		h.gen[id].acked = append(h.gen[id].acked, int64(e["agentSeq"].(int)))
	}
}

// follow opens a stream that follows the session from here on.
func (h *history) follow(id string) {
	f := &follower{id: id, rep: h.pick(), m: newModel(h.t)}
	f.st = h.cs[f.rep].stream("/sessions/" + id + "/stream")
	f.m.readSnapshot(f.st)
	h.followers = append(h.followers, f)
}

// resume opens a stream from a checkpoint's revision onto the model
// held then.
func (h *history) resume(cp checkpoint) {
	m := newModel(h.t)
	for seq, b := range cp.arts {
		var a protocol.Artifact
		if err := json.Unmarshal(b, &a); err != nil {
			h.t.Fatal(err)
		}
		m.arts[seq] = &a
	}
	m.lastID = itoa(cp.rev)
	st := h.c().stream("/sessions/"+cp.id+"/stream", "Last-Event-ID", m.lastID)
	defer st.close()
	m.readSnapshot(st)
	checkModel(h.t, m, h.folds[cp.id].bodies())
}

// readUntilRev reads the follower's stream until its model holds rev.
// A stream a replica ends is resumed, as a client does, with
// Last-Event-ID on any replica: a replica that learns late that a
// session was deleted and created again (on the other one) ends the
// streams it opened meanwhile, as it ends those of a deleted session. A
// single server ends a stream only when it stops, so there an end fails.
func (h *history) readUntilRev(f *follower, rev int64) {
	h.t.Helper()
	for resumes := 0; rev > 0 && (f.m.lastID == "" || atoi(h.t, f.m.lastID) < rev); {
		e, err := f.st.read()
		if errors.Is(err, io.EOF) && len(h.reps) > 1 && resumes < 3 {
			resumes++
			h.log = append(h.log, fmt.Sprintf("   a follower of %s on %d ended; resumed from %s", f.id, f.rep, f.m.lastID))
			h.counts["ended"]++
			h.reattach(f)
			continue
		}
		if err != nil {
			h.t.Fatalf("a follower of %s on %d: %v", f.id, f.rep, err)
		}
		f.m.apply(e)
	}
}

// check holds the followers of the sessions ids, and with reads every
// read of them, to the fold of their logs.
func (h *history) check(step int, ids []string, reads bool) {
	h.t.Helper()
	for _, id := range ids {
		log, err := h.reps[h.pick()].Store().Events(h.t.Context(), id)
		if err != nil {
			h.t.Fatal(err)
		}
		var stored []int64
		for _, e := range log {
			stored = append(stored, e.AgentSeq)
		}
		if !slices.Equal(stored, h.gen[id].acked) {
			h.t.Fatalf("step %d: %s's log holds the events of agentSeq %v; acknowledged %v", step, id, stored, h.gen[id].acked)
		}
		fd := h.fold(id, log)
		want := fd.bodies()
		if reads {
			checkArtifacts(h.t, h.c(), id, want)
			if h.rnd.IntN(2) == 0 {
				checkSnapshot(h.t, h.c(), id, "", want)
			}
		}
		for _, b := range want {
			h.largest = max(h.largest, len(b))
		}
		for _, f := range h.followers {
			if f.id != id {
				continue
			}
			h.readUntilRev(f, fd.st.Rev())
			f.check(h.t, fd)
			if h.rnd.IntN(4) == 0 {
				// The follower holds want (checked): its bodies are the
				// checkpoint's.
				h.checkpoints = append(h.checkpoints, checkpoint{id: id, rev: fd.st.Rev(), arts: want})
			}
		}
	}
}

// fold is the test's own fold of a session's stored log, kept up to date
// a step at a time (a whole fold and encoding of every artifact at every
// step made the test spend most of its time on itself): the truth every
// read is held to.
type fold struct {
	st      *reducer.State
	applied int // the log's events folded
	enc     map[int64]encoded
	gen     int // counts encodings
}

// encoded is an artifact's encoding, and when it was made.
type encoded struct {
	body []byte
	gen  int
}

// fold folds the events of log not folded yet into the session's fold
// and encodes the artifacts they changed.
func (h *history) fold(id string, log []store.Event) *fold {
	h.t.Helper()
	fd := h.folds[id]
	if fd == nil {
		fd = &fold{st: reducer.New(), enc: map[int64]encoded{}}
		h.folds[id] = fd
	}
	changed := map[int64]bool{}
	for _, le := range log[fd.applied:] {
		var e protocol.Event
		if err := json.Unmarshal(le.Body, &e); err != nil {
			h.t.Fatal(err)
		}
		for _, c := range fd.st.Apply(e) {
			if c.Seq > 0 {
				changed[c.Seq] = true
			}
		}
	}
	fd.applied = len(log)
	for seq := range changed {
		fd.gen++
		fd.enc[seq] = encoded{body: mustJSON(h.t, fd.st.Artifact(seq)), gen: fd.gen}
	}
	return fd
}

// bodies returns the fold's artifacts by seq.
func (fd *fold) bodies() map[int64][]byte {
	out := make(map[int64][]byte, len(fd.enc))
	for seq, e := range fd.enc {
		out[seq] = e.body
	}
	return out
}

// check compares the follower's model with the fold byte for byte,
// skipping the artifacts it compared before that neither side changed
// since (the same artifact at the same revision, the same encoding).
func (f *follower) check(t testing.TB, fd *fold) {
	t.Helper()
	if len(f.m.arts) != len(fd.enc) {
		t.Fatalf("a follower of %s holds %d artifacts; want %d", f.id, len(f.m.arts), len(fd.enc))
	}
	if f.verified == nil {
		f.verified = map[int64]verified{}
	}
	for seq, w := range fd.enc {
		a := f.m.arts[seq]
		if a == nil {
			t.Fatalf("a follower of %s lacks seq %d", f.id, seq)
		}
		v := verified{a: a, rev: a.Rev, gen: w.gen}
		if f.verified[seq] == v {
			continue
		}
		if got := mustJSON(t, a); !bytes.Equal(got, w.body) {
			t.Fatalf("a follower of %s: seq %d differs from the fold\ngot  %.300s\nwant %.300s", f.id, seq, got, w.body)
		}
		f.verified[seq] = v
	}
}

type verified struct {
	a   *protocol.Artifact
	rev int64
	gen int
}

// describe names a group's events and their sizes, for the steps' log.
func describe(g []map[string]any) string {
	var parts []string
	for _, e := range g {
		p := fmt.Sprint(e["type"])
		if id, ok := e["id"]; ok {
			p += " " + fmt.Sprint(id)
		}
		if d, ok := e["delta"].(string); ok {
			p += fmt.Sprintf(" (%d bytes)", len(d))
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// sessionGen makes one session's events: turns of text, reasoning and
// tools, in an order an agent could send them, and now and then a late
// change to a tool closed before.
type sessionGen struct {
	id     string
	rnd    *rand.Rand
	seq    int // the last agentSeq
	n      int // ids made
	turn   string
	text   string   // the open text block, "" when none
	tools  []string // open tools
	closed []string // closed tools
	acked  []int64  // the agentSeqs acknowledged, in order
	bytes  int      // the events' encoded bytes so far
}

// group is the next POST's events, within the protocol's limits.
func (g *sessionGen) group() []map[string]any {
	var evs []map[string]any
	budget := protocol.MaxBodyBytes - 64<<10
	// A big output's group, while the session is small enough that
	// reading it back after every step stays quick.
	burst := len(g.tools) > 0 && g.rnd.IntN(4) == 0 && g.bytes < 2<<20/randomScale
	for k := 1 + g.rnd.IntN(4); k > 0; k-- {
		e := g.event(burst)
		b := fit(e)
		if len(b) > budget && len(evs) > 0 {
			break
		}
		budget -= len(b)
		g.bytes += len(b)
		g.seq++
		e["agentSeq"] = g.seq
		evs = append(evs, e)
	}
	return evs
}

func (g *sessionGen) newID(prefix string) string {
	g.n++
	return fmt.Sprintf("%s%d", prefix, g.n)
}

func (g *sessionGen) event(burst bool) map[string]any {
	if g.turn == "" {
		g.turn = g.newID("t")
		return ev("turn_started", "turnId", g.turn, "source", "user")
	}
	if burst && len(g.tools) > 0 {
		return ev("tool_output_delta", "id", g.tools[0], "delta", g.content((160<<10+g.rnd.IntN(96<<10))/randomScale))
	}
	switch r := g.rnd.IntN(100); {
	case r < 25:
		if g.text == "" {
			g.text = g.newID("m")
		}
		return ev("text_delta", "id", g.text, "delta", g.content(g.size()))
	case r < 30:
		return ev("reasoning_delta", "id", g.newID("r"), "delta", g.content(g.size()))
	case r < 38:
		id := g.newID("x")
		g.tools = append(g.tools, id)
		return ev("tool_call_start", "id", id, "name", "sh", "input", map[string]any{"cmd": g.content(1 + g.rnd.IntN(40))})
	case r < 70 && len(g.tools) > 0:
		return ev("tool_output_delta", "id", g.pick(g.tools), "delta", g.content(g.size()))
	case r < 73 && len(g.tools) > 0:
		return ev("tool_input_delta", "id", g.pick(g.tools), "delta", g.content(1+g.rnd.IntN(20)))
	case r < 83 && len(g.tools) > 0:
		id := g.pick(g.tools)
		g.tools = slices.DeleteFunc(g.tools, func(s string) bool { return s == id })
		g.closed = append(g.closed, id)
		return ev("tool_call_end", "id", id, "status", []string{"completed", "failed"}[g.rnd.IntN(2)])
	case r < 86 && g.text != "":
		id := g.text
		g.text = ""
		return ev("text_end", "id", id)
	case r < 90 && len(g.closed) > 0:
		// A late change to a closed tool, perhaps of an earlier turn,
		// whose body the server may have released.
		id := g.pick(g.closed)
		if g.rnd.IntN(2) == 0 {
			return ev("tool_output_delta", "id", id, "delta", g.content(g.size()))
		}
		return ev("tool_call_end", "id", id, "status", []string{"completed", "failed", "cancelled"}[g.rnd.IntN(3)])
	case r < 95:
		turn := g.turn
		g.turn, g.text = "", ""
		g.closed = append(g.closed, g.tools...)
		g.tools = nil
		return ev("turn_completed", "turnId", turn, "stopReason", "end_turn")
	default:
		if g.text == "" {
			g.text = g.newID("m")
		}
		return ev("text_delta", "id", g.text, "delta", g.content(1+g.rnd.IntN(8)))
	}
}

// fit cuts an event's delta, at a rune, until it is within the
// protocol's limits (MaxTextLen, and MaxEventBytes once JSON escaped
// it), and returns the event's encoding.
func fit(e map[string]any) []byte {
	for {
		b, err := json.Marshal(e)
		if err != nil {
			panic(err)
		}
		d, ok := e["delta"].(string)
		if !ok || len(d) <= protocol.MaxTextLen && len(b) <= protocol.MaxEventBytes-1<<10 {
			return b
		}
		n := min(len(d)/2, protocol.MaxTextLen)
		for n > 0 && !utf8.RuneStart(d[n]) {
			n--
		}
		e["delta"] = d[:n]
	}
}

func (g *sessionGen) pick(ids []string) string { return ids[g.rnd.IntN(len(ids))] }

// size is a delta's length: mostly a few bytes, sometimes KiBs, now and
// then tens of KiB.
func (g *sessionGen) size() int {
	switch r := g.rnd.IntN(100); {
	case r < 70:
		return 1 + g.rnd.IntN(200)
	case r < 92:
		return 1 + g.rnd.IntN(16<<10)
	case g.bytes < 3<<20/randomScale:
		return (32<<10 + g.rnd.IntN(64<<10)) / randomScale
	}
	return 1 + g.rnd.IntN(1<<10)
}

// pieces are what deltas are made of: text that JSON escapes, NUL, line
// and paragraph separators, runes of two to four bytes.
var pieces = []string{
	"plain ", "line\n", `"`, `\`, "<&>", "\t", "\r\n", "\x00", "\x01\x1f", "\u2028", "\u2029", "é", "✓", "🙂", "ab", "0123456789",
}

// content is about n bytes of pieces: a binary-like run (NUL-heavy) now
// and then, text otherwise. JSON escapes NUL in six bytes, so a run of
// it is kept short enough that its event fits protocol.MaxEventBytes.
func (g *sessionGen) content(n int) string {
	var b strings.Builder
	binary := g.rnd.IntN(8) == 0
	if binary {
		n = min(n, protocol.MaxEventBytes/8)
	}
	for b.Len() < n {
		if binary && g.rnd.IntN(2) == 0 {
			b.WriteString("\x00\x00\x7fELF\x00")
			continue
		}
		p := pieces[g.rnd.IntN(len(pieces))]
		if g.rnd.IntN(4) == 0 {
			p = strings.Repeat(p, 1+g.rnd.IntN(64))
		}
		b.WriteString(p)
	}
	return b.String()
}
