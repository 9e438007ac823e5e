# Rein monorepo. `go test ./...` does not work at a go.work root, so every
# target loops over the modules. `make test` is the README's (and CI's) test
# command and must pass on a fresh clone with only Go installed: whatever a
# test needs beyond Go, a target here installs.

MODULES   := protocol reducer server agentd e2e
UNIT      := protocol reducer server agentd
GO        ?= go
BIN       := $(CURDIR)/bin
TOOLS     := $(BIN)/tools
ACP_SDK_VERSION := v0.13.0
# The ACP example agent is a real ACP peer for agentd's adapter tests.
ACP_AGENT := $(TOOLS)/acp-example-agent

export REIN_ACP_AGENT := $(ACP_AGENT)

.PHONY: all test unit e2e lint build run bench tools fuzz clean

all: lint test

test: tools unit e2e

unit:
	@set -e; for m in $(UNIT); do echo "== go test $$m"; (cd $$m && $(GO) test -race ./...); done

# e2e builds the real binaries; -count=1 because go test would cache a test
# whose inputs (the other modules) it cannot see.
e2e:
	@echo "== go test e2e"; cd e2e && $(GO) test -race -count=1 ./...

lint:
	@set -e; out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@set -e; for m in $(MODULES); do echo "== vet + GOWORK=off build $$m"; (cd $$m && $(GO) vet ./... && GOWORK=off $(GO) build ./...); done

build:
	@mkdir -p $(BIN)
	cd server && $(GO) build -o $(BIN)/ ./cmd/...
	cd agentd && $(GO) build -o $(BIN)/ ./cmd/...

run:
	cd server && $(GO) run ./cmd/rein-server

bench: build
	cd e2e && $(GO) run ./cmd/rein-bench -bin $(BIN) -out $(BIN)/bench.json

tools: $(ACP_AGENT)

$(ACP_AGENT):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) GOWORK=off $(GO) install github.com/coder/acp-go-sdk/example/agent@$(ACP_SDK_VERSION)
	mv $(TOOLS)/agent $(ACP_AGENT)

# Runs each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	cd protocol && $(GO) test -run '^$$' -fuzz FuzzDecodeEvents -fuzztime $(FUZZTIME) .
	cd protocol && $(GO) test -run '^$$' -fuzz FuzzDecodeCommand -fuzztime $(FUZZTIME) .
	cd reducer && $(GO) test -run '^$$' -fuzz FuzzFold -fuzztime $(FUZZTIME) .

clean:
	rm -rf $(BIN)
