// Package stdinqueue writes an agent's stdin from a goroutine of its own,
// so that an adapter's loop never blocks in a write to an agent that has
// stopped reading: the loop goes on reading the agent's stdout, and so
// reaches its end, which is what tells agentd to stop such an agent. It
// imports only the standard library.
package stdinqueue
