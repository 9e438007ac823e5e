// Package process starts and supervises the agent's OS process: its own
// process group (so a signal reaches every child), stdin/stdout pipes for
// the adapter, stderr lines into agentd's log, and an exit status that
// becomes an agent_exited event. What the agent leaves running outside
// its group is adopted and killed when it ends (adopt.go). It imports the
// standard library only.
package process
