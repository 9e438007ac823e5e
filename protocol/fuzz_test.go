package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/rein-ai/rein/protocol"
)

// seedGoldens adds every golden under testdata/<dir> to the corpus and
// returns them.
func seedGoldens(f *testing.F, dir string) [][]byte {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", dir, "*.json"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no goldens in testdata/%s: %v", dir, err)
	}
	var all [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		all = append(all, b)
	}
	return all
}

// checkDecodeError: every refusal is a *FieldError with a wire code.
func checkDecodeError(t *testing.T, err error) {
	t.Helper()
	if c := protocol.CodeOf(err); c != protocol.CodeInvalid && c != protocol.CodeTooLarge {
		t.Fatalf("CodeOf(%q) = %q, want invalid or too_large", err, c)
	}
	var fe *protocol.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %q is %T, want *protocol.FieldError", err, err)
	}
	if err.Error() == "" {
		t.Fatal("empty error message")
	}
}

func FuzzDecodeEvents(f *testing.F) {
	goldens := seedGoldens(f, "events")
	f.Add(append(append([]byte("["), bytes.Join(goldens, []byte(","))...), ']'))
	for _, s := range eventSpecs {
		f.Add([]byte(eventJSON(s.typ, s.required, "")))
	}
	f.Add([]byte(`[{"type":"plan_updated","entries":[]},{"type":"text_delta","delta":""}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := protocol.DecodeEvents(body)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		if len(evs) == 0 {
			t.Fatal("no error and no events")
		}
		for i, ev := range evs {
			if ev.ReceivedAt != 0 {
				t.Fatalf("events[%d].ReceivedAt = %d, want 0", i, ev.ReceivedAt)
			}
			if !protocol.KnownEventType(ev.Type) {
				t.Fatalf("events[%d].Type = %q, not a known type", i, ev.Type)
			}
		}
		// What decoded encodes to what decodes again, to the same value.
		b, err := json.Marshal(evs)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", evs, err)
		}
		again, err := protocol.DecodeEvents(b)
		if err != nil {
			t.Fatalf("DecodeEvents(Marshal(DecodeEvents(body))) = %v\nbody: %q\nre-encoded: %s", err, body, b)
		}
		if !reflect.DeepEqual(again, evs) {
			t.Fatalf("round trip changed the events\n got: %+v\nwant: %+v", again, evs)
		}
		// One at a time too: a lone object decodes like a batch of one.
		for i, ev := range evs {
			b, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			one, err := protocol.DecodeEvents(b)
			if err != nil || len(one) != 1 || !reflect.DeepEqual(one[0], ev) {
				t.Fatalf("events[%d] alone: %v, %+v, want %+v", i, err, one, ev)
			}
			// Within the limits, the unlimited decoder reads the same.
			if u, err := protocol.DecodeEventUnlimited(b); err != nil || !reflect.DeepEqual(u, ev) {
				t.Fatalf("events[%d] by DecodeEventUnlimited: %v, %+v, want %+v", i, err, u, ev)
			}
		}
	})
}

func FuzzDecodeCommand(f *testing.F) {
	seedGoldens(f, "commands")
	f.Add([]byte(`{"type":"permission_response","requestId":"r1","optionId":"a","outcome":"cancelled"}`))
	f.Add([]byte(`{"type":"prompt","text":"t","Type":"shutdown"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := protocol.DecodeCommand(body)
		if err != nil {
			checkDecodeError(t, err)
			return
		}
		if c.ID != 0 {
			t.Fatalf("ID = %d: a client's id must be ignored", c.ID)
		}
		switch c.Type {
		case protocol.CommandPrompt, protocol.CommandAbort, protocol.CommandPermissionResponse:
		default:
			t.Fatalf("Type = %q accepted from a client", c.Type)
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		again, err := protocol.DecodeCommand(b)
		if err != nil {
			t.Fatalf("DecodeCommand(Marshal(DecodeCommand(body))) = %v\nbody: %q\nre-encoded: %s", err, body, b)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip changed the command\n got: %+v\nwant: %+v", again, c)
		}
	})
}
