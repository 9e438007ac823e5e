module github.com/rein-ai/rein/agentd

go 1.26

require github.com/rein-ai/rein/protocol v0.0.0

replace github.com/rein-ai/rein/protocol => ../protocol
