package loadgen

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
)

func TestTurnEvents(t *testing.T) {
	for _, tc := range []struct {
		name        string
		turn        Turn
		outputBytes int
	}{
		{"resume's turn", Turn{TextDeltas: 40, OutputDeltas: 10}, 10*len("fileN\n") + 0},
		{"soak's turn: 2 KB of output", Turn{TextDeltas: 20, OutputDeltas: 4, OutputLine: 512}, 2048},
		{"no deltas", Turn{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs := tc.turn.Events(7)
			if len(evs) != tc.turn.Len() {
				t.Fatalf("%d events, Len says %d", len(evs), tc.turn.Len())
			}
			decoded, err := protocol.DecodeEvents(Batch(evs))
			if err != nil {
				t.Fatalf("not valid ReinEvents: %v", err)
			}
			if len(decoded) != len(evs) {
				t.Fatalf("decoded %d of %d events", len(decoded), len(evs))
			}
			out := 0
			for _, e := range evs {
				var v struct{ Type, Delta string }
				if err := json.Unmarshal([]byte(e), &v); err != nil {
					t.Fatal(err)
				}
				if v.Type == "tool_output_delta" {
					out += len(v.Delta)
				}
			}
			if out != tc.outputBytes {
				t.Errorf("tool output %d bytes, want %d", out, tc.outputBytes)
			}
			first, last := evs[0], evs[len(evs)-1]
			if !strings.Contains(first, `"turn_started","turnId":"t7"`) || !strings.Contains(last, `"turn_completed","turnId":"t7"`) {
				t.Errorf("turn does not start and end as turn 7: %s ... %s", first, last)
			}
		})
	}
}

func TestMergeJSON(t *testing.T) {
	for _, tc := range []struct {
		name    string
		before  string // "" : no file
		fields  map[string]any
		want    map[string]any
		wantErr string
	}{
		{"no file yet", "", map[string]any{"soak": map[string]any{"a": 1}},
			map[string]any{"soak": map[string]any{"a": 1.0}}, ""},
		{"other keys kept", `{"figures":[1,2],"date":"d"}`, map[string]any{"soak": 3},
			map[string]any{"figures": []any{1.0, 2.0}, "date": "d", "soak": 3.0}, ""},
		{"own key replaced", `{"figures":[1],"soak":{"old":true}}`, map[string]any{"figures": []int{2}},
			map[string]any{"figures": []any{2.0}, "soak": map[string]any{"old": true}}, ""},
		{"not an object", `[1,2]`, map[string]any{"soak": 1}, nil, "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bench.json")
			if tc.before != "" {
				if err := os.WriteFile(path, []byte(tc.before), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := MergeJSON(path, tc.fields)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				b, _ := os.ReadFile(path)
				if string(b) != tc.before {
					t.Errorf("file changed on error: %s", b)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestJudge(t *testing.T) {
	r := func(v float64) *float64 { return &v }
	for _, tc := range []struct {
		name string
		f    Figure
		want bool
	}{
		{"ratio above a minimum", Figure{Value: 1, Ratio: r(0.6), Target: 0.5, Higher: true}, true},
		{"ratio below a minimum", Figure{Value: 100, Ratio: r(0.4), Target: 0.5, Higher: true}, false},
		{"value under a maximum", Figure{Value: 20, Target: 25}, true},
		{"value at a maximum", Figure{Value: 25, Target: 25}, true},
		{"value over a maximum", Figure{Value: 26, Target: 25}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.f.Judge()
			if tc.f.Met != tc.want {
				t.Errorf("met = %v, want %v", tc.f.Met, tc.want)
			}
		})
	}
}

func TestFilesSize(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "rein.db")
	if err := os.WriteFile(db, make([]byte, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db+"-wal", make([]byte, 23), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := FilesSize(db, db+"-wal", db+"-missing")
	if err != nil || n != 123 {
		t.Fatalf("FilesSize = %d, %v; want 123", n, err)
	}
}

// TestChildrenAndAlive: a child of this test process is found by its
// parent's pid and name while it runs, and is no longer alive once it
// has exited and been waited for.
func TestChildrenAndAlive(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep(1) to start: %v", err)
	}
	pid := cmd.Process.Pid
	got, err := Children(os.Getpid(), "sleep")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, pid) {
		t.Errorf("Children(self, sleep) = %v, want it to hold %d", got, pid)
	}
	if other, _ := Children(os.Getpid(), "no-such-command"); slices.Contains(other, pid) {
		t.Errorf("Children(self, no-such-command) holds %d", pid)
	}
	if !Alive(pid) {
		t.Errorf("Alive(%d) = false while it runs", pid)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if Alive(pid) {
		t.Errorf("Alive(%d) = true after it exited", pid)
	}
}

// TestCPUSeconds: this process's CPU time is read from /proc and grows
// with work done; a process that is gone reads 0.
func TestCPUSeconds(t *testing.T) {
	before := CPUSeconds(os.Getpid())
	if before <= 0 {
		t.Fatalf("CPUSeconds(self) = %v, want above 0", before)
	}
	// Spin until it grows by a few clock ticks (10 ms each); bounded by
	// wall time, long enough for a busy machine to give this some CPU.
	for deadline := time.Now().Add(10 * time.Second); CPUSeconds(os.Getpid()) < before+0.03; {
		if time.Now().After(deadline) {
			t.Fatalf("CPUSeconds(self) stayed at %.2f over 10 s of spinning", before)
		}
		for i := 0; i < 1_000_000; i++ {
			_ = i * i
		}
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("no true(1): %v", err)
	}
	if got := CPUSeconds(cmd.Process.Pid); got != 0 {
		t.Errorf("CPUSeconds of a process that is gone = %v, want 0", got)
	}
}
