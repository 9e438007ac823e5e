// Command rein-server runs the Rein server: the HTTP/SSE service that
// sessions, sandboxes (agentd) and clients talk to, on SQLite (or
// PostgreSQL with a postgres:// --db).
//
// Configuration comes from flags or REIN_* environment variables; see
// server/README.md. On start it prints exactly one line to stdout,
// "rein-server listening on http://HOST:PORT"; logs go to stderr.
//
// It imports server/app (the whole server), protocol and urfave/cli.
package main
