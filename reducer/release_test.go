package reducer_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/reducer"
)

// longLog is a session of turns shaped like an agent's: a prompt, streamed
// text, a shell call with streamed output and a usage report after the
// turn. With reuse, every turn uses the same ids (an agent that restarts
// its numbering); otherwise each turn's ids are new.
func longLog(turns int, reuse bool) (log []protocol.Event, text int) {
	add := func(ev protocol.Event) {
		ev.ReceivedAt = 1_700_000_000_000 + int64(len(log))
		log = append(log, ev)
		text += len(ev.Delta) + len(ev.Text)
	}
	zero, tokens := 0, int64(7)
	for n := range turns {
		k := fmt.Sprint(n)
		if reuse {
			k = "1"
		}
		add(protocol.Event{Type: protocol.EventTurnStarted, TurnID: "t" + k, Source: protocol.SourceUser})
		add(protocol.Event{Type: protocol.EventUserMessage, ID: "u" + k, Text: "prompt " + k})
		for d := range 20 {
			add(protocol.Event{Type: protocol.EventTextDelta, ID: "m" + k, Delta: fmt.Sprintf("word%d ", d)})
		}
		add(protocol.Event{Type: protocol.EventToolCallStart, ID: "c" + k, Name: "shell", Input: json.RawMessage(`{"command":"ls > out & <x>"}`)})
		for d := range 4 {
			add(protocol.Event{Type: protocol.EventToolOutputDelta, ID: "c" + k, Delta: strings.Repeat(".", 500) + fmt.Sprint(d) + "\n"})
		}
		add(protocol.Event{Type: protocol.EventToolCallEnd, ID: "c" + k, Status: protocol.ToolCompleted, ExitCode: &zero})
		add(protocol.Event{Type: protocol.EventTextEnd, ID: "m" + k})
		add(protocol.Event{Type: protocol.EventTurnCompleted, TurnID: "t" + k, StopReason: protocol.StopEndTurn})
		add(protocol.Event{Type: protocol.EventUsageUpdated, OutputTokens: &tokens})
	}
	return log, text
}

// A state that releases closed bodies stays small however long the
// transcript grows (a few dozen bytes per artifact for its key and slot),
// while what it stores equals what a state keeping everything holds.
func TestReleasingStateStaysSmall(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reuse bool
		// perArtifact bounds the bytes the state grows by per artifact.
		perArtifact int64
	}{
		{"new ids every turn", false, 120},
		{"ids reused every turn", true, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const turns = 500
			log, text := longLog(turns, tc.reuse)
			checkReleased(t, log)
			small, _, _ := releasingFold(t, log[:len(log)*100/turns])
			s, _, _ := releasingFold(t, log)
			grown := s.Size() - small.Size()
			for seq := int64(0); seq <= int64(s.Len())+1; seq++ {
				if body, _, err := s.ArtifactJSON(seq); (body != nil) != s.Held(seq) || err != nil {
					t.Fatalf("ArtifactJSON(%d) = %.40s, %v; held %v", seq, body, err, s.Held(seq))
				}
			}
			full := reducer.Fold(log)
			t.Logf("%d artifacts, %d bytes of text: releasing state %d bytes (%d after 100 turns), full state %d", s.Len(), text, s.Size(), small.Size(), full.Size())
			if limit := int64(s.Len()-small.Len()) * tc.perArtifact; grown > limit {
				t.Fatalf("releasing state grew by %d bytes over %d artifacts; want at most %d", grown, s.Len()-small.Len(), limit)
			}
			if full.Size() < int64(text) {
				t.Fatalf("a state holding everything estimates %d bytes for %d bytes of text", full.Size(), text)
			}
		})
	}
}

