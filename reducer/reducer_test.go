package reducer_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
)

var update = flag.Bool("update", false, "rewrite the golden artifacts.json and session.json files")

// readLog reads testdata/<case>/events.jsonl through the protocol decoder
// (so the goldens are valid wire events) and stamps deterministic times.
func readLog(tb testing.TB, path string) []protocol.Event {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []protocol.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		evs, err := protocol.DecodeEvents(sc.Bytes())
		if err != nil {
			tb.Fatalf("%s:%d: %v", path, line, err)
		}
		evs[0].ReceivedAt = 1_700_000_000_000 + int64(line)
		out = append(out, evs[0])
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

type sessionView struct {
	Status  protocol.SessionStatus `json:"status"`
	Summary string                 `json:"summary"`
	Rev     int64                  `json:"rev"`
}

func indent(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	return append(b, '\n')
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the fold:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestGoldenTranscripts(t *testing.T) {
	dirs, err := filepath.Glob("testdata/*/events.jsonl")
	if err != nil || len(dirs) < 8 {
		t.Fatalf("want at least 8 golden cases, found %d (%v)", len(dirs), err)
	}
	for _, p := range dirs {
		dir := filepath.Dir(p)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			s := reducer.Fold(readLog(t, p))
			golden(t, filepath.Join(dir, "artifacts.json"), indent(t, s.Artifacts()))
			golden(t, filepath.Join(dir, "session.json"), indent(t, sessionView{s.Status(), s.Summary(), s.Rev()}))
		})
	}
}

// clientModel is what a client holds: artifacts by seq, built only from
// what the artifact stream sends.
type clientModel map[int64]*protocol.Artifact

func (m clientModel) apply(tb testing.TB, c reducer.Change) {
	tb.Helper()
	switch c.Kind {
	case reducer.Created:
		// Round-trip through JSON, as the stream does.
		var a protocol.Artifact
		if err := json.Unmarshal(indent(tb, c.Artifact), &a); err != nil {
			tb.Fatal(err)
		}
		m[c.Seq] = &a
	case reducer.Appended, reducer.Set:
		a := m[c.Seq]
		if a == nil {
			tb.Fatalf("update for seq %d before it was created", c.Seq)
		}
		u := c.Update()
		var wire protocol.ArtifactUpdate
		if err := json.Unmarshal(indent(tb, u), &wire); err != nil {
			tb.Fatal(err)
		}
		if err := wire.Apply(a, c.Rev); err != nil {
			tb.Fatal(err)
		}
	}
}

func (m clientModel) list() []*protocol.Artifact {
	out := make([]*protocol.Artifact, 0, len(m))
	for seq := int64(1); seq <= int64(len(m)); seq++ {
		out = append(out, m[seq])
	}
	return out
}

// checkProperties asserts the reducer's promises on one log.
func checkProperties(tb testing.TB, log []protocol.Event) {
	tb.Helper()
	s := reducer.New()
	plain, coalesced := clientModel{}, clientModel{}
	var lastRev int64
	for _, ev := range log {
		changes := s.Apply(ev)
		checkSize(tb, s, fmt.Sprintf("%s: after Apply", ev.Type))
		created := 0
		for _, c := range changes {
			if !c.IsArtifact() {
				continue
			}
			if c.Kind == reducer.Created {
				// The server's artifact cap counts on this bound.
				if created++; created > reducer.MaxNewArtifacts(ev) {
					tb.Fatalf("%s created %d artifacts; MaxNewArtifacts says at most %d", ev.Type, created, reducer.MaxNewArtifacts(ev))
				}
			}
			if c.Rev <= lastRev {
				tb.Fatalf("revision %d after %d: revisions must strictly increase", c.Rev, lastRev)
			}
			lastRev = c.Rev
			plain.apply(tb, c)
		}
		for _, c := range reducer.Coalesce(changes) {
			coalesced.apply(tb, c)
		}
		checkTruth(tb, s, ev)
	}
	want := indent(tb, s.Artifacts())
	if got := indent(tb, plain.list()); !bytes.Equal(got, want) {
		tb.Fatalf("client model built from the changes differs from the fold:\n--- model\n%s\n--- fold\n%s", got, want)
	}
	if got := indent(tb, coalesced.list()); !bytes.Equal(got, want) {
		tb.Fatalf("client model built from coalesced changes differs from the fold:\n--- model\n%s\n--- fold\n%s", got, want)
	}
	if again := indent(tb, reducer.Fold(log).Artifacts()); !bytes.Equal(again, want) {
		tb.Fatalf("folding the same log twice gave different artifacts")
	}
	if s.Rev() != lastRev {
		tb.Fatalf("state rev %d, last change rev %d", s.Rev(), lastRev)
	}
	checkReleased(tb, log)
}

