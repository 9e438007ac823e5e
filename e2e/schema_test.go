package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/rein-ai/rein/protocol"
)

// schemaLoc is where the tests place protocol's JSON Schema; its own $id.
const schemaLoc = "https://rein.dev/schema/rein.schema.json"

// compileDefs compiles the named definitions of protocol's JSON Schema
// with a JSON Schema 2020-12 validator independent of the Go decoders.
func compileDefs(t *testing.T, names ...string) map[string]*jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(protocol.JSONSchema()))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(schemaLoc, doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]*jsonschema.Schema{}
	for _, n := range names {
		s, err := c.Compile(schemaLoc + "#/$defs/" + n)
		if err != nil {
			t.Fatalf("compile %s: %v", n, err)
		}
		out[n] = s
	}
	return out
}

// TestSchemaGoldens validates every golden file of protocol/testdata (the
// values the Go types encode, byte for byte) against the JSON Schema, and
// values the Go decoders refuse must fail it too, so neither the schema
// nor the goldens can drift from the code unnoticed.
func TestSchemaGoldens(t *testing.T) {
	defs := compileDefs(t, "Event", "EventBody", "Command", "ClientCommand", "Artifact", "Session", "CreateSessionRequest",
		"ArtifactPayload", "ArtifactUpdate", "CommandAccepted", "ErrorBody", "EventsAccepted", "SessionPayload",
		"SessionRemoved", "SessionUpdated", "SnapshotComplete", "SessionId",
		"Approval", "Decision", "ApprovalResolved", "ApprovalsComplete", "Turn", "EventsPage")
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// Which definition each golden is an instance of.
	defOf := func(dir, name string) string {
		switch dir {
		case "events":
			return "Event"
		case "commands":
			return "Command"
		case "artifacts":
			return "Artifact"
		case "inbox":
			switch {
			case strings.HasPrefix(name, "approvals_complete"):
				return "ApprovalsComplete"
			case strings.HasPrefix(name, "approval_resolved"):
				return "ApprovalResolved"
			case strings.HasPrefix(name, "approval"):
				return "Approval"
			case strings.HasPrefix(name, "decision"):
				return "Decision"
			case strings.HasPrefix(name, "turn"):
				return "Turn"
			case strings.HasPrefix(name, "events_page"):
				return "EventsPage"
			}
			return ""
		case "session":
			if name == "create_request" {
				return "CreateSessionRequest"
			}
			return "Session"
		}
		switch {
		case name == "artifact_payload":
			return "ArtifactPayload"
		case strings.HasPrefix(name, "artifact_update"):
			return "ArtifactUpdate"
		case strings.HasPrefix(name, "session_updated"):
			return "SessionUpdated"
		}
		return map[string]string{"command_accepted": "CommandAccepted", "error_body": "ErrorBody", "events_accepted": "EventsAccepted",
			"session_payload": "SessionPayload", "session_removed": "SessionRemoved", "snapshot_complete": "SnapshotComplete"}[name]
	}
	n := 0
	for _, dir := range []string{"events", "commands", "artifacts", "session", "stream", "inbox"} {
		files, err := filepath.Glob(filepath.Join(root, "protocol", "testdata", dir, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			name := strings.TrimSuffix(filepath.Base(f), ".json")
			def := defOf(dir, name)
			if def == "" {
				t.Errorf("%s/%s: no schema definition is known for this golden; add it to defOf", dir, name)
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if err := defs[def].Validate(v); err != nil {
				t.Errorf("%s/%s.json is not a valid %s: %v", dir, name, def, err)
			}
			n++
		}
	}
	if n < 40 {
		t.Fatalf("validated %d goldens; protocol/testdata has more", n)
	}

	// Values the decoders refuse, and the schema must refuse too; and the
	// schema's verdict must agree with the decoders on each.
	for _, tc := range []struct{ def, json string }{
		{"Event", `{"type":"no_such_event"}`},
		{"Event", `{"type":"text_delta"}`},
		{"Event", `{"type":"text_delta","delta":7}`},
		{"Event", `{"type":"tool_call_start","id":"bad id","name":"x"}`},
		{"Event", `{"type":"tool_call_end","id":"t","status":"awaiting_approval"}`},
		{"Event", `{"type":"turn_started","turnId":"t"}`},
		{"Event", `{"type":"heartbeat","agentSeq":0}`},
		{"EventBody", `[]`},
		{"ClientCommand", `{"type":"prompt","text":""}`},
		{"ClientCommand", `{"type":"shutdown"}`},
		{"ClientCommand", `{"type":"permission_response","requestId":"r"}`},
		{"ClientCommand", `{"type":"permission_response","requestId":"r","optionId":"o","outcome":"cancelled"}`},
		{"ArtifactUpdate", `{"seq":1,"field":"text"}`},
		{"SessionId", `".."`},
		{"SessionId", `"stream"`},
	} {
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(tc.json))
		if err != nil {
			t.Fatal(err)
		}
		if defs[tc.def].Validate(v) == nil {
			t.Errorf("%s accepts %s, which the decoders refuse", tc.def, tc.json)
		}
		var decodeErr error
		switch tc.def {
		case "Event", "EventBody":
			_, decodeErr = protocol.DecodeEvents([]byte(tc.json))
		case "ClientCommand":
			_, decodeErr = protocol.DecodeCommand([]byte(tc.json))
		case "SessionId":
			decodeErr = protocol.ValidateSessionID(strings.Trim(tc.json, `"`))
		default:
			continue
		}
		if decodeErr == nil {
			t.Errorf("the decoders accept %s: the case is wrong", tc.json)
		}
	}
}
