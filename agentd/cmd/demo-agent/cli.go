package main

import (
	"fmt"
	"io"
)

// usage is what --help prints; README.md and NATIVE.md describe the same.
const usage = `demo-agent: a deterministic Rein agent with no model, for the quickstart
and the tests. It speaks the native contract (agentd/NATIVE.md): one JSON
command per line on stdin, one ReinEvent per line on stdout, logs on stderr.
Run it under agentd:

  agentd --server URL --session ID [--token-file F] -- demo-agent

What a prompt does:
  plain text    "You said: <text>" streamed word by word
  run: CMD      runs ` + "`sh -c CMD`" + ` as a shell tool call, streaming its output
  ask: TEXT     requests permission and waits for the answer
  slow: N       streams w1 ... wN, one word per DEMO_AGENT_DELAY
  plan: a; b    a plan whose entries progress to completed
  exit: N       exits with code N at once (crash tests)
abort ends the current turn as cancelled; shutdown (or EOF on stdin) exits 0.

Usage:
  demo-agent             run the agent (stdin/stdout)
  demo-agent --help      print this help
  demo-agent --version   print the version

Environment:
  DEMO_AGENT_DELAY   pause between words of slow: N (default 50ms)
`

// handleArgs answers --help and --version, and refuses anything else:
// the agent itself takes no arguments. done says whether main should exit
// with code instead of running the agent.
func handleArgs(args []string, stdout, stderr io.Writer) (code int, done bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0, true
	case "-v", "-version", "--version":
		fmt.Fprintln(stdout, "demo-agent version", versionString())
		return 0, true
	}
	fmt.Fprintf(stderr, "demo-agent: unexpected argument %q (it takes none; see demo-agent --help)\n", args[0])
	return 2, true
}