// releasingFold folds a log as the server does: after each event it
// stores the body of every artifact the event changed and releases the
// closed ones, restoring what Needs names from those stored bodies. It
// returns the state, the changes per event and the stored bodies.
func releasingFold(tb testing.TB, log []protocol.Event) (*reducer.State, [][]reducer.Change, map[int64][]byte) {
	tb.Helper()
	s := reducer.New()
	stored := map[int64][]byte{}
	var all [][]reducer.Change
	for i, ev := range log {
		for need := s.Needs(ev); len(need) > 0; need = s.Needs(ev) {
			for _, seq := range need {
				if err := s.Restore(stored[seq]); err != nil {
					tb.Fatalf("event %d: %v", i, err)
				}
				if !s.Held(seq) {
					tb.Fatalf("event %d: artifact %d not held after Restore", i, seq)
				}
				checkSize(tb, s, fmt.Sprintf("event %d: after Restore(%d)", i, seq))
			}
		}
		changes := s.Apply(ev)
		for _, c := range changes {
			if !c.IsArtifact() {
				continue
			}
			a := s.Artifact(c.Seq)
			if a == nil {
				tb.Fatalf("event %d: artifact %d changed but not held", i, c.Seq)
			}
			body, rev, err := s.ArtifactJSON(c.Seq) // as the server stores it
			if err != nil {
				tb.Fatal(err)
			}
			if want, _ := json.Marshal(a); !bytes.Equal(body, want) || rev != a.Rev {
				tb.Fatalf("event %d: ArtifactJSON(%d) = %s rev %d; json.Marshal(Artifact) = %s rev %d", i, c.Seq, body, rev, want, a.Rev)
			}
			stored[c.Seq] = body
		}
		all = append(all, changes)
		checkSize(tb, s, fmt.Sprintf("event %d (%s): after Apply", i, ev.Type))
		s.Release()
		checkSize(tb, s, fmt.Sprintf("event %d: after Release", i))
	}
	return s, all, stored
}

// checkSize holds Size, kept as bodies change, to a count from scratch.
func checkSize(tb testing.TB, s *reducer.State, when string) {
	tb.Helper()
	if got, want := s.Size(), s.RecountSize(); got != want {
		tb.Fatalf("%s: Size() = %d; counted from scratch %d", when, got, want)
	}
}

// checkReleased asserts that a state releasing closed bodies makes exactly
// the changes of one that keeps everything, and stores the same artifacts.
func checkReleased(tb testing.TB, log []protocol.Event) {
	tb.Helper()
	full := reducer.New()
	released, changes, stored := releasingFold(tb, log)
	for i, ev := range log {
		want := indent(tb, full.Apply(ev))
		if got := indent(tb, changes[i]); !bytes.Equal(got, want) {
			tb.Fatalf("event %d (%s): releasing state changed\n%s\nthe full state\n%s", i, ev.Type, got, want)
		}
	}
	if len(stored) != full.Len() || released.Len() != full.Len() {
		tb.Fatalf("releasing state stored %d artifacts and has %d; the full state has %d", len(stored), released.Len(), full.Len())
	}
	for seq, body := range stored {
		if want, _ := json.Marshal(full.Artifact(seq)); !bytes.Equal(body, want) {
			tb.Fatalf("artifact %d stored as\n%s\nthe full state has\n%s", seq, body, want)
		}
	}
	if released.Rev() != full.Rev() || released.Status() != full.Status() || released.Summary() != full.Summary() || released.TurnOpen() != full.TurnOpen() {
		tb.Fatalf("releasing state rev %d status %q summary %q; full %d %q %q", released.Rev(), released.Status(), released.Summary(), full.Rev(), full.Status(), full.Summary())
	}
}

