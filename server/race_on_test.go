//go:build race

package server

// raceEnabled: the race detector's instrumentation makes frames larger,
// so stack figures differ (TestIdleStreamStack), and makes a fold about
// six times slower (TestStateSizeEstimate).
const raceEnabled = true
