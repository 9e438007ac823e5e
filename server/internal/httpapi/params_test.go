package httpapi

import (
	"net/http/httptest"
	"testing"
)

// TestIntParamWords: a query integer too large for int64 is said to be too
// large; it was "must be a non-negative integer", which it is.
func TestIntParamWords(t *testing.T) {
	for q, want := range map[string]string{
		"limit=99999999999999999999":  `limit: at most 5000, got "99999999999999999999"`,
		"after=99999999999999999999":  `after: at most 9223372036854775807, got "99999999999999999999"`,
		"after=-99999999999999999999": `after: must be a non-negative integer, got "-99999999999999999999"`,
		"limit=5001":                  `limit: at most 5000, got 5001`,
		"limit=x":                     `limit: must be a non-negative integer, got "x"`,
		"limit=0":                     `limit: must be at least 1`,
	} {
		_, _, err := pageParams(httptest.NewRequest("GET", "/sessions/a/events?"+q, nil), 500, 5000)
		if err == nil || err.Error() != want {
			t.Errorf("?%s: %v; want %q", q, err, want)
		}
	}
}