func TestPropertiesOnGoldens(t *testing.T) {
	paths, _ := filepath.Glob("testdata/*/events.jsonl")
	for _, p := range paths {
		t.Run(filepath.Base(filepath.Dir(p)), func(t *testing.T) {
			checkProperties(t, readLog(t, p))
		})
	}
}

func TestCoalesceMergesOnlyAdjacentAppends(t *testing.T) {
	in := []reducer.Change{
		{Kind: reducer.Appended, Rev: 1, Seq: 1, Field: "text", Append: "a"},
		{Kind: reducer.Appended, Rev: 2, Seq: 1, Field: "text", Append: "b"},
		{Kind: reducer.Appended, Rev: 3, Seq: 2, Field: "output", Append: "x"},
		{Kind: reducer.Appended, Rev: 4, Seq: 1, Field: "text", Append: "c"},
		{Kind: reducer.Set, Rev: 5, Seq: 1, Field: "status", Set: json.RawMessage(`"done"`)},
		{Kind: reducer.Appended, Rev: 6, Seq: 1, Field: "text", Append: "d"},
	}
	got := reducer.Coalesce(in)
	want := []reducer.Change{
		{Kind: reducer.Appended, Rev: 2, Seq: 1, Field: "text", Append: "ab"},
		in[2], in[3], in[4], in[5],
	}
	if !bytes.Equal(indent(t, got), indent(t, want)) {
		t.Fatalf("Coalesce:\n got %s\nwant %s", indent(t, got), indent(t, want))
	}
}

func TestStatusAndSummaryChanges(t *testing.T) {
	s := reducer.New()
	kinds := func(cs []reducer.Change) (st protocol.SessionStatus, sum string) {
		for _, c := range cs {
			switch c.Kind {
			case reducer.StatusChanged:
				st = c.Status
			case reducer.SummaryChanged:
				sum = c.Summary
			}
		}
		return
	}
	steps := []struct {
		ev         protocol.Event
		wantStatus protocol.SessionStatus
		wantSum    string
	}{
		{protocol.Event{Type: protocol.EventAgentStarted, Agent: &protocol.AgentInfo{Name: "a", Protocol: "native"}}, protocol.StatusIdle, ""},
		{protocol.Event{Type: protocol.EventTurnStarted, TurnID: "t1", Source: protocol.SourceUser}, protocol.StatusLive, ""},
		{protocol.Event{Type: protocol.EventAgentStarted, Agent: &protocol.AgentInfo{Name: "a", Protocol: "native"}}, protocol.StatusLive, ""},
		{protocol.Event{Type: protocol.EventUserMessage, Text: "  fix   the\tbug \nsecond line"}, "", "fix the bug"},
		{protocol.Event{Type: protocol.EventUserMessage, Text: "later prompt"}, "", ""},
		{protocol.Event{Type: protocol.EventSessionInfo, Title: "Agent title"}, "", "Agent title"},
		{protocol.Event{Type: protocol.EventTurnCompleted, StopReason: protocol.StopEndTurn}, protocol.StatusIdle, ""},
		{protocol.Event{Type: protocol.EventHeartbeat}, "", ""},
		// No turn is open, and the agent is gone: idle all the same.
		{protocol.Event{Type: protocol.EventAgentExited, Error: "exec: not found"}, protocol.StatusIdle, ""},
	}
	for i, st := range steps {
		gotSt, gotSum := kinds(s.Apply(st.ev))
		if gotSt != st.wantStatus || gotSum != st.wantSum {
			t.Errorf("step %d (%s): status %q summary %q; want %q %q", i, st.ev.Type, gotSt, gotSum, st.wantStatus, st.wantSum)
		}
	}
	if s.Summary() != "Agent title" {
		t.Errorf("summary %q", s.Summary())
	}
}

