package codex

import "io"

// SetTestTranscript makes every Serve in this test binary that has no
// Options.Transcript record into f's writer (runs inside agentd have no
// other way in). The returned func undoes it.
func SetTestTranscript(f func() io.Writer) (undo func()) {
	testTranscript = f
	return func() { testTranscript = nil }
}
