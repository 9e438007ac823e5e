// Package metrics is the Prometheus adapter: it implements the observer
// interfaces of the domain (package server) and of internal/httpapi with
// client_golang collectors, and serves them in the exposition format.
//
// It may import protocol and client_golang; nothing else in the server
// imports client_golang, so the domain stays free of it. Every method the
// hot paths call is an atomic add on a collector resolved at construction:
// no allocation, no lock, no label lookup per event.
package metrics