// FuzzFold checks the reducer's promises on logs built from fuzz input:
// each pair of bytes picks an event template and an id from small pools, so
// the fuzzer explores interleavings of turns, blocks, tools and permissions.
func FuzzFold(f *testing.F) {
	f.Add([]byte{1, 0, 3, 1, 4, 1, 22, 0})
	f.Add([]byte{1, 0, 7, 2, 8, 2, 11, 2, 12, 1, 13, 0, 22, 1, 1, 1})
	f.Add([]byte{5, 0, 5, 1, 6, 0, 9, 0, 10, 0, 16, 1, 17, 1, 2, 0})
	// A tool call and a permission after the turn ended, then the agent exits.
	f.Add([]byte{1, 0, 22, 0, 9, 0, 31, 0, 5, 0, 2, 0})
	// A notice and an interrupted turn amid id-less text.
	f.Add([]byte{1, 0, 5, 0, 24, 0, 5, 0, 26, 0, 28, 0})
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) > 400 {
			prog = prog[:400]
		}
		var log []protocol.Event
		for i := 0; i+1 < len(prog); i += 2 {
			ev := template(prog[i], prog[i+1])
			ev.ReceivedAt = int64(i)
			// Everything the fuzzer builds must be a valid wire event, so the
			// properties hold for what the server can actually receive.
			raw, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := protocol.DecodeEvents(raw); err != nil {
				t.Fatalf("template %d built an invalid event: %v", prog[i]%32, err)
			}
			log = append(log, ev)
		}
		checkProperties(t, log)
	})
}

