package httpapi

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

// TestWriteDeadline holds a stream's write deadline to its promise: every
// write has at least timeout-slack before the connection cuts it, and the
// connection's timer is reset only once per slack, not on every write.
func TestWriteDeadline(t *testing.T) {
	const timeout = 16 * time.Second // slack: 1s
	var sets []time.Time
	var fail error
	d := &writeDeadline{timeout: timeout, set: func(at time.Time) error {
		if fail != nil {
			return fail
		}
		sets = append(sets, at)
		return nil
	}}
	t0 := time.Unix(1_000_000, 0)
	// A write every 10ms for 3.5s: the deadline moves at 0, 1s, 2s and 3s.
	for ms := 0; ms <= 3500; ms += 10 {
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		if err := d.extend(now); err != nil {
			t.Fatal(err)
		}
		if left := sets[len(sets)-1].Sub(now); left < timeout-timeout/deadlineSlackDiv {
			t.Fatalf("write at +%dms has %v before its deadline; want at least %v", ms, left, timeout-timeout/deadlineSlackDiv)
		}
	}
	want := []time.Time{t0.Add(timeout), t0.Add(time.Second + timeout), t0.Add(2*time.Second + timeout), t0.Add(3*time.Second + timeout)}
	if len(sets) != len(want) {
		t.Fatalf("deadline set %d times (%v); want %d", len(sets), sets, len(want))
	}
	for i := range want {
		if !sets[i].Equal(want[i]) {
			t.Fatalf("deadline %d = %v; want %v", i, sets[i], want[i])
		}
	}

	// A failed set is returned and not remembered: the next write tries again.
	fail = errors.New("connection closed")
	late := t0.Add(5 * time.Second)
	if err := d.extend(late); !errors.Is(err, fail) {
		t.Fatalf("extend with a failing set = %v; want %v", err, fail)
	}
	fail = nil
	if err := d.extend(late.Add(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if got := sets[len(sets)-1]; !got.Equal(late.Add(time.Millisecond + timeout)) {
		t.Fatalf("after a failed set the deadline is %v; want it set again to %v", got, late.Add(time.Millisecond+timeout))
	}

	// A connection without deadlines (a test recorder) is not an error.
	nd := &writeDeadline{timeout: timeout, set: func(time.Time) error { return http.ErrNotSupported }}
	if err := nd.extend(t0); err != nil {
		t.Fatalf("extend without deadline support = %v; want nil", err)
	}
}
