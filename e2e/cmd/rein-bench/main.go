// Command rein-bench measures rein-server (and agentd) on loopback against
// baselines measured in the same run, prints a table, and writes the
// results as JSON for comparison between commits. `make bench` runs it.
//
// Every figure is a ratio to a baseline where one exists, because absolute
// numbers vary between machines. The baselines run as child processes of
// this binary (-mode trivial|hub|agent).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Figure is one line of the table and one entry of bench.json.
type Figure struct {
	Name     string   `json:"name"`
	Unit     string   `json:"unit"`
	Value    float64  `json:"value"`
	Baseline *float64 `json:"baseline"`
	Ratio    *float64 `json:"ratio"`
	Target   float64  `json:"target"`
	// Higher: the target is a minimum (of the ratio, or the value when
	// there is no baseline); otherwise a maximum.
	Higher bool   `json:"higherIsBetter"`
	Met    bool   `json:"met"`
	Note   string `json:"note,omitempty"`
}

// Report is bench.json.
type Report struct {
	Date    string   `json:"date"`
	Machine string   `json:"machine"`
	Figures []Figure `json:"figures"`
}

func main() {
	mode := flag.String("mode", "bench", "bench | trivial | hub | agent (the last three are the baselines this binary runs as children)")
	bin := flag.String("bin", "bin", "directory holding rein-server, agentd and demo-agent")
	out := flag.String("out", "bin/bench.json", "where to write the JSON results")
	scale := flag.Float64("scale", 1, "multiplies every duration and count (0.2 for a quick look)")
	only := flag.String("only", "", "comma-separated figure names to run (default all)")
	flag.Parse()
	var err error
	switch *mode {
	case "trivial":
		err = serveTrivial()
	case "hub":
		err = serveHub()
	case "agent":
		err = runAgent()
	default:
		err = runBench(*bin, *out, *scale, *only)
	}
	if err != nil {
		log.Fatal(err)
	}
}

func runBench(bin, out string, scale float64, only string) error {
	b, err := newBench(bin, scale)
	if err != nil {
		return err
	}
	defer b.close()
	all := []struct {
		name string
		run  func() ([]Figure, error)
	}{
		{"ingest_single", func() ([]Figure, error) { return b.ingestSingle("normal") }},
		{"ingest_single_full", func() ([]Figure, error) { return b.ingestSingle("full") }},
		{"ingest_batch", func() ([]Figure, error) { return b.ingestBatch("normal") }},
		{"ingest_batch_full", func() ([]Figure, error) { return b.ingestBatch("full") }},
		{"fanout", b.fanout},
		{"latency", b.latency},
		{"memory", b.memory},
		{"agentd", b.throughAgentd},
		{"resume", b.resume},
		{"postgres", b.postgres},
	}
	rep := Report{Date: time.Now().UTC().Format(time.RFC3339), Machine: machine()}
	for _, f := range all {
		if only != "" && !strings.Contains(","+only+",", ","+f.name+",") {
			continue
		}
		start := time.Now()
		figs, err := f.run()
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		for i := range figs {
			figs[i].judge()
		}
		rep.Figures = append(rep.Figures, figs...)
		fmt.Fprintf(os.Stderr, "bench: %s done in %v\n", f.name, time.Since(start).Round(time.Millisecond))
	}
	printTable(rep)
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(out, append(data, '\n'), 0o644)
}

func (f *Figure) judge() {
	v := f.Value
	if f.Ratio != nil {
		v = *f.Ratio
	}
	if f.Higher {
		f.Met = v >= f.Target
	} else {
		f.Met = v <= f.Target
	}
}

func printTable(rep Report) {
	fmt.Printf("rein-bench %s on %s\n\n", rep.Date, rep.Machine)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "figure\tunit\tours\tbaseline\tratio\ttarget\tmet")
	for _, f := range rep.Figures {
		base, ratio := "-", "-"
		if f.Baseline != nil {
			base = num(*f.Baseline)
		}
		if f.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *f.Ratio)
		}
		cmp := "<="
		if f.Higher {
			cmp = ">="
		}
		met := "yes"
		if !f.Met {
			met = "NO"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s %s\t%s\n", f.Name, f.Unit, num(f.Value), base, ratio, cmp, num(f.Target), met)
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

func machine() string {
	host, _ := os.Hostname()
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				model = strings.TrimSpace(line[strings.Index(line, ":")+1:])
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d cores, %s, %s/%s", model, runtime.NumCPU(), host, runtime.GOOS, runtime.GOARCH)
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
