//go:build race

package server_test

// raceEnabled: the race detector's instrumentation makes frames larger,
// so stack figures differ (TestIdleStreamStack).
const raceEnabled = true
