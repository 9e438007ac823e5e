// Command rein-bench measures rein-server (and agentd) on loopback against
// baselines measured in the same run, prints a table, and writes the
// results as JSON for comparison between commits. `make bench` runs it.
//
// Every figure is a ratio to a baseline where one exists, because absolute
// numbers vary between machines. The baselines run as child processes of
// this binary (-mode trivial|durable|pgdurable|hub|agent). Each figure runs -runs times
// (default 3, interleaved) and is reported as the median with the spread,
// with the machine and its load average: on a shared machine one run
// misleads.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/rein-ai/rein/e2e/internal/loadgen"
)

// Figure is one line of the table and one entry of bench.json.
type Figure = loadgen.Figure

// Report is what rein-bench writes to bench.json. Its keys are merged into
// the file, so rein-soak's "soak" section written there survives a bench run.
type Report struct {
	Date    string          `json:"date"`
	Machine loadgen.Machine `json:"machine"`
	// LoadStart and LoadEnd are the load averages when the run began and
	// ended: on a shared machine they say how far to trust the figures.
	LoadStart loadgen.LoadAvg `json:"loadStart"`
	LoadEnd   loadgen.LoadAvg `json:"loadEnd"`
	Runs      int             `json:"runs"`
	Scale     float64         `json:"scale"`
	Figures   []Figure        `json:"figures"`
}

func main() {
	mode := flag.String("mode", "bench", "bench | trivial | durable | pgdurable | hub | agent (all but bench are the baselines this binary runs as children)")
	dir := flag.String("dir", "", "-mode durable: the directory of the file it writes and fsyncs")
	dsn := flag.String("dsn", "", "-mode pgdurable: the postgres:// URL of the database it inserts into")
	bin := flag.String("bin", "bin", "directory holding rein-server, agentd and demo-agent")
	out := flag.String("out", "bin/bench.json", "the JSON results file; its other keys (rein-soak's section) are kept")
	scale := flag.Float64("scale", 1, "multiplies every duration and count (0.2 for a quick look)")
	only := flag.String("only", "", "comma-separated figure groups to run (default all): "+strings.Join(groupNames(), ","))
	runs := flag.Int("runs", 3, "runs of each figure; the table gives the median and the spread (min-max)")
	stored := flag.Int("stored-sessions", 10000, "stored idle sessions for memory_per_stored_session (times -scale)")
	storedLarge := flag.Int("stored-sessions-large", 100000, "stored idle sessions for memory_per_stored_session_large (times -scale)")
	flag.Parse()
	if *mode != "bench" {
		exitOnInterrupt()
	}
	var err error
	switch *mode {
	case "trivial":
		err = serveTrivial()
	case "durable":
		if *dir == "" {
			err = fmt.Errorf("-mode durable needs -dir")
		} else {
			err = serveDurable(*dir)
		}
	case "pgdurable":
		if *dsn == "" {
			err = fmt.Errorf("-mode pgdurable needs -dsn")
		} else {
			err = servePgDurable(*dsn)
		}
	case "hub":
		err = serveHub()
	case "agent":
		err = runAgent()
	case "bench":
		switch {
		case *runs < 1:
			err = fmt.Errorf("-runs must be at least 1, got %d", *runs)
		case *scale <= 0:
			err = fmt.Errorf("-scale must be above 0, got %v", *scale)
		case *stored < 1:
			err = fmt.Errorf("-stored-sessions must be at least 1, got %d", *stored)
		case *storedLarge < 1:
			err = fmt.Errorf("-stored-sessions-large must be at least 1, got %d", *storedLarge)
		default:
			err = runBench(*bin, *out, *scale, *only, *runs, *stored, *storedLarge)
		}
	default:
		err = fmt.Errorf("-mode: unknown mode %q (bench, trivial, durable, pgdurable, hub or agent)", *mode)
	}
	if interrupted.Load() {
		// The figure that was running failed as its server stopped;
		// the interrupt, not that, is what ended the bench.
		os.Exit(130)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// interrupted is set when a SIGINT or SIGTERM stops the bench (runBench),
// before the bench stops what it started.
var interrupted atomic.Bool

// exitOnInterrupt makes a baseline child exit on SIGINT or SIGTERM. The
// bench stops its children with SIGINT; a child started with SIGINT
// ignored (the bench run as a shell's background job, or under nohup)
// kept it ignored, ran out the 10 s grace and was killed, each time.
func exitOnInterrupt() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		os.Exit(0)
	}()
}

