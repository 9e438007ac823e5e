package main

import (
	"reflect"
	"testing"

	"github.com/rein-ai/rein/e2e/internal/loadgen"
)

func TestCombine(t *testing.T) {
	p := func(v float64) *float64 { return &v }
	run := func(value float64, base *float64, note string) []Figure {
		f := Figure{Name: "x", Unit: "u", Value: value, Target: 0.5, Higher: true, Note: note}
		if base != nil {
			f = withBaseline(f, *base)
		}
		return []Figure{f}
	}
	for _, tc := range []struct {
		name      string
		runs      [][]Figure
		value     float64
		base      *float64
		ratio     *float64
		note      string
		min, max  *loadgen.Sample
		met       bool
		wantError bool
	}{
		{
			name:  "one run is that run, without spread",
			runs:  [][]Figure{run(3, p(6), "a")},
			value: 3, base: p(6), ratio: p(0.5), note: "a", met: true,
		},
		{
			// Ratios 0.4, 0.6, 0.3: the median ratio (0.4) is not the ratio
			// of the medians (3/6 = 0.5), and judges the figure.
			name:  "three runs: medians, per-run ratio median, spread",
			runs:  [][]Figure{run(2, p(5), "a"), run(3, p(5), "b"), run(6, p(20), "c")},
			value: 3, base: p(5), ratio: p(0.4), note: "b", met: false,
			min: &loadgen.Sample{Value: 2, Baseline: p(5), Ratio: p(0.3)},
			max: &loadgen.Sample{Value: 6, Baseline: p(20), Ratio: p(0.6)},
		},
		{
			name:  "two runs without baseline: mean of the middle two, lower note",
			runs:  [][]Figure{run(4, nil, "high"), run(1, nil, "low")},
			value: 2.5, note: "low", met: true,
			min: &loadgen.Sample{Value: 1}, max: &loadgen.Sample{Value: 4},
		},
		{
			name:      "runs disagree on the figures",
			runs:      [][]Figure{run(1, nil, ""), {{Name: "y"}}},
			wantError: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := combine(tc.runs)
			if tc.wantError {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 {
				t.Fatalf("%d figures", len(got))
			}
			f := got[0]
			if f.Value != tc.value || !reflect.DeepEqual(f.Baseline, tc.base) || !reflect.DeepEqual(f.Ratio, tc.ratio) {
				t.Errorf("value %v baseline %v ratio %v; want %v %v %v", f.Value, deref(f.Baseline), deref(f.Ratio), tc.value, deref(tc.base), deref(tc.ratio))
			}
			if f.Note != tc.note || f.Met != tc.met {
				t.Errorf("note %q met %v; want %q %v", f.Note, f.Met, tc.note, tc.met)
			}
			if !reflect.DeepEqual(f.Min, tc.min) || !reflect.DeepEqual(f.Max, tc.max) {
				t.Errorf("min %+v max %+v; want %+v %+v", f.Min, f.Max, tc.min, tc.max)
			}
			if want := len(tc.runs); want > 1 && len(f.Runs) != want {
				t.Errorf("%d runs kept, want %d", len(f.Runs), want)
			}
		})
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
