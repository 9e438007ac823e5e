package web

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var files embed.FS

// AssetPrefix is the path the page's assets are served under. It must not
// collide with the API (/sessions, /healthz).
const AssetPrefix = "/ui/"

// Handler serves the page at "/" and its files under AssetPrefix; any
// other path, a directory among them, goes to notFound, so that a missing
// file gets the API's JSON 404 and no directory is listed. It only answers
// GET and HEAD (the router mounts it for those).
func Handler(notFound http.Handler) http.Handler {
	static, _ := fs.Sub(files, "static") // a constant, checked by the tests
	assets := http.StripPrefix(AssetPrefix, http.FileServerFS(static))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secure(w.Header())
		// The whole file, always (a server may ignore Range): a range
		// past its end got http.ServeContent's plain-text 416, where
		// every error of the server is JSON; the files are small, and no
		// browser asks for part of a script or a page.
		r.Header.Del("Range")
		r.Header.Del("If-Range")
		switch {
		case r.URL.Path == "/":
			http.ServeFileFS(w, r, static, "index.html")
		case strings.HasPrefix(r.URL.Path, AssetPrefix) && isFile(static, strings.TrimPrefix(r.URL.Path, AssetPrefix)):
			assets.ServeHTTP(w, r)
		default:
			notFound.ServeHTTP(w, r)
		}
	})
}

// isFile reports whether name is a regular file of fsys. http.FileServerFS
// alone answered a missing file with a plain-text 404 and a directory
// (/ui/vendor/) with a listing of its files.
func isFile(fsys fs.FS, name string) bool {
	if !fs.ValidPath(name) {
		return false
	}
	st, err := fs.Stat(fsys, name)
	return err == nil && st.Mode().IsRegular()
}

// secure sets the headers every answer gets. Embedded files have no
// modification time, so without no-cache a browser could keep an old page
// after an upgrade; they are small. The policy allows only this origin:
// the page runs no inline script and loads nothing from elsewhere, so an
// injected string cannot run code or send the token anywhere.
func secure(h http.Header) {
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
}