// An open turn's streamed text is held, and counted.
func TestSizeCountsHeldText(t *testing.T) {
	s := reducer.New()
	s.Apply(protocol.Event{Type: protocol.EventTurnStarted, TurnID: "t1"})
	before := s.Size()
	for range 100 {
		s.Apply(protocol.Event{Type: protocol.EventTextDelta, ID: "m", Delta: strings.Repeat("x", 1000)})
	}
	s.Release()
	if !s.Held(2) {
		t.Fatal("the open block was released")
	}
	if grown := s.Size() - before; grown < 100_000 {
		t.Fatalf("Size grew by %d bytes for 100,000 bytes of held text", grown)
	}
}

// ArtifactJSON encodes a running tool's held output into its body with no
// other copy of it: the server writes such a body whole as the output
// grows, and a copy of the text (Artifact's string of it, an encoder's
// growing buffer) made each write hold a big output several times.
func TestArtifactJSONCopiesTheTextOnce(t *testing.T) {
	s := reducer.New()
	s.Apply(protocol.Event{Type: protocol.EventTurnStarted, TurnID: "t1"})
	s.Apply(protocol.Event{Type: protocol.EventToolCallStart, ID: "c1", Name: "shell", Kind: "execute"})
	line := strings.Repeat("x", 999) + "\n"
	for range 16 << 10 { // 16 MB of output
		s.Apply(protocol.Event{Type: protocol.EventToolOutputDelta, ID: "c1", Delta: line})
	}
	seq := s.Newest(protocol.ArtifactToolCall, "c1")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	body, _, err := s.ArtifactJSON(seq)
	runtime.ReadMemStats(&after)
	if err != nil || body == nil {
		t.Fatalf("ArtifactJSON(%d) = %.40s, %v", seq, body, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(len(body))+64<<10 {
		t.Errorf("encoding a body of %d MiB allocated %d MiB; want the body alone", len(body)>>20, alloc>>20)
	}
	var a protocol.Artifact
	if err := json.Unmarshal(body, &a); err != nil || len(a.String("output")) != 16<<10*len(line) {
		t.Fatalf("body decodes to %d bytes of output, %v", len(a.String("output")), err)
	}
}

// Apply refuses an event whose artifact was released and not restored,
// rather than make changes a full state would not.
func TestApplyRefusesWithoutNeededBody(t *testing.T) {
	s := reducer.New()
	s.Apply(protocol.Event{Type: protocol.EventToolCallStart, ID: "c1", Name: "shell"})
	s.Apply(protocol.Event{Type: protocol.EventToolCallEnd, ID: "c1", Status: protocol.ToolCompleted})
	s.Release()
	late := protocol.Event{Type: protocol.EventToolCallEnd, ID: "c1", Status: protocol.ToolFailed}
	if need := s.Needs(late); len(need) != 1 || need[0] != 1 {
		t.Fatalf("Needs = %v; want [1]", need)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Apply changed a released artifact")
		}
	}()
	s.Apply(late)
}

// Restore refuses what is not an artifact of the state.
func TestRestoreRejectsBadBodies(t *testing.T) {
	s := reducer.New()
	s.Apply(protocol.Event{Type: protocol.EventUserMessage, Text: "hi"})
	for _, body := range []string{`{`, `{"seq":2,"type":"user_message"}`, `{"seq":0}`, `{"seq":"x"}`} {
		if err := s.Restore([]byte(body)); err == nil {
			t.Errorf("Restore(%s) = nil; want an error", body)
		}
	}
}

// ArtifactHead is Artifact without the streamed text, for a running tool,
// a finished text block and an artifact with no streamed field alike.
func TestArtifactHeadLeavesOutStreamedText(t *testing.T) {
	s := reducer.New()
	s.Apply(protocol.Event{Type: protocol.EventTurnStarted, TurnID: "t1"})
	s.Apply(protocol.Event{Type: protocol.EventUserMessage, ID: "u1", Text: "fix it"})
	s.Apply(protocol.Event{Type: protocol.EventToolCallStart, ID: "c1", Name: "shell", Kind: "execute", Title: "make"})
	s.Apply(protocol.Event{Type: protocol.EventToolOutputDelta, ID: "c1", Delta: "building\n"})
	s.Apply(protocol.Event{Type: protocol.EventTextDelta, ID: "m1", Delta: "done"})
	s.Apply(protocol.Event{Type: protocol.EventTextEnd, ID: "m1"})
	for seq := int64(1); seq <= int64(s.Len())+1; seq++ {
		full, head := s.Artifact(seq), s.ArtifactHead(seq)
		if (full == nil) != (head == nil) {
			t.Fatalf("seq %d: Artifact %v, ArtifactHead %v", seq, full, head)
		}
		if full == nil {
			continue
		}
		for f, v := range full.Fields {
			_, kept := head.Fields[f]
			if streamed := protocol.Appendable(full.Type, f); kept == streamed {
				t.Errorf("seq %d (%s): field %q (%v) kept %v in the head", seq, full.Type, f, v, kept)
			}
		}
		full.Fields, head.Fields = nil, nil
		if !reflect.DeepEqual(full, head) {
			t.Errorf("seq %d: head %+v, artifact %+v", seq, head, full)
		}
	}
	if head := s.ArtifactHead(s.Newest(protocol.ArtifactToolCall, "c1")); head.String("name") != "shell" || head.String("title") != "make" || head.String("status") == "" {
		t.Errorf("tool head %+v", head)
	}
	// ArtifactHeads is every seq's head, released ones nil.
	s.Release()
	heads := s.ArtifactHeads()
	if len(heads) != s.Len() {
		t.Fatalf("ArtifactHeads has %d entries; want %d", len(heads), s.Len())
	}
	for i, h := range heads {
		if want := s.ArtifactHead(int64(i) + 1); !reflect.DeepEqual(h, want) {
			t.Errorf("ArtifactHeads()[%d] = %+v; want %+v", i, h, want)
		}
	}
}

// ReleaseThrough releases the closed artifacts at or below a revision and
// keeps those changed after it, closed or not; Release releases the rest.
func TestReleaseThroughKeepsLaterChanges(t *testing.T) {
	s := reducer.New()
	s.Apply(protocol.Event{Type: protocol.EventTurnStarted, TurnID: "t1"})
	s.Apply(protocol.Event{Type: protocol.EventToolCallStart, ID: "c1", Name: "shell"})
	s.Apply(protocol.Event{Type: protocol.EventToolCallEnd, ID: "c1", Status: protocol.ToolCompleted})
	through := s.Rev()
	s.Apply(protocol.Event{Type: protocol.EventToolCallStart, ID: "c2", Name: "shell"})
	s.Apply(protocol.Event{Type: protocol.EventToolCallEnd, ID: "c2", Status: protocol.ToolCompleted})
	s.Apply(protocol.Event{Type: protocol.EventToolCallStart, ID: "c3", Name: "shell"})
	c1, c2, c3 := s.Newest(protocol.ArtifactToolCall, "c1"), s.Newest(protocol.ArtifactToolCall, "c2"), s.Newest(protocol.ArtifactToolCall, "c3")
	s.ReleaseThrough(through)
	if s.Held(c1) || !s.Held(c2) || !s.Held(c3) {
		t.Fatalf("after ReleaseThrough(%d): held c1 %v, c2 %v, c3 %v; want c2 and c3 (changed after it)", through, s.Held(c1), s.Held(c2), s.Held(c3))
	}
	s.Release()
	if s.Held(c2) || !s.Held(c3) {
		t.Fatalf("after Release: held c2 %v, c3 %v; want the running c3 alone", s.Held(c2), s.Held(c3))
	}
}

// ArtifactJSONTrimmed is the artifact as it is, but for the streamed
// text it leaves out: a body that the text appended since, merged in by
// the store, makes whole again.
func TestArtifactJSONTrimmed(t *testing.T) {
	s := reducer.New()
	s.Apply(protocol.Event{Type: protocol.EventTurnStarted, TurnID: "t1"})
	s.Apply(protocol.Event{Type: protocol.EventToolCallStart, ID: "c1", Name: "shell", Kind: "execute", Input: json.RawMessage(`{"cmd":"ls"}`)})
	for _, d := range []string{"a\n", "é<\n", "zz"} {
		s.Apply(protocol.Event{Type: protocol.EventToolOutputDelta, ID: "c1", Delta: d})
	}
	s.Apply(protocol.Event{Type: protocol.EventToolCallEnd, ID: "c1", Status: protocol.ToolCompleted})
	seq := s.Newest(protocol.ArtifactToolCall, "c1")
	body, rev, err := s.ArtifactJSONTrimmed(seq, map[string]int{"output": len("é<\nzz")})
	if err != nil {
		t.Fatal(err)
	}
	want := s.Artifact(seq)
	want.Fields["output"] = "a\n"
	wantBody, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != string(wantBody) || rev != want.Rev {
		t.Fatalf("trimmed body\n%s rev %d, want\n%s rev %d", body, rev, wantBody, want.Rev)
	}
	if whole, _, err := s.ArtifactJSONTrimmed(seq, nil); err != nil || !strings.Contains(string(whole), `"output":"a\né\u003c\nzz"`) {
		t.Fatalf("untrimmed body %s, %v", whole, err)
	}
	for _, trim := range []map[string]int{{"output": 100}, {"output": -1}, {"text": 1}} {
		if body, _, err := s.ArtifactJSONTrimmed(seq, trim); err == nil {
			t.Errorf("trim %v: %s, want an error", trim, body)
		}
	}
	if body, _, err := s.ArtifactJSONTrimmed(99, nil); body != nil || err != nil {
		t.Errorf("no artifact 99: %s, %v", body, err)
	}
}

// A growing output is held once: in chunks, not in one slice that Go
// grows by a quarter at a time, copying it each time and, at the end,
// holding the last two copies at once (1.25 + 1 times the text).
func TestGrowingOutputAllocatesItsSize(t *testing.T) {
	s := reducer.New()
	s.Apply(protocol.Event{Type: protocol.EventToolCallStart, ID: "c1", Name: "shell"})
	delta := strings.Repeat(strings.Repeat("y", 999)+"\n", 64) // 64,000 bytes
	const n = 512                                              // 32 MB
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		s.Apply(protocol.Event{Type: protocol.EventToolOutputDelta, ID: "c1", Delta: delta})
	}
	runtime.ReadMemStats(&after)
	if alloc, size := after.TotalAlloc-before.TotalAlloc, uint64(n*len(delta)); alloc > size+size/4 {
		t.Errorf("appending %d MB of output allocated %d MB; want about its size", size>>20, alloc>>20)
	}
}

