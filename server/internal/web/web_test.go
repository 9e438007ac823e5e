package web

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	h := Handler()
	for _, tc := range []struct {
		path, status, ctype, contains string
	}{
		{"/", "200", "text/html; charset=utf-8", `<script src="/ui/app.js" defer></script>`},
		{"/ui/app.js", "200", "text/javascript; charset=utf-8", "class Stream"},
		{"/ui/app.css", "200", "text/css; charset=utf-8", "--mono"},
		{"/ui/favicon.svg", "200", "image/svg+xml", "<svg"},
		{"/ui/", "404", "", ""},
		{"/ui/nope.js", "404", "", ""},
		{"/ui/../web.go", "404", "", ""},
		{"/other", "404", "", ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		res := rec.Result()
		body, _ := io.ReadAll(res.Body)
		if got := res.Status[:3]; got != tc.status {
			t.Errorf("GET %s: status %s; want %s", tc.path, got, tc.status)
			continue
		}
		if tc.status != "200" {
			continue
		}
		if got := res.Header.Get("Content-Type"); got != tc.ctype {
			t.Errorf("GET %s: Content-Type %q; want %q", tc.path, got, tc.ctype)
		}
		if !strings.Contains(string(body), tc.contains) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "connect-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", tc.path, csp)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", tc.path)
		}
	}
}

// TestNoRemoteResources keeps the page self-contained: no CDN, no web
// fonts, nothing fetched from another origin at run time.
func TestNoRemoteResources(t *testing.T) {
	for _, name := range []string{"static/index.html", "static/app.js", "static/app.css"} {
		b, err := files.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"http://", "https://", "//cdn", "@import", "innerHTML", "eval("} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
}
