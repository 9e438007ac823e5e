package uploader

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// decodes posts ev as the server reads it: nil when it would be stored.
func decodes(ev protocol.Event) error {
	b, err := ev.MarshalJSON()
	if err != nil {
		return err
	}
	_, err = protocol.DecodeEvents(append(append([]byte{'['}, b...), ']'))
	return err
}

func TestFitLeavesOrdinaryEventsAlone(t *testing.T) {
	code := 0
	for _, ev := range []protocol.Event{
		{Type: protocol.EventTextDelta, ID: "m1", Delta: "hello <b>world</b> & more\n"},
		{Type: protocol.EventToolCallStart, ID: "t1", Name: "Bash", Input: json.RawMessage(`{"command":"ls -la"}`)},
		{Type: protocol.EventToolCallEnd, ID: "t1", Status: protocol.ToolCompleted, Output: strings.Repeat("line of output\n", 4000), ExitCode: &code},
		{Type: protocol.EventPlanUpdated, Entries: []protocol.PlanEntry{{Content: "a", Status: protocol.PlanPending}}},
		{Type: protocol.EventToolCallEnd, ID: "t2", Status: protocol.ToolCompleted, Output: strings.Repeat("x", protocol.MaxTextLen)},
	} {
		got, cuts := fit(ev, false)
		if cuts != nil || !reflect.DeepEqual(got, ev) {
			t.Errorf("%s: fit changed it (cuts %v)", ev.Type, cuts)
		}
	}
}