// An output held in many chunks encodes as json.Marshal encodes it whole,
// trimmed or not, with runes that escape and a rune cut across deltas.
func TestChunkedOutputEncodesAsOneString(t *testing.T) {
	s := reducer.New()
	s.Apply(protocol.Event{Type: protocol.EventToolCallStart, ID: "c1", Name: "shell"})
	line := strings.Repeat("é€😀<&>\u2028\x01\"\\\n", 3000)
	var deltas []string
	for i := range 60 {
		d := line
		switch i % 20 {
		case 10:
			d = line + "\xe2\x82"
		case 11:
			d = "\xac" + line
		}
		deltas = append(deltas, d)
		s.Apply(protocol.Event{Type: protocol.EventToolOutputDelta, ID: "c1", Delta: d})
	}
	seq := s.Newest(protocol.ArtifactToolCall, "c1")
	whole := strings.Join(deltas, "")
	for _, cut := range []int{0, len(deltas[59]), len(deltas[59]) + len(deltas[58]), len(whole)} {
		body, _, err := s.ArtifactJSONTrimmed(seq, map[string]int{"output": cut})
		if err != nil {
			t.Fatal(err)
		}
		a := s.Artifact(seq)
		a.Fields["output"] = whole[:len(whole)-cut]
		want, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, want) {
			t.Fatalf("cut %d: a body of %d bytes differs from json.Marshal's %d", cut, len(body), len(want))
		}
	}
}