func template(op, arg byte) protocol.Event {
	ids := []string{"a", "b", "c"}
	id := ids[int(arg)%len(ids)]
	one := 1
	opts := []protocol.PermissionOption{{ID: "y", Name: "Yes", Kind: protocol.AllowOnce}, {ID: "n", Name: "No", Kind: protocol.RejectOnce}}
	stops := []protocol.StopReason{protocol.StopEndTurn, protocol.StopCancelled, protocol.StopError, protocol.StopRefusal}
	switch op % 32 {
	case 0:
		return protocol.Event{Type: protocol.EventHeartbeat}
	case 1:
		return protocol.Event{Type: protocol.EventTurnStarted, TurnID: "t" + id, Source: protocol.SourceUser}
	case 2:
		return protocol.Event{Type: protocol.EventAgentExited, ExitStatus: &one}
	case 3:
		return protocol.Event{Type: protocol.EventUserMessage, Text: "hi " + id}
	case 4:
		return protocol.Event{Type: protocol.EventTextDelta, ID: id, Delta: "x" + id}
	case 5:
		return protocol.Event{Type: protocol.EventTextDelta, Delta: "bare"}
	case 6:
		return protocol.Event{Type: protocol.EventTextEnd, ID: id, Text: "final " + id}
	case 7:
		return protocol.Event{Type: protocol.EventReasoningDelta, Delta: "r"}
	case 8:
		return protocol.Event{Type: protocol.EventReasoningEnd, ID: id, Redacted: arg%2 == 0}
	case 9:
		return protocol.Event{Type: protocol.EventToolCallStart, ID: id, Name: "shell", Input: json.RawMessage(`{"c":1}`)}
	case 10:
		return protocol.Event{Type: protocol.EventToolInputDelta, ID: id, Delta: "{"}
	case 11:
		return protocol.Event{Type: protocol.EventToolCallUpdate, ID: id, Status: protocol.ToolRunning, Content: json.RawMessage(`[1]`)}
	case 12:
		return protocol.Event{Type: protocol.EventToolOutputDelta, ID: id, Delta: "out\n"}
	case 13:
		return protocol.Event{Type: protocol.EventToolCallEnd, ID: id, Status: protocol.ToolCompleted, Output: "all", ExitCode: &one}
	case 14:
		return protocol.Event{Type: protocol.EventPlanUpdated, Entries: []protocol.PlanEntry{{Content: id, Status: protocol.PlanPending}}}
	case 15:
		return protocol.Event{Type: protocol.EventPlanUpdated, ID: id, Entries: []protocol.PlanEntry{}}
	case 16:
		return protocol.Event{Type: protocol.EventPermissionRequested, ID: "p" + id, ToolCallID: id, Title: "ok?", Options: opts}
	case 17:
		return protocol.Event{Type: protocol.EventPermissionResolved, ID: "p" + id, Outcome: protocol.OutcomeSelected, OptionID: []string{"y", "n", "zz"}[int(arg)%3]}
	case 18:
		return protocol.Event{Type: protocol.EventPermissionResolved, ID: "p" + id, Outcome: protocol.OutcomeCancelled}
	case 19:
		return protocol.Event{Type: protocol.EventFileChanged, Path: "f", Change: protocol.ChangeUpdate}
	case 20:
		n := int64(arg)
		return protocol.Event{Type: protocol.EventUsageUpdated, OutputTokens: &n}
	case 21:
		return protocol.Event{Type: protocol.EventSessionInfo, Summary: "s" + id}
	case 22:
		return protocol.Event{Type: protocol.EventTurnCompleted, StopReason: stops[int(arg)%len(stops)]}
	case 24:
		return protocol.Event{Type: protocol.EventNotice, Level: protocol.LevelInfo, Message: "n" + id}
	case 25:
		return protocol.Event{Type: protocol.EventToolCallUpdate, ID: id, Status: []protocol.ToolStatus{protocol.ToolCompleted, protocol.ToolPending, protocol.ToolDenied}[int(arg)%3]}
	case 26:
		return protocol.Event{Type: protocol.EventTextEnd, Text: "end " + id}
	case 27:
		return protocol.Event{Type: protocol.EventTurnCompleted, TurnID: "t" + id, StopReason: stops[int(arg)%len(stops)]}
	case 28:
		return protocol.Event{Type: protocol.EventTurnCompleted, StopReason: protocol.StopInterrupted, Error: "gone"}
	case 29:
		return protocol.Event{Type: protocol.EventReasoningDelta, ID: "r" + id, Delta: "r" + id}
	case 30:
		return protocol.Event{Type: protocol.EventToolCallEnd, ID: id, Status: protocol.ToolFailed, Error: "e"}
	case 31:
		return protocol.Event{Type: protocol.EventPermissionRequested, ID: "p" + id, Title: "ok?", Options: opts}
	default:
		return protocol.Event{Type: protocol.EventAgentStarted, Agent: &protocol.AgentInfo{Name: "a", Protocol: "native"}}
	}
}

// underWay says whether an artifact claims something is still under way.
func underWay(a *protocol.Artifact) bool {
	st := a.String("status")
	switch a.Type {
	case protocol.ArtifactTurn:
		return st == string(protocol.TurnRunning)
	case protocol.ArtifactAssistantText, protocol.ArtifactReasoning:
		return st == string(protocol.BlockStreaming)
	case protocol.ArtifactToolCall:
		switch protocol.ToolStatus(st) {
		case protocol.ToolPending, protocol.ToolAwaitingApproval, protocol.ToolRunning:
			return true
		}
	case protocol.ArtifactPermission:
		return st == string(protocol.PermissionPending)
	}
	return false
}

