package web

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	// notFound stands for the API's JSON 404 (httpapi.NotFound): every
	// path that is not a file of the page must reach it.
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, "notFound")
	})
	h := Handler(notFound)
	for _, tc := range []struct {
		path, status, ctype, contains string
	}{
		{"/", "200", "text/html; charset=utf-8", `<script src="/ui/app.js" defer></script>`},
		{"/ui/app.js", "200", "text/javascript; charset=utf-8", "class Stream"},
		{"/ui/app.css", "200", "text/css; charset=utf-8", "--mono"},
		{"/ui/favicon.svg", "200", "image/svg+xml", "<svg"},
		{"/ui/vendor/marked.min.js", "200", "text/javascript; charset=utf-8", "marked v"},
		{"/ui/vendor/purify.min.js", "200", "text/javascript; charset=utf-8", "@license DOMPurify"},
		{"/ui/", "404", "", ""},
		{"/ui/vendor/", "404", "", ""},
		{"/ui/vendor", "404", "", ""},
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
			if string(body) != "notFound" {
				t.Errorf("GET %s: %s %q, not the notFound handler's answer", tc.path, res.Status, body)
			}
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

// A Range header is ignored: the whole file, 200. http.ServeFileFS
// answered a range past the end with a plain-text 416, where every 4xx
// of the server, the web view's included, is the JSON error shape; the
// files are small and no browser asks for a part of them.
func TestHandlerIgnoresRange(t *testing.T) {
	h := Handler(http.NotFoundHandler())
	for _, path := range []string{"/", "/ui/app.js"} {
		for _, rng := range []string{"bytes=999999999-", "bytes=0-9"} {
			req := httptest.NewRequest("GET", path, nil)
			req.Header.Set("Range", rng)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || rec.Header().Get("Content-Range") != "" || rec.Body.Len() < 100 {
				t.Errorf("GET %s, Range %s: %d, Content-Range %q, %d bytes %q; want 200 and the whole file",
					path, rng, rec.Code, rec.Header().Get("Content-Range"), rec.Body.Len(), rec.Body.String()[:min(rec.Body.Len(), 60)])
			}
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

// TestVendored checks the vendored libraries against static/vendor/VERSIONS
// (written by scripts/vendor-web.sh): each file is the one recorded, with
// its licence header naming the recorded version, and the page loads each
// before app.js. A hand edit, or an upgrade that skipped the script,
// fails here.
func TestVendored(t *testing.T) {
	versions, err := files.ReadFile("static/vendor/VERSIONS")
	if err != nil {
		t.Fatal(err)
	}
	index, err := files.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	header := map[string]string{"marked": "marked v%s", "dompurify": "DOMPurify %s"}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(versions))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 5 {
			t.Fatalf("VERSIONS line %q: want name version integrity file sha256", line)
		}
		name, version, integrity, file, sum := f[0], f[1], f[2], f[3], f[4]
		n++
		b, err := files.ReadFile("static/vendor/" + file)
		if err != nil {
			t.Fatal(err)
		}
		if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s: sha256 %x; VERSIONS says %s (re-run make web-vendor)", file, got, sum)
		}
		if !strings.HasPrefix(integrity, "sha512-") {
			t.Errorf("%s: integrity %q", name, integrity)
		}
		want := strings.Replace(header[name], "%s", version, 1)
		if head := string(b[:min(len(b), 300)]); header[name] == "" || !strings.Contains(head, want) {
			t.Errorf("%s: licence header lacks %q", file, want)
		}
		if _, err := files.ReadFile("static/vendor/" + name + ".LICENSE"); err != nil {
			t.Errorf("%s: no licence file: %v", name, err)
		}
		script := `<script src="/ui/vendor/` + file + `" defer></script>`
		if i, j := strings.Index(string(index), script), strings.Index(string(index), `<script src="/ui/app.js"`); i < 0 || i > j {
			t.Errorf("index.html does not load %s before app.js", file)
		}
	}
	if n != 2 {
		t.Errorf("VERSIONS lists %d libraries; want marked and dompurify", n)
	}
}
