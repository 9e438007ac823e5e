// Command rein is the Rein command line: it lists and creates sessions,
// sends prompts, aborts and permission answers, and follows a session's
// artifact stream as a terminal transcript.
//
// It talks to rein-server over HTTP through package client; see the
// "Command line" section of the root README and server/README.md.
//
// It imports client, protocol and urfave/cli (and the standard library).
package main
