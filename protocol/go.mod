module github.com/rein-ai/rein/protocol

go 1.26
