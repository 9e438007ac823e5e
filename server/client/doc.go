// Package client is a small Go client for rein-server's client API: the
// session routes, commands, artifacts, and the two client streams (the
// artifact stream and the session stream) with exact resume by
// Last-Event-ID and reconnects with capped, jittered exponential backoff.
//
// It is what the rein command line is built on, and is meant to be used by
// other Go programs too. It imports protocol and the standard library only.
package client