// group is a figure function: one run of it yields one or more figures.
type group struct {
	name string
	run  func() ([]Figure, error)
}

func (b *bench) groups() []group {
	return []group{
		{"ingest_single", func() ([]Figure, error) { return b.ingestSingle("normal") }},
		{"ingest_single_full", func() ([]Figure, error) { return b.ingestSingle("full") }},
		{"ingest_crowded", b.ingestCrowded},
		{"ingest_batch", func() ([]Figure, error) { return b.ingestBatch("normal") }},
		{"ingest_batch_full", func() ([]Figure, error) { return b.ingestBatch("full") }},
		{"fanout", b.fanout},
		{"latency", b.latency},
		{"memory", b.memory},
		{"stored_sessions", b.storedSessions},
		{"stored_sessions_large", b.storedSessionsLarge},
		{"agentd", b.throughAgentd},
		{"resume", b.resume},
		{"postgres", b.postgres},
		{"postgres_more", b.postgresMore},
		{"replicas", b.replicas},
	}
}

func groupNames() []string {
	var names []string
	for _, g := range (&bench{}).groups() {
		names = append(names, g.name)
	}
	return names
}

func runBench(bin, out string, scale float64, only string, runs, stored, storedLarge int) error {
	b, err := newBench(bin, scale)
	if err != nil {
		return err
	}
	defer b.close()
	// An interrupt (Ctrl-C on make bench, a SIGTERM) stops the servers
	// and baselines the bench started and removes its files: each child
	// runs in a process group of its own, out of the terminal's reach, and
	// would otherwise outlive the bench.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case s := <-sig:
			interrupted.Store(true)
			fmt.Fprintf(os.Stderr, "bench: %v: stopping what it started and removing %s\n", s, b.tmp)
			b.close()
			os.Exit(130)
		case <-finished:
		}
	}()
	b.storedCount, b.storedLarge = stored, storedLarge
	var groups []group
	for _, g := range b.groups() {
		if only == "" || strings.Contains(","+only+",", ","+g.name+",") {
			groups = append(groups, g)
		}
	}
	if len(groups) == 0 {
		return fmt.Errorf("-only %q names no figure group (%s)", only, strings.Join(groupNames(), ","))
	}
	rep := Report{Date: time.Now().UTC().Format(time.RFC3339), Machine: loadgen.ThisMachine(), Runs: runs, Scale: scale}
	if rep.LoadStart, err = loadgen.ReadLoadAvg(); err != nil {
		return err
	}
	// Runs are interleaved (every group once, then again), so a burst of
	// other work on a shared machine lands in one run of several figures
	// rather than in every run of one.
	results := make([][][]Figure, len(groups))
	for r := range runs {
		for i, g := range groups {
			start := time.Now()
			figs, err := g.run()
			if err != nil {
				return fmt.Errorf("%s (run %d of %d): %w", g.name, r+1, runs, err)
			}
			results[i] = append(results[i], figs)
			fmt.Fprintf(os.Stderr, "bench: %s run %d/%d done in %v\n", g.name, r+1, runs, time.Since(start).Round(time.Millisecond))
		}
	}
	for i, g := range groups {
		figs, err := combine(results[i])
		if err != nil {
			return fmt.Errorf("%s: %w", g.name, err)
		}
		rep.Figures = append(rep.Figures, figs...)
	}
	if rep.LoadEnd, err = loadgen.ReadLoadAvg(); err != nil {
		return err
	}
	printTable(rep)
	return loadgen.MergeJSON(out, map[string]any{
		"date": rep.Date, "machine": rep.Machine, "loadStart": rep.LoadStart, "loadEnd": rep.LoadEnd,
		"runs": rep.Runs, "scale": rep.Scale, "figures": rep.Figures,
	})
}

