// Package outbox is agentd's state directory: an append-only, size-bounded
// log of the events agentd read from its agent (framed with length and
// CRC so a torn tail after kill -9 or power loss is found and dropped), the
// agentd instance id, the command cursor, and the turn and agent left
// open. A
// restarted agentd opens the same directory, is the same instance, and
// posts again whatever the server has not acknowledged, with the original
// agentSeqs, so the server stores each event exactly once.
package outbox
