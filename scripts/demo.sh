#!/usr/bin/env bash
# make demo: a real rein-server (auth on, temp database, free port), agentd
# with demo-agent, two prompts (one runs `ls -la` as a tool call), and
# `rein watch` showing the transcript until the agent is idle. Everything it
# starts is stopped on exit, however it exits.
set -euo pipefail

BIN=${BIN:-$(pwd)/bin}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rein-demo.XXXXXX")
server_pid= agentd_pid=

cleanup() {
	status=$?
	[ -n "$agentd_pid" ] && kill -TERM "$agentd_pid" 2>/dev/null && wait "$agentd_pid" 2>/dev/null || true
	[ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
	if [ "$status" -ne 0 ]; then
		echo "demo failed; server and agentd logs:" >&2
		cat "$tmp/server.log" "$tmp/agentd.log" >&2 2>/dev/null || true
	fi
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
	say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
else
	say() { printf '\n$ %s\n' "$*"; }
fi

# A client token turns authentication on, as in production.
head -c 32 /dev/urandom | base64 >"$tmp/api-token"
"$BIN/rein-server" --port 0 --db "$tmp/rein.db" --api-token-file "$tmp/api-token" \
	>"$tmp/server.out" 2>"$tmp/server.log" &
server_pid=$!
for _ in $(seq 100); do
	grep -q listening "$tmp/server.out" 2>/dev/null && break
	kill -0 "$server_pid" 2>/dev/null || { echo "rein-server did not start" >&2; exit 1; }
	sleep 0.1
done
url=$(sed -n 's/^rein-server listening on //p' "$tmp/server.out")
[ -n "$url" ] || { echo "rein-server did not start" >&2; exit 1; }
export REIN_SERVER=$url REIN_API_TOKEN_FILE=$tmp/api-token
echo "rein-server on $url (auth on, database in $tmp)"

say rein create demo --project demo --sandbox-token-file sandbox-token
"$BIN/rein" create demo --project demo --sandbox-token-file "$tmp/sandbox-token"

say agentd --server "$url" --session demo --token-file sandbox-token -- demo-agent '&'
# Its state dir goes in the temp dir too: the default (~/.local/state) would
# outlive the demo, and the next demo's agentd would find a session "demo"
# of a server that is gone and warn that it discards it.
"$BIN/agentd" --server "$url" --session demo --token-file "$tmp/sandbox-token" --state-dir "$tmp/agentd-state" \
	-- "$BIN/demo-agent" 2>"$tmp/agentd.log" &
agentd_pid=$!
# Commands need a connected sandbox (409 no_sandbox otherwise): wait until
# demo-agent has started and the session is idle.
for _ in $(seq 100); do
	"$BIN/rein" sessions --json | grep -q '"status":"idle"' && break
	sleep 0.1
done

say rein prompt demo "'run: ls -la'"
"$BIN/rein" prompt demo "run: ls -la"
say rein prompt demo hello
"$BIN/rein" prompt demo hello

say rein watch demo --until-idle
"$BIN/rein" watch demo --until-idle

say rein sessions
"$BIN/rein" sessions
