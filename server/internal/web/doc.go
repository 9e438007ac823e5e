// Package web is rein-server's web view: a page that lists sessions (with
// a "needs you" badge on those waiting for a permission answer), creates
// and deletes them, and follows one session's artifact stream, embedded
// in the binary with go:embed. It is plain HTML, CSS and JavaScript with
// no build step and nothing loaded from elsewhere at run time.
//
// The files hold no data: the page fetches everything from the API with
// the client token the user types in (kept in sessionStorage), and opens
// streams with stream tickets because EventSource cannot send headers. So
// the files are served without authentication.
//
// Agent text is rendered as Markdown by two vendored libraries in
// static/vendor: marked (Markdown to HTML) and DOMPurify (sanitises that
// HTML into DOM nodes). They are the npm packages' own minified browser
// builds with their licence headers, plus their licence files; VERSIONS
// records each one's version, the npm tarball's integrity hash and the
// SHA-256 of the file as vendored, and TestVendored checks the files
// against it. To upgrade: change MARKED_VERSION or DOMPURIFY_VERSION in the
// root Makefile, run `make web-vendor` (scripts/vendor-web.sh: npm pack,
// copy, write VERSIONS), read the libraries' release notes for changed
// options (app.js's markdown block sets them: raw HTML escaped, a tag
// allow-list, http/https/mailto links only), and run `make test-browser`,
// whose hostile-content step must still pass. The Content-Security-Policy
// needs no change: the files are served from this origin and run no
// inline script.
//
// It imports only the standard library.
package web
