package openapi

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"github.com/rein-ai/rein/protocol"
)

//go:embed openapi.json
var base []byte

// build merges protocol's "$defs" into base's components.schemas (which
// holds only the server's own types), with every "#/$defs/X" reference
// rewritten to "#/components/schemas/X".
func build() ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(base, &doc); err != nil {
		return nil, fmt.Errorf("openapi: parse openapi.json: %w", err)
	}
	var schema struct {
		Defs json.RawMessage `json:"$defs"`
	}
	if err := json.Unmarshal(protocol.JSONSchema(), &schema); err != nil {
		return nil, fmt.Errorf("openapi: parse protocol schema: %w", err)
	}
	// "#/$defs/" occurs in the schema only as the start of a reference, so
	// a byte replacement is exact.
	defs := bytes.ReplaceAll(schema.Defs, []byte(`"#/$defs/`), []byte(`"#/components/schemas/`))
	var schemas map[string]any
	if err := json.Unmarshal(defs, &schemas); err != nil {
		return nil, fmt.Errorf("openapi: parse protocol $defs: %w", err)
	}
	comp, ok := doc["components"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("openapi: openapi.json has no components object")
	}
	// The document's own schemas (the server's, such as Discovery) join
	// protocol's; a name in both would make one silently win, so it fails.
	if own, ok := comp["schemas"].(map[string]any); ok {
		for name, sch := range own {
			if _, dup := schemas[name]; dup {
				return nil, fmt.Errorf("openapi: schema %s is both in openapi.json and in protocol's schema", name)
			}
			schemas[name] = sch
		}
	}
	comp["schemas"] = schemas
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("openapi: encode: %w", err)
	}
	return append(b, '\n'), nil
}

// document is built once: its inputs are embedded.
var document = sync.OnceValues(build)

// Document returns (a copy of) the OpenAPI document. Both inputs are
// embedded, so it fails only if they are broken, which this package's
// tests rule out.
func Document() ([]byte, error) {
	b, err := document()
	return append([]byte(nil), b...), err
}

// Serve answers GET /openapi.json.
func Serve(w http.ResponseWriter, r *http.Request) {
	doc, err := document()
	if err != nil {
		http.Error(w, `{"code":"internal","message":"internal error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(doc)
}
