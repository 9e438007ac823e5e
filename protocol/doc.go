// Package protocol is Rein's wire contract: the commands clients send, the
// ReinEvents sandboxes post, the artifacts clients render, the session
// record, the payloads of the three SSE streams and the error body with its
// stable codes. It also validates what arrives on the wire.
//
// It imports the standard library only, so every other module (server,
// agentd, reducer, e2e, clients) can depend on it without pulling anything
// else in. docs/PROTOCOL.md is the prose version of this package, and
// schema/rein.schema.json (JSONSchema) its JSON Schema.
package protocol
