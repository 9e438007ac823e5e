package main

import "github.com/rein-ai/rein/protocol"

// version is set by the build: go build -ldflags "-X main.version=v1.2.3"
// (the Makefile passes `git describe`). Left at "dev", versionString adds
// what the Go toolchain recorded: the VCS revision and the Go version.
var version = "dev"

// versionString is what --version prints (protocol.BinaryVersion).
func versionString() string { return protocol.BinaryVersion(version) }
