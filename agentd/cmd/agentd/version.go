package main

import "github.com/rein-ai/rein/protocol"

// versionString is what --version prints (protocol.BinaryVersion).
func versionString() string { return protocol.BinaryVersion(version) }
