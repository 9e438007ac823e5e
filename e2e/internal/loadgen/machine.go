package loadgen

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes where figures were measured.
type Machine struct {
	CPU   string `json:"cpu"`
	Cores int    `json:"cores"`
	Host  string `json:"host"`
	OS    string `json:"os"`
}

// ThisMachine reads the CPU model from /proc/cpuinfo (empty where there is
// none) and counts the cores this process may use.
func ThisMachine() Machine {
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
	return Machine{CPU: model, Cores: runtime.NumCPU(), Host: host, OS: runtime.GOOS + "/" + runtime.GOARCH}
}

func (m Machine) String() string {
	return fmt.Sprintf("%s, %d cores, %s, %s", m.CPU, m.Cores, m.Host, m.OS)
}

// LoadAvg is the system's 1, 5 and 15 minute load averages: other work on
// a shared machine moves every figure, so each report records it.
type LoadAvg [3]float64

// ReadLoadAvg reads /proc/loadavg.
func ReadLoadAvg() (LoadAvg, error) {
	var l LoadAvg
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l, fmt.Errorf("read load average: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return l, fmt.Errorf("read load average: %q has fewer than 3 fields", b)
	}
	for i := range l {
		if l[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			return l, fmt.Errorf("read load average: field %d: %w", i+1, err)
		}
	}
	return l, nil
}

func (l LoadAvg) String() string { return fmt.Sprintf("%.2f %.2f %.2f", l[0], l[1], l[2]) }
