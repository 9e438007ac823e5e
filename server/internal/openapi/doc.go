// Package openapi serves the OpenAPI 3.1 document of rein-server's HTTP API
// at GET /openapi.json. The paths are in openapi.json beside this file;
// the schemas come from protocol's JSON Schema (protocol.JSONSchema), so
// the wire types are described once, for both documents.
package openapi
