package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
	"github.com/rein-ai/rein/server/client"
)

// renderCase feeds testdata/render/<name>.jsonl (stream events in the
// format of `rein watch --json`, plus {"event":"connected"} where a
// connection starts) through the client's model and the transcript.
func renderCase(t *testing.T, name string, color bool) string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "render", name+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	model := client.NewTranscript()
	tr := newTranscript(&out, color, "s1")
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l streamLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: %v", sc.Text(), err)
		}
		ev := client.ArtifactEvent{Name: l.Event, Rev: l.ID, Data: l.Data}
		switch l.Event {
		case protocol.SSEArtifactSnapshot, protocol.SSEArtifactCreated:
			var p protocol.ArtifactPayload
			if err := json.Unmarshal(l.Data, &p); err != nil {
				t.Fatal(err)
			}
			ev.Artifact = p.Artifact
		case protocol.SSEArtifactUpdated:
			ev.Update = &protocol.ArtifactUpdate{}
			if err := json.Unmarshal(l.Data, ev.Update); err != nil {
				t.Fatal(err)
			}
		case protocol.SSESnapshotComplete:
			var c protocol.SnapshotComplete
			if err := json.Unmarshal(l.Data, &c); err != nil {
				t.Fatal(err)
			}
			ev.Full = c.Full
		}
		a, err := model.Apply(ev)
		if err != nil {
			t.Fatal(err)
		}
		tr.Event(ev, a)
	}
	tr.Close()
	return out.String()
}

func TestRender(t *testing.T) {
	for _, name := range []string{"live", "replay", "replay_permission", "history_back"} {
		t.Run(name, func(t *testing.T) {
			golden(t, filepath.Join("render", name+".golden"), renderCase(t, name, false))
		})
	}
}

// A turn's usage that arrives after its end (Codex reports a turn's
// tokens after it completed; the reducer puts them on that turn) is
// printed when it comes: the closing line was printed without it, and a
// live watch never showed it, where a replay's closing line does.
func TestRenderLateUsage(t *testing.T) {
	out := renderCase(t, "late_usage", false)
	want := "── completed ──\n── turn t1 usage: 1200 in · 90 out ──\n"
	if !strings.Contains(out, want) {
		t.Errorf("late usage: no %q in\n%s", want, out)
	}
	// Usage before the end is on the closing line, once.
	if want := "── completed · 10 in · 2 out ──\n"; !strings.Contains(out, want) || strings.Contains(out, "turn t2 usage") {
		t.Errorf("usage before the end: want it on the closing line only, got\n%s", out)
	}
}

func TestRenderColor(t *testing.T) {
	out := renderCase(t, "live", true)
	if !strings.Contains(out, "\x1b[31m  ✗ failed (exit 1): exit status 1\x1b[0m\n") {
		t.Errorf("no red failure line in\n%q", out)
	}
	plain := strings.NewReplacer("\x1b[0m", "", "\x1b[1m", "", "\x1b[2m", "", "\x1b[31m", "", "\x1b[32m", "", "\x1b[33m", "", "\x1b[34m", "", "\x1b[36m", "", "\x1b[33;1m", "").Replace(out)
	if want := renderCase(t, "live", false); plain != want {
		t.Errorf("colour changes more than colour:\n%s\nvs\n%s", plain, want)
	}
}

func TestAge(t *testing.T) {
	now := time.UnixMilli(10_000_000_000)
	for _, tc := range []struct {
		ago  time.Duration
		want string
	}{{-time.Second, "0s"}, {59 * time.Second, "59s"}, {61 * time.Minute, "1h"}, {47 * time.Hour, "1d"}, {2 * time.Minute, "2m"}} {
		if got := age(now, now.Add(-tc.ago).UnixMilli()); got != tc.want {
			t.Errorf("age(%s) = %s, want %s", tc.ago, got, tc.want)
		}
	}
}

func TestPermute(t *testing.T) {
	app := newApp(&env{})
	for _, tc := range []struct{ in, want string }{
		{"rein watch s1 --until-idle", "rein watch --until-idle -- s1"},
		{"rein --server http://x -s http://y create s1 -p web --json", "rein --server http://x -s http://y create -p web --json -- s1"},
		{"rein prompt s1 -- -v text", "rein prompt -- s1 -v text"},
		{"rein watch s1 --idle-grace 2s", "rein watch --idle-grace 2s -- s1"},
		{"rein --help", "rein --help"},
		{"rein watch s1 --help", "rein watch --help"},
		{"rein create s1 --prompt --help", "rein create --prompt --help -- s1"},
		{"rein inbox approve 2 -p web", "rein inbox approve -p web -- 2"},
		{"rein inbox -p web deny perm-1 --help", "rein inbox -p web deny --help"},
		{"rein inbox --follow -p web", "rein inbox --follow -p web"},
		{"rein inbox perm-1 -f", "rein inbox -f -- perm-1"},
		{"rein nope a --x", "rein nope a --x"},
	} {
		if got := strings.Join(permute(app, strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("permute(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
