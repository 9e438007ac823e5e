// Package web is rein-server's web view: a page that lists sessions and
// follows one session's artifact stream, embedded in the binary with
// go:embed. It is plain HTML, CSS and JavaScript with no build step and
// nothing loaded from elsewhere at run time.
//
// The files hold no data: the page fetches everything from the API with
// the client token the user types in (kept in sessionStorage), and opens
// streams with stream tickets because EventSource cannot send headers. So
// the files are served without authentication.
//
// It imports only the standard library.
package web
