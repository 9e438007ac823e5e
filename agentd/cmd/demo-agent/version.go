package main

import "github.com/rein-ai/rein/protocol"

// buildVersion is set by the build: go build -ldflags "-X main.buildVersion=v1.2.3"
// (the Makefile passes `git describe`). Left at "dev", versionString adds
// what the Go toolchain recorded. (version, the agent version reported in
// agent_started, is the behaviour NATIVE.md documents and stays fixed.)
var buildVersion = "dev"

// versionString is what --version prints (protocol.BinaryVersion).
func versionString() string { return protocol.BinaryVersion(buildVersion) }
