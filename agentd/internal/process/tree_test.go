package process

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// signals records what stopThenKillWith sends, failing the signals listed
// in fail with the error given: as root here no real signal fails, so the
// failures are made up, the rest of the function is real.
type signals struct {
	sent []string
	fail map[string]error // "STOP 12" -> error
}

func (s *signals) send(p int, sig syscall.Signal) error {
	name := "KILL"
	if sig == syscall.SIGSTOP {
		name = "STOP"
	}
	key := fmt.Sprintf("%s %d", name, p)
	s.sent = append(s.sent, key)
	return s.fail[key]
}

// state is where each pid ended: "stopped" (SIGSTOP sent, no SIGKILL
// after it) is what must never be left.
func (s *signals) state() map[int]string {
	out := map[int]string{}
	for _, k := range s.sent {
		var name string
		var p int
		fmt.Sscanf(k, "%s %d", &name, &p)
		if s.fail[k] != nil && !errors.Is(s.fail[k], syscall.ESRCH) {
			continue // the signal did not arrive
		}
		switch name {
		case "STOP":
			if out[p] == "" {
				out[p] = "stopped"
			}
		case "KILL":
			out[p] = "killed"
		}
	}
	return out
}

// scans returns a find that answers each call with the next of answers
// (the last one again once they run out), or with err at call failAt
// (counted from 1; 0 for never).
func scans(failAt int, err error, answers ...[]int) func() ([]int, error) {
	n := 0
	return func() ([]int, error) {
		n++
		if n == failAt {
			return nil, err
		}
		return answers[min(n, len(answers))-1], nil
	}
}

func TestStopThenKillKillsWhatItStoppedWhateverFails(t *testing.T) {
	eperm := syscall.EPERM
	cases := []struct {
		name       string
		find       func() ([]int, error)
		keep       map[int]bool
		fail       map[string]error
		wantKilled []int
		wantState  map[int]string
		wantErr    []string // substrings of the error; none for nil
	}{{
		name:       "nothing fails",
		find:       scans(0, nil, []int{10, 11}, []int{10, 11, 12}),
		keep:       map[int]bool{11: true},
		wantKilled: []int{10, 12},
		wantState:  map[int]string{10: "killed", 12: "killed"},
	}, {
		name:       "gone before its signal",
		find:       scans(0, nil, []int{10, 11}),
		fail:       map[string]error{"STOP 11": syscall.ESRCH, "KILL 11": syscall.ESRCH},
		wantKilled: []int{10, 11},
		wantState:  map[int]string{10: "killed", 11: "killed"},
	}, {
		// One process that cannot be stopped: the others found before
		// and after it are still stopped and killed, and it is not
		// counted as killed.
		name:       "a stop fails",
		find:       scans(0, nil, []int{10, 11, 12}, []int{10, 11, 12, 13}),
		fail:       map[string]error{"STOP 11": eperm},
		wantKilled: []int{10, 12, 13},
		wantState:  map[int]string{10: "killed", 12: "killed", 13: "killed"},
		wantErr:    []string{"stop process 11"},
	}, {
		// The second scan fails: what the first stopped is killed, not
		// left stopped.
		name:       "a later scan fails",
		find:       scans(2, errors.New("read /proc: input/output error"), []int{10, 11}),
		wantKilled: []int{10, 11},
		wantState:  map[int]string{10: "killed", 11: "killed"},
		wantErr:    []string{"read /proc"},
	}, {
		name:       "a kill fails",
		find:       scans(0, nil, []int{10, 11, 12}),
		fail:       map[string]error{"KILL 11": eperm},
		wantKilled: []int{10, 12},
		wantState:  map[int]string{10: "killed", 11: "stopped", 12: "killed"},
		wantErr:    []string{"kill process 11"},
	}, {
		name:      "the first scan fails",
		find:      scans(1, errors.New("no /proc"), []int{10}),
		wantState: map[int]string{},
		wantErr:   []string{"no /proc"},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sig := &signals{fail: c.fail}
			killed, err := stopThenKillWith(c.find, c.keep, sig.send)
			got := slices.Sorted(maps.Keys(killed))
			if !slices.Equal(got, c.wantKilled) {
				t.Errorf("killed %v, want %v (signals %v)", got, c.wantKilled, sig.sent)
			}
			if st := sig.state(); !maps.Equal(st, c.wantState) {
				t.Errorf("processes ended %v, want %v (signals %v)", st, c.wantState, sig.sent)
			}
			if len(c.wantErr) == 0 && err != nil {
				t.Errorf("error %v, want none", err)
			}
			if len(c.wantErr) > 0 && err == nil {
				t.Errorf("no error, want one saying %q", c.wantErr)
			}
			for _, w := range c.wantErr {
				if err != nil && !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
