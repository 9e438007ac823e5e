// Package native speaks Rein's native agent contract (NATIVE.md) with a
// running agent: commands as JSON lines on its stdin, ReinEvents without
// envelope as JSON lines on its stdout. Lines that are not valid events
// become warning notices instead of poisoning a batch. It imports protocol
// and agentd's process package (for line reading).
package native
