module github.com/rein-ai/rein/reducer

go 1.26

require github.com/rein-ai/rein/protocol v0.0.0

replace github.com/rein-ai/rein/protocol => ../protocol