// checkTruth holds the artifacts after ev to what is true whatever the
// agent sends: at most one turn runs, and it is the open one; a tool
// awaits approval only while a permission naming it is pending; nothing
// of a turn that ended is under way, neither as it ends nor after (a late
// event cannot start again what the turn's end stopped); after
// agent_exited nothing is.
func checkTruth(tb testing.TB, s *reducer.State, ev protocol.Event) {
	tb.Helper()
	arts := s.Artifacts()
	running := 0
	pendingFor := map[string]bool{}
	for _, a := range arts {
		if a.Type == protocol.ArtifactTurn && underWay(a) {
			running++
		}
		if a.Type == protocol.ArtifactPermission && underWay(a) {
			pendingFor[a.String("toolCallId")] = true
		}
	}
	if running > 1 || (running == 1) != s.TurnOpen() {
		tb.Fatalf("after %s: %d turns running; a turn is open: %v", ev.Type, running, s.TurnOpen())
	}
	ended := map[int64]bool{} // turns that are over, by seq
	for _, a := range arts {
		if a.Type == protocol.ArtifactTurn && !underWay(a) {
			ended[a.Seq] = true
		}
	}
	// owner is the seq of the turn an artifact was created in: the
	// newest turn before it, which docs/PROTOCOL.md tells clients to
	// take, turn ids being ambiguous; its id is the artifact's turnId.
	owner, newest := map[int64]int64{}, map[string]int64{}
	var last *protocol.Artifact
	for _, a := range arts {
		if a.Type == protocol.ArtifactTurn {
			newest[a.ID] = a.Seq
			last = a
		} else if a.TurnID != "" {
			if last == nil || last.ID != a.TurnID {
				tb.Fatalf("after %s: %s %s (seq %d) has turnId %q, and the newest turn before it is %+v", ev.Type, a.Type, a.ID, a.Seq, a.TurnID, last)
			}
			owner[a.Seq] = newest[a.TurnID]
		}
	}
	for _, a := range arts {
		if a.Type == protocol.ArtifactToolCall && a.String("status") == string(protocol.ToolAwaitingApproval) && !pendingFor[a.ID] {
			tb.Fatalf("after %s: tool call %s awaits approval, and no permission for it is pending", ev.Type, a.ID)
		}
		if a.Type == protocol.ArtifactTurn || !underWay(a) {
			continue
		}
		if ended[owner[a.Seq]] {
			tb.Fatalf("after %s: turn %s ended, and its %s %s is %s", ev.Type, a.TurnID, a.Type, a.ID, a.String("status"))
		}
		if ev.Type == protocol.EventAgentExited {
			tb.Fatalf("after agent_exited: %s %s is %s", a.Type, a.ID, a.String("status"))
		}
	}
}

// Open tells whether anything waits for an end: a turn, or what is open
// outside any turn (a permission request asked between turns), which a
// takeover must close though no turn is open.
func TestOpenOutsideATurn(t *testing.T) {
	s := reducer.New()
	steps := []struct {
		ev         protocol.Event
		open, turn bool
	}{
		{protocol.Event{Type: protocol.EventTurnStarted, TurnID: "t1"}, true, true},
		{protocol.Event{Type: protocol.EventTurnCompleted, TurnID: "t1", StopReason: protocol.StopEndTurn}, false, false},
		{protocol.Event{Type: protocol.EventPermissionRequested, ID: "r1", Title: "Run it?"}, true, false},
		{protocol.Event{Type: protocol.EventTurnCompleted, StopReason: protocol.StopInterrupted}, false, false},
	}
	for i, st := range steps {
		s.Apply(st.ev)
		if s.Open() != st.open || s.TurnOpen() != st.turn {
			t.Errorf("after step %d (%s): Open %v, TurnOpen %v; want %v, %v", i, st.ev.Type, s.Open(), s.TurnOpen(), st.open, st.turn)
		}
	}
}