// Each case is refused by the server's decoder as it stands, so agentd
// would drop it; fitted, it is stored, with what was cut marked.
func TestFitEventsTheServerWouldRefuse(t *testing.T) {
	html := strings.Repeat(`<a href="x?a=1&b=2">&lt;</a>`, protocol.MaxTextLen/28)
	bigFile := strings.Repeat("{\"k\": \"<v>\"}\n", 60000) // 780 KB, many escapes
	input, _ := json.Marshal(map[string]string{"file_path": "/work/data.json", "content": bigFile})
	entries := make([]protocol.PlanEntry, 600)
	for i := range entries {
		entries[i] = protocol.PlanEntry{Content: fmt.Sprintf("step %d", i), Status: protocol.PlanPending}
	}
	var items []string
	for i := range 40000 {
		items = append(items, fmt.Sprintf(`{"type":"text","n":%d}`, i))
	}
	content := json.RawMessage("[" + strings.Join(items, ",") + "]")
	opts := []protocol.PermissionOption{{ID: "allow", Name: "Allow", Kind: protocol.AllowOnce}, {ID: "deny", Name: "Deny", Kind: protocol.RejectOnce}}

	cases := []struct {
		name string
		ev   protocol.Event
		// check looks at the fitted event beyond "it decodes".
		check func(t *testing.T, ev protocol.Event)
	}{
		{"binary output, control bytes", protocol.Event{Type: protocol.EventToolCallEnd, ID: "t1", Status: protocol.ToolCompleted, Output: strings.Repeat("\x00\x01ELF", protocol.MaxTextLen/6)},
			func(t *testing.T, ev protocol.Event) {
				wantCut(t, ev.Output, "\x00\x01ELF\x00\x01ELF")
				if ev.Status != protocol.ToolCompleted || ev.ID != "t1" {
					t.Errorf("status %q id %q changed", ev.Status, ev.ID)
				}
			}},
		{"output of invalid UTF-8 within MaxTextLen raw bytes", protocol.Event{Type: protocol.EventToolCallEnd, ID: "t1", Status: protocol.ToolFailed, Output: "ok " + strings.Repeat("\xff", protocol.MaxTextLen-3)},
			func(t *testing.T, ev protocol.Event) { wantCut(t, ev.Output, "ok \uFFFD") }},
		{"delta of HTML", protocol.Event{Type: protocol.EventToolOutputDelta, ID: "t1", Delta: html},
			func(t *testing.T, ev protocol.Event) { wantCut(t, ev.Delta, `<a href="x?a=1&b=2">`) }},
		{"Write tool's input", protocol.Event{Type: protocol.EventToolCallStart, ID: "t1", Name: "Write", Title: "Write data.json", Input: input},
			func(t *testing.T, ev protocol.Event) {
				var in map[string]string
				if err := json.Unmarshal(ev.Input, &in); err != nil {
					t.Fatalf("input %.100s: %v", ev.Input, err)
				}
				if in["file_path"] != "/work/data.json" || ev.Name != "Write" || ev.Title != "Write data.json" {
					t.Errorf("file_path %q name %q title %q changed", in["file_path"], ev.Name, ev.Title)
				}
				wantCut(t, in["content"], bigFile[:100])
			}},
		{"permission request for that input", protocol.Event{Type: protocol.EventPermissionRequested, ID: "p1", ToolCallID: "t1", Title: "Write data.json", Input: input, Options: opts},
			func(t *testing.T, ev protocol.Event) {
				if !reflect.DeepEqual(ev.Options, opts) || ev.ToolCallID != "t1" {
					t.Errorf("options %v tool %q changed", ev.Options, ev.ToolCallID)
				}
				if !strings.Contains(string(ev.Input), "[cut by agentd: ") {
					t.Errorf("input not marked cut: %.200s", ev.Input)
				}
			}},
		{"plan of 600 entries", protocol.Event{Type: protocol.EventPlanUpdated, Entries: entries},
			func(t *testing.T, ev protocol.Event) {
				if len(ev.Entries) != protocol.MaxPlanEntries || ev.Entries[498].Content != "step 498" || ev.Entries[499].Content != "[cut by agentd: 101 more entries]" {
					t.Errorf("%d entries, last two %+v", len(ev.Entries), ev.Entries[len(ev.Entries)-2:])
				}
				if len(entries) != 600 || entries[499].Content != "step 499" {
					t.Error("the caller's entries changed")
				}
			}},
		{"content with no long string", protocol.Event{Type: protocol.EventToolCallUpdate, ID: "t1", Content: content},
			func(t *testing.T, ev protocol.Event) {
				var s string
				if err := json.Unmarshal(ev.Content, &s); err != nil || s != fmt.Sprintf("[cut by agentd: %d bytes of JSON]", len(content)) {
					t.Errorf("content = %.200s (%v)", ev.Content, err)
				}
			}},
		{"two large fields", protocol.Event{Type: protocol.EventToolCallEnd, ID: "t1", Status: protocol.ToolCompleted, Output: strings.Repeat("\x1b[31mred\x1b[0m", protocol.MaxTextLen/12), Result: input},
			func(t *testing.T, ev protocol.Event) {
				if !strings.HasPrefix(ev.Output, "\x1b[31mred") {
					t.Errorf("output %.40q", ev.Output)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := decodes(c.ev); err == nil {
				t.Fatal("the server would store this event as it is: not a case for fit")
			}
			got, cuts := fit(c.ev, false)
			if len(cuts) == 0 {
				t.Fatal("fit reported no cut")
			}
			if err := decodes(got); err != nil {
				t.Fatalf("fitted event refused (cuts %v): %v", cuts, err)
			}
			b, _ := got.MarshalJSON()
			if len(b) > fitLimit {
				t.Errorf("fitted event is %d bytes; limit %d", len(b), fitLimit)
			}
			// It keeps most of what fits: a cut is by the excess, not to
			// a fraction.
			if len(b) < protocol.MaxEventBytes/3 && c.ev.Type != protocol.EventPlanUpdated && c.ev.Type != protocol.EventToolCallUpdate {
				t.Errorf("fitted event is only %d bytes", len(b))
			}
			c.check(t, got)
		})
	}
}

// upload enqueues evs on an uploader to a fake server, in a synctest
// bubble, and returns what the server stored and the uploader's counts.
func upload(t *testing.T, evs []protocol.Event) ([]protocol.Event, Stats) {
	t.Helper()
	f := &fakeServer{}
	u := newTest(f, Options{BatchWait: time.Second})
	stop := run(u)
	for _, ev := range evs {
		if err := u.Enqueue(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	_, stored, _ := f.snapshot()
	return stored, u.Stats()
}

// wantCut checks that s keeps prefix and ends saying it was cut.
func wantCut(t *testing.T, s, prefix string) {
	t.Helper()
	if !strings.HasPrefix(s, prefix) {
		t.Errorf("text starts %.60q; want %.60q", s, prefix)
	}
	i := strings.LastIndex(s, "\n[cut by agentd: ")
	if i < 0 || !strings.HasSuffix(s, " bytes in all]") {
		t.Errorf("text ends %.80q; want the cut marker", s[max(0, len(s)-80):])
	}
}

// The uploader fits what it is given: events the server would refuse
// arrive cut rather than being dropped.
func TestUploaderStoresOversizedEventsCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		input, _ := json.Marshal(map[string]string{"file_path": "/w/big.bin", "content": strings.Repeat("\x00", 300<<10)})
		evs := []protocol.Event{
			{Type: protocol.EventToolCallStart, ID: "t1", Name: "Write", Input: input},
			{Type: protocol.EventToolCallEnd, ID: "t1", Status: protocol.ToolCompleted, Output: strings.Repeat("\x00", protocol.MaxTextLen)},
			{Type: protocol.EventTurnCompleted, TurnID: "turn-1", StopReason: protocol.StopEndTurn},
		}
		stored, st := upload(t, evs)
		if len(stored) != 3 || st.Dropped != 0 || st.Cut != 2 {
			t.Fatalf("stored %d events, dropped %d, cut %d; want 3, 0, 2", len(stored), st.Dropped, st.Cut)
		}
		if stored[1].Type != protocol.EventToolCallEnd || stored[1].Status != protocol.ToolCompleted {
			t.Errorf("second event %s %s", stored[1].Type, stored[1].Status)
		}
		wantCut(t, stored[1].Output, "\x00\x00")
	})
}