// combine turns the runs of one group into one figure per name: the median
// value, the median baseline and the median of the per-run ratios (each
// run's ratio is against the baseline measured in that same run, so the
// machine's load at that moment divides out), with every run and the
// spread kept, judged on the medians. The note is the run's whose value is
// the median (the lower middle one for an even count).
func combine(runs [][]Figure) ([]Figure, error) {
	first := runs[0]
	out := make([]Figure, 0, len(first))
	for i := range first {
		samples := make([]loadgen.Sample, len(runs))
		for r, figs := range runs {
			if len(figs) != len(first) || figs[i].Name != first[i].Name {
				return nil, fmt.Errorf("run %d gave different figures than run 1", r+1)
			}
			samples[r] = loadgen.Sample{Value: figs[i].Value, Baseline: figs[i].Baseline, Ratio: figs[i].Ratio}
		}
		order := make([]int, len(runs))
		for r := range order {
			order[r] = r
		}
		sort.SliceStable(order, func(a, b int) bool { return samples[order[a]].Value < samples[order[b]].Value })
		f := runs[order[(len(runs)-1)/2]][i]
		f.Value = median(samples, func(s loadgen.Sample) *float64 { return &s.Value })
		f.Baseline = medianPtr(samples, func(s loadgen.Sample) *float64 { return s.Baseline })
		f.Ratio = medianPtr(samples, func(s loadgen.Sample) *float64 { return s.Ratio })
		if len(runs) > 1 {
			f.Runs = samples
			f.Min = spread(samples, func(a, b float64) bool { return a < b })
			f.Max = spread(samples, func(a, b float64) bool { return a > b })
		}
		f.Judge()
		out = append(out, f)
	}
	return out, nil
}

// medianPtr is the median of a field present in every sample, or nil when
// some run lacks it.
func medianPtr(samples []loadgen.Sample, field func(loadgen.Sample) *float64) *float64 {
	for _, s := range samples {
		if field(s) == nil {
			return nil
		}
	}
	return ptr(median(samples, field))
}

func median(samples []loadgen.Sample, field func(loadgen.Sample) *float64) float64 {
	vs := make([]float64, len(samples))
	for i, s := range samples {
		vs[i] = *field(s)
	}
	sort.Float64s(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

// spread picks, field by field, the sample value that wins by better (the
// smallest or the largest of the runs).
func spread(samples []loadgen.Sample, better func(a, b float64) bool) *loadgen.Sample {
	pick := func(cur *float64, v *float64) *float64 {
		if v == nil {
			return cur
		}
		if cur == nil || better(*v, *cur) {
			return ptr(*v)
		}
		return cur
	}
	var value, base, ratio *float64
	for _, s := range samples {
		value = pick(value, &s.Value)
		base = pick(base, s.Baseline)
		ratio = pick(ratio, s.Ratio)
	}
	return &loadgen.Sample{Value: *value, Baseline: base, Ratio: ratio}
}

func printTable(rep Report) {
	fmt.Printf("rein-bench %s on %s\n", rep.Date, rep.Machine)
	fmt.Printf("load average %s at start, %s at end; %d run(s) of each figure, scale %g\n", rep.LoadStart, rep.LoadEnd, rep.Runs, rep.Scale)
	fmt.Printf("ours, baseline: median of the runs; ratio: median of the per-run ratios; [min-max] over the runs; met: on the medians\n\n")
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "figure\tunit\tours\t[min-max]\tbaseline\tratio\t[min-max]\ttarget\tmet")
	for _, f := range rep.Figures {
		base, ratio, vspread, rspread := "-", "-", "-", "-"
		if f.Baseline != nil {
			base = num(*f.Baseline)
		}
		if f.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *f.Ratio)
		}
		if f.Min != nil && f.Max != nil {
			vspread = num(f.Min.Value) + "-" + num(f.Max.Value)
			if f.Min.Ratio != nil && f.Max.Ratio != nil {
				rspread = fmt.Sprintf("%.2f-%.2f", *f.Min.Ratio, *f.Max.Ratio)
			}
		}
		cmp := "<="
		if f.Higher {
			cmp = ">="
		}
		met := "yes"
		if !f.Met {
			met = "NO"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s %s\t%s\n", f.Name, f.Unit, num(f.Value), vspread, base, ratio, rspread, cmp, num(f.Target), met)
	}
	w.Flush()
}

func num(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func ptr(v float64) *float64 { return &v }

// withBaseline fills in the baseline and the ratio value/baseline.
func withBaseline(f Figure, base float64) Figure {
	f.Baseline = ptr(base)
	if base != 0 {
		f.Ratio = ptr(f.Value / base)
	}
	return f
}
