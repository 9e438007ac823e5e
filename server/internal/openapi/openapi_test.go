package openapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// TestDocumentRefsResolve checks that the merged document is JSON and that
// every local $ref points at something, so a schema renamed in protocol
// cannot leave the document dangling.
func TestDocumentRefsResolve(t *testing.T) {
	b, err := Document()
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	refs := 0
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "$ref" {
					refs++
					if _, err := resolve(doc, x.(string)); err != nil {
						t.Errorf("$ref %q: %v", x, err)
					}
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	if refs < 50 {
		t.Errorf("found %d $refs; the walk is not seeing the document", refs)
	}
	if strings.Contains(string(b), `#/$defs/`) {
		t.Error("a #/$defs/ reference was not rewritten")
	}
}

// resolve follows a local JSON pointer.
func resolve(doc any, ref string) (any, error) {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, errNotLocal
	}
	cur := doc
	for _, seg := range strings.Split(p, "/") {
		seg = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			next, ok := c[seg]
			if !ok {
				return nil, errMissing(seg)
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(c) {
				return nil, errMissing(seg)
			}
			cur = c[i]
		default:
			return nil, errMissing(seg)
		}
	}
	return cur, nil
}

type errMissing string

func (e errMissing) Error() string { return "no " + string(e) }

var errNotLocal = errMissing("local reference")

func TestServe(t *testing.T) {
	rec := httptest.NewRecorder()
	Serve(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var d struct {
		OpenAPI string `json:"openapi"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil || d.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q, err %v", d.OpenAPI, err)
	}
}
