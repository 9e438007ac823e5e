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

.PHONY: all test unit e2e lint build run demo bench soak tools fuzz clean browser-deps test-browser web-screenshot web-vendor test-agents test-agent-claude

all: lint test

test: tools browser-deps unit e2e

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

# A real server, agentd and demo-agent; a prompt that runs `ls -la`, shown
# by `rein watch`. Everything started is stopped on exit (see the script).
demo: build
	BIN=$(BIN) ./scripts/demo.sh

# The browser test (e2e/browser_test.go) drives headless Chromium through
# chromedriver. Installed from Debian only when missing; where apt-get
# cannot run (not root, not Debian) this warns, and the test skips saying
# why. REIN_CHROMIUM / REIN_CHROMEDRIVER point the test at other binaries.
browser-deps:
	@if [ -n "$$REIN_CHROMIUM" ] || { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "== installing chromium and chromium-driver for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null || \
			echo "warning: could not install chromium; the browser test will be skipped"; \
	else \
		echo "warning: chromium/chromedriver missing and apt-get is not usable here (needs root on Debian):"; \
		echo "         the browser test will be skipped (set REIN_CHROMIUM and REIN_CHROMEDRIVER to run it)"; \
	fi

test-browser: browser-deps
	cd e2e && $(GO) test -race -count=1 -run '^TestBrowser$$' -v .

# Runs the browser test and copies its screenshots to docs/ (web-view.png, web-view-sessions.png, inbox.png: the README's).
web-screenshot: browser-deps
	cd e2e && REIN_DOCS_SCREENSHOT=$(CURDIR)/docs/web-view.png $(GO) test -count=1 -run '^TestBrowser$$' .

# The web view's vendored Markdown renderer and sanitiser
# (server/internal/web/static/vendor). Not part of the build: the files are
# committed. To upgrade, change a version here and run `make web-vendor`.
MARKED_VERSION    := 18.2.1
DOMPURIFY_VERSION := 3.5.0

web-vendor:
	MARKED_VERSION=$(MARKED_VERSION) DOMPURIFY_VERSION=$(DOMPURIFY_VERSION) ./scripts/vendor-web.sh

# The agent adapters against the real agent CLIs. The CLIs are large npm
# packages, so `make test` does not install them: it replays the transcripts
# these runs recorded (agentd/internal/<agent>/testdata). RECORD=1 rewrites
# the transcripts. Each agent adds itself to AGENTS with a
# test-agent-<name> target; a run's full log is bin/test-agent-<name>.log.
AGENTS += claude
NPM_TOOLS := $(TOOLS)/npm
CLAUDE_CODE_VERSION := 2.1.330
CLAUDE_BIN := $(NPM_TOOLS)/node_modules/.bin/claude

test-agents: $(addprefix test-agent-,$(AGENTS))

$(NPM_TOOLS)/.claude-code-$(CLAUDE_CODE_VERSION):
	@mkdir -p $(NPM_TOOLS)
	npm install --prefix $(NPM_TOOLS) --no-fund --no-audit @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION)
	@touch $@

test-agent-claude: $(NPM_TOOLS)/.claude-code-$(CLAUDE_CODE_VERSION)
	@echo "== claude $$($(CLAUDE_BIN) --version) against agentd/internal/claude"
	@cd agentd && REIN_CLAUDE_BIN=$(CLAUDE_BIN) $(GO) test -count=1 -v -run 'TestClaude|TestReplay|TestArgs' ./internal/claude/ $(if $(RECORD),-args -record) >$(BIN)/test-agent-claude.log 2>&1; \
		rc=$$?; grep -E '^\s*--- |^(ok|FAIL|PASS)' $(BIN)/test-agent-claude.log; \
		[ $$rc = 0 ] || echo "full log: $(BIN)/test-agent-claude.log"; exit $$rc

# Both write bin/bench.json, each its own keys (soak: the "soak" section).
# Flags pass through, e.g. make bench BENCH_FLAGS='-runs 1 -scale 0.5' or
# make soak SOAK_FLAGS='-duration 2m' (see -h of each).
BENCH_FLAGS ?=
SOAK_FLAGS  ?=

bench: build
	cd e2e && $(GO) run ./cmd/rein-bench -bin $(BIN) -out $(BIN)/bench.json $(BENCH_FLAGS)

# Six minutes of agent turns and reconnecting followers on one server (issue 19).
soak: build
	cd e2e && $(GO) run ./cmd/rein-soak -bin $(BIN) -out $(BIN)/bench.json $(SOAK_FLAGS)

tools: $(ACP_AGENT)

$(ACP_AGENT):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) GOWORK=off $(GO) install github.com/coder/acp-go-sdk/example/agent@$(ACP_SDK_VERSION)
	mv $(TOOLS)/agent $(ACP_AGENT)

# Agent adapters against the real CLIs (large downloads, so not in `make
# test`; there the CLI tests skip and replay recorded transcripts instead).
# test-agent-claude (the Claude Code adapter) joins test-agents too.
.PHONY: test-agents test-agent-codex
test-agents: test-agent-codex

# The Codex CLI from npm, pinned: its package ships the platform binary.
# Its own prefix, so other npm tools under $(TOOLS)/npm are left alone.
CODEX_VERSION := 0.169.0
CODEX_PREFIX  := $(TOOLS)/npm/codex
CODEX_BIN     := $(CODEX_PREFIX)/node_modules/.bin/codex

$(CODEX_PREFIX)/.installed-$(CODEX_VERSION):
	@mkdir -p $(CODEX_PREFIX)
	npm install --prefix $(CODEX_PREFIX) --no-audit --no-fund --loglevel=error @openai/codex@$(CODEX_VERSION)
	@touch $@

# -record also rewrites agentd/internal/codex/testdata from the run.
test-agent-codex: $(CODEX_PREFIX)/.installed-$(CODEX_VERSION)
	cd agentd && REIN_CODEX_BIN=$(CODEX_BIN) $(GO) test -race -count=1 -v -run 'TestCodexCLI|TestReplay' ./internal/codex $(if $(RECORD),-args -record)

# Runs each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	cd protocol && $(GO) test -run '^$$' -fuzz FuzzDecodeEvents -fuzztime $(FUZZTIME) .
	cd protocol && $(GO) test -run '^$$' -fuzz FuzzDecodeCommand -fuzztime $(FUZZTIME) .
	cd reducer && $(GO) test -run '^$$' -fuzz FuzzFold -fuzztime $(FUZZTIME) .

clean:
	rm -rf $(BIN)
