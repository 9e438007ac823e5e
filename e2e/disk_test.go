package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rein-ai/rein/protocol"
)

// smallDisk mounts a tmpfs of size bytes for the test and returns its
// directory. It needs root on Linux: elsewhere the test is skipped and
// says why, but on CI (CI set) it fails, since CI must run it.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		msg := "cannot mount a tmpfs to fill (needs root on Linux): " + err.Error()
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip("SKIP " + msg)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// takeAllSpace allocates every free block of dir's filesystem to one file
// and returns the function that gives them back.
func takeAllSpace(t *testing.T, dir string) (giveBack func()) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "ballast"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(st.Bavail)*st.Bsize); err != nil {
		t.Fatalf("fill %s: %v", dir, err)
	}
	return func() {
		if err := os.Remove(f.Name()); err != nil {
			t.Error(err)
		}
	}
}

// TestAgentdStateDiskFull: agentd's state dir is on a disk that fills up
// before a turn whose output is larger than what agentd can free. The
// real server takes the notice agentd posts without its outbox (an
// agentSeq with no event logged), the session stays live on heartbeats
// posted the same way, and once the space is back the transcript holds
// the whole output, between the notice that the disk is full and the
// one that it has room again, with the model matching the server's.
func TestAgentdStateDiskFull(t *testing.T) {
	e := newEnv(t)
	state := smallDisk(t, "1m")
	id := "diskfull"
	e.create(id, "")
	f := Follow(e.ctx, e.c, id)
	defer f.Close()
	e.agentd(e.srv.URL, id, nil, []string{"--state-dir", state, "--heartbeat-interval", "100ms"})
	e.waitIdle(id)
	giveBack := takeAllSpace(t, state)
	// One line of 100,000 bytes: streamed in chunks of 32 KiB, more than
	// removing what the server acknowledged can free.
	e.prompt(id, `run: head -c 100000 /dev/zero | tr -c y y`)
	full := "notice warning: agentd: no space left on the disk of its state dir (" + filepath.Join(state, id) + ")"
	if err := f.WaitFor(e.ctx, "the notice that the disk is full", func(arts []*protocol.Artifact) bool {
		return strings.Contains(strings.Join(render(arts), "\n"), full)
	}); err != nil {
		t.Fatal(err)
	}
	// Held full for a while: the heartbeats, posted without the outbox,
	// keep the session live (the server's timeout is not reached here,
	// but every one of them is a POST the server must take).
	time.Sleep(time.Second)
	if s, err := e.c.Session(e.ctx, id); err != nil || s.Status != protocol.StatusLive {
		t.Fatalf("session while the disk is full: %+v, %v; want live", s, err)
	}
	giveBack()
	waitTurns(t, e.ctx, f, 1)
	if err := f.WaitFor(e.ctx, "the notice that the disk has room again", func(arts []*protocol.Artifact) bool {
		return strings.Contains(strings.Join(render(arts), "\n"), "notice info: agentd: its state dir's disk has room again")
	}); err != nil {
		t.Fatal(err)
	}
	arts := e.assertModelMatchesServer(f, id)
	var got []string
	for i, l := range render(arts) {
		switch a := arts[i]; a.Type {
		case protocol.ArtifactNotice:
			l = l[:strings.Index(l, "agentd:")+len("agentd:")] // the rest names times
		case protocol.ArtifactToolCall:
			out := a.String("output")
			l = fmt.Sprintf("tool %s %s output: %d bytes, all y: %v", a.String("name"), a.String("status"), len(out), strings.Trim(out, "y") == "")
		}
		got = append(got, l)
	}
	// Artifacts are in the order they were created: the tool call (its
	// start fitted in the room agentd freed) before the notices. The
	// notice that there is room again is appended when the uploader sees
	// the wait over, which can be before or after the agent's last text:
	// it must come after the warning, anywhere.
	warning := slices.Index(got, "notice warning: agentd:")
	info := slices.Index(got, "notice info: agentd:")
	if warning < 0 || info < warning {
		t.Fatalf("transcript:\n%s\nwant the warning, then the notice that there is room again", strings.Join(got, "\n"))
	}
	got = slices.Delete(got, info, info+1)
	want := []string{
		"turn completed end_turn",
		"user: run: head -c 100000 /dev/zero | tr -c y y",
		"text done: Running `head -c 100000 /dev/zero | tr -c y y`",
		"tool shell completed output: 100000 bytes, all y: true",
		"notice warning: agentd:",
		"text done: Exit code 0.",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("transcript:\n--- got\n%s\n--- want\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
