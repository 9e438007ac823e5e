//go:build race

package e2e

// raceEnabled builds the binaries with -race when the suite runs with it.
const raceEnabled = true
