// Package agentd is the sandbox daemon: it holds a session's command stream
// open, runs the agent process (native JSON lines or ACP), forwards each
// command once, uploads the agent's events in order with backpressure, and
// supervises the agent through crashes, aborts and shutdown.
//
// Run is the whole daemon; cmd/agentd maps flags to Options and errors to
// exit codes. agentd imports protocol only among Rein's modules (never the
// reducer or the server), plus go-sse (the reader), backoff, urfave/cli and
// acp-go-sdk.
package agentd
