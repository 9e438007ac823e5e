// Package reducer folds ReinEvents into artifacts and session status.
//
// It is a pure function of the event log: no I/O, no clock (artifact times
// come from the server-stamped Event.ReceivedAt), no goroutines, no
// randomness. The same log always folds to the same artifacts, which is what
// lets the server rebuild state after a restart and lets clients trust a
// resumed stream. It imports protocol only.
//
// Apply returns Changes that are exactly what the artifact stream sends:
// an artifact created, a field appended, a field set. Each artifact change
// carries the session revision it was given; the revisions are the SSE ids.
package reducer