// rawSize adds up every field textsOf and rawsOf list (it must not miss
// one, or a large one would skip fitting).
func TestRawSizeCoversEveryField(t *testing.T) {
	ev := protocol.Event{Agent: &protocol.AgentInfo{}, Entries: []protocol.PlanEntry{{}}, Options: []protocol.PermissionOption{{}}}
	for _, tx := range textsOf(&ev) {
		*tx.p = "12345"
	}
	for _, r := range rawsOf(&ev) {
		*r.p = json.RawMessage(`"123"`)
	}
	want := 5*len(textsOf(&ev)) + 5*len(rawsOf(&ev))
	if got := rawSize(&ev); got < want {
		t.Errorf("rawSize = %d; the fields listed hold %d", got, want)
	}
}

func BenchmarkFitSmallEvent(b *testing.B) {
	ev := protocol.Event{Type: protocol.EventTextDelta, ID: "turn-1:msg_01-0", Delta: "a few words ", Ts: 1}
	b.ReportAllocs()
	for b.Loop() {
		fit(ev, false)
	}
}

// A final text that deltas streamed is left out rather than cut: the
// reducer then keeps what streamed, which is whole. One that nothing
// streamed is cut, keeping its start.
func TestUploaderKeepsWhatStreamed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		chunk := strings.Repeat("0123456789abcdef\n", 6000) // 102 KB
		whole := chunk + chunk + chunk
		evs := []protocol.Event{
			{Type: protocol.EventToolCallStart, ID: "t1", Name: "shell"},
			{Type: protocol.EventToolOutputDelta, ID: "t1", Delta: chunk},
			{Type: protocol.EventToolOutputDelta, ID: "t1", Delta: chunk},
			{Type: protocol.EventToolOutputDelta, ID: "t1", Delta: chunk},
			{Type: protocol.EventToolCallEnd, ID: "t1", Status: protocol.ToolCompleted, Output: whole},
			{Type: protocol.EventToolCallStart, ID: "t2", Name: "Read"},
			{Type: protocol.EventToolCallEnd, ID: "t2", Status: protocol.ToolCompleted, Output: whole},
			{Type: protocol.EventTextDelta, ID: "m1", Delta: whole[:200000]},
			{Type: protocol.EventTextDelta, ID: "m1", Delta: whole[200000:]},
			{Type: protocol.EventTextEnd, ID: "m1", Text: whole},
		}
		stored, st := upload(t, evs)
		if len(stored) != len(evs) || st.Dropped != 0 || st.Cut != 3 {
			t.Fatalf("stored %d of %d, dropped %d, cut %d; want all, none, 3", len(stored), len(evs), st.Dropped, st.Cut)
		}
		if end := stored[4]; end.Output != "" || end.Status != protocol.ToolCompleted {
			t.Errorf("t1's end: status %s, %d bytes of output; want completed and none (the deltas hold it)", end.Status, len(end.Output))
		}
		var streamed string
		for _, ev := range stored[1:4] {
			streamed += ev.Delta
		}
		if streamed != whole {
			t.Errorf("t1's deltas hold %d bytes; want the %d streamed", len(streamed), len(whole))
		}
		wantCut(t, stored[6].Output, chunk[:1000])
		if end := stored[9]; end.Text != "" {
			t.Errorf("m1's end has %d bytes of text; want none (the deltas hold it)", len(end.Text))
		}
	})
}

func BenchmarkStreamsDelta(b *testing.B) {
	var s streams
	ev := protocol.Event{Type: protocol.EventTextDelta, ID: "turn-1:msg_01-0", Delta: "a few words "}
	b.ReportAllocs()
	for b.Loop() {
		s.ended(ev)
	}
}
