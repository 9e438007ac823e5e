// Package hub fans change records out to stream subscribers without ever
// letting one subscriber slow down the publisher or another subscriber.
//
// Messages are the domain's change records (an event name, the JSON
// payload, a revision): the hub knows no wire format. The adapter that
// streams them frames each message once, on first use, and every
// subscriber shares those bytes (Message.Wire). Each subscriber has a
// bounded queue and a wake-up channel of capacity one: Publish appends
// under a short lock and signals without blocking. A subscriber whose
// queue overflows is dropped (Ready wakes it and Err says so); the client then
// resumes from its Last-Event-ID, so a drop loses nothing. The goroutine
// that drains a subscriber is the stream's own (the HTTP handler), which
// the server tracks and waits for.
//
// It imports the standard library only.
package hub
