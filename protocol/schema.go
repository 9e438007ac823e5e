package protocol

import _ "embed"

// schemaJSON is schema/rein.schema.json: the wire contract as JSON Schema
// (2020-12), for validators in any language.
//
//go:embed schema/rein.schema.json
var schemaJSON []byte

// JSONSchema returns the JSON Schema (2020-12) document of the wire
// contract, schema/rein.schema.json: every ReinEvent, command, artifact,
// session record, stream payload and error body under "$defs". Each call
// returns a fresh copy, so callers may change it.
func JSONSchema() []byte { return append([]byte(nil), schemaJSON...) }
