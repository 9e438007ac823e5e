module github.com/rein-ai/rein/server

go 1.26

require (
	github.com/rein-ai/rein/protocol v0.0.0
	github.com/rein-ai/rein/reducer v0.0.0
)

replace github.com/rein-ai/rein/protocol => ../protocol

replace github.com/rein-ai/rein/reducer => ../reducer
