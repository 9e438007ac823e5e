package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestUIIsPublic: with authentication on, the web view's files are served
// without a token, and nothing else becomes reachable through them.
func TestUIIsPublic(t *testing.T) {
	ui := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	a := New(&fake{}, nil, Options{APIToken: "0123456789abcdef0123", UI: ui})
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/", http.StatusTeapot},
		{"HEAD", "/", http.StatusTeapot},
		{"GET", "/ui/app.js", http.StatusTeapot},
		{"POST", "/", http.StatusUnauthorized},
		{"GET", "/index.html", http.StatusUnauthorized},
		{"GET", "/sessions", http.StatusUnauthorized},
		{"GET", "/uix", http.StatusUnauthorized},
	} {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.want {
			t.Errorf("%s %s = %d; want %d", tc.method, tc.path, rec.Code, tc.want)
		}
	}
	// Without a UI, / is the API's JSON 404 as before.
	a = New(&fake{}, nil, Options{})
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET / without a UI = %d; want 404", rec.Code)
	}
}
