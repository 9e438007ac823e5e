# Rein monorepo. `go test ./...` does not work at a go.work root, so every
# target names the modules (./server/... and so on) or loops over them.
# `make test` is the README's (and CI's) test command and must pass on a
# fresh clone with only Go installed: whatever a test needs beyond Go, a
# target here installs.

MODULES   := protocol reducer server agentd e2e
UNIT      := protocol reducer server agentd
GO        ?= go
BIN       := $(CURDIR)/bin
TOOLS     := $(BIN)/tools
ACP_SDK_VERSION := v0.13.0
# The ACP example agent is a real ACP peer for agentd's adapter tests.
ACP_AGENT := $(TOOLS)/acp-example-agent

export REIN_ACP_AGENT := $(ACP_AGENT)

.PHONY: all test unit e2e e2e-then-pg test-pg lint build run demo bench soak tools fuzz clean browser-deps pg-deps test-browser web-screenshot web-vendor disk-deps test-agents test-agent-claude image image-deps test-image static

# The version every binary reports with --version; the Go code defaults to
# "dev" plus the build info when a build does not set it.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# main.version in every binary but demo-agent, whose main.version is the
# agent version it reports to the server (-X on a missing name is ignored).
LDFLAGS := -X main.version=$(VERSION) -X main.buildVersion=$(VERSION)

all: lint test

# make test runs two lanes at once: the four modules' tests (unit), and
# e2e followed by the PostgreSQL pass (e2e-then-pg). One after the other
# they kept 1.1-1.55 of the 2 cores busy (e2e's tests mostly wait on a
# turn's pace or a partition; the unit packages queue behind the server's
# long one) and took 941 s; in two lanes the same tests took 651-687 s in
# three runs, the unit lane 518-550 s of it (2-core VM, warm build cache,
# no cached test result, 2026-12-08). Two sub-makes in the second lane,
# not one with -j, so that e2e and test-pg stay one after the other: a
# third lane would only share the same two cores. make runs the lanes' go
# tests in the foreground process group, so an interrupt stops both.
test: tools browser-deps pg-deps image-deps disk-deps
	@$(MAKE) --no-print-directory -j2 unit e2e-then-pg

e2e-then-pg:
	@$(MAKE) --no-print-directory e2e && $(MAKE) --no-print-directory test-pg

# unit and e2e need the ACP example agent (REIN_ACP_AGENT is always set,
# so a missing one fails its test rather than skipping it).
# One go test over the four modules (go.work resolves the patterns), not
# one a module: it runs two packages at a time across them, so agentd's
# and the small modules' packages run beside the server's long one instead
# of after it (about a minute less of make test on 2 cores).
# go test's default -timeout is 10 minutes for a test binary. The server
# package takes about 3.5 minutes alone, but 9-12 under -race on a
# 2-core machine with a load average of 15 (and e2e 8): a busy CI runner
# would kill a passing run. TEST_TIMEOUT bounds a hung test instead, well
# within CI's 90 minutes.
TEST_TIMEOUT ?= 25m

# The race detector everywhere but in modernc.org/sqlite/lib, SQLite
# transpiled from C: nearly all its accesses are to memory it maps itself,
# outside Go's heap, which the detector's check finds out of its range and
# ignores. So instrumenting it cost time and found next to nothing:
# server/internal/sqlite's TestConformance took 71 s under -race and 23 s
# so (2026-12-07). Our code calling it stays instrumented, and so do the
# driver (modernc.org/sqlite) and its C library: built without -race
# too, the driver made the detector report races that are none (a
# prometheus counter added to after the mutex it was created under),
# most likely as the sync and atomics inlined into it escape the detector
# then. e2e's binaries are built the same way (e2e/build.go, raceFlags).
RACE := -race -gcflags=modernc.org/sqlite/lib=-race=false

unit: tools
	@echo "== go test $(UNIT)"; $(GO) test $(RACE) -timeout $(TEST_TIMEOUT) $(addprefix ./,$(addsuffix /...,$(UNIT)))

# e2e builds the real binaries; -count=1 because go test would cache a test
# whose inputs (the other modules) it cannot see. -parallel 4: e2e's
# parallel tests mostly wait (a turn streamed at a fixed pace, a partition
# held), and with go test's default of one per core two that wait 30-40 s
# held both places while the rest queued: its 23 parallel tests took
# 73-85 s so and 57-59 s four at a time (6 and 8 made no difference; the
# longest test is 40 s), on 2 cores (2026-12-08). Within a whole make
# test, where other packages' tests fill the cores too, it bought less:
# the e2e package took 343 s against 350 s in the run before.
E2E_PARALLEL := -parallel 4
e2e: tools
	@echo "== go test e2e"; cd e2e && $(GO) test $(RACE) $(E2E_PARALLEL) -count=1 -timeout $(TEST_TIMEOUT) ./...

# The server suite again on PostgreSQL (REIN_TEST_DB), and the e2e
# scenarios that kill or restart the server or race two agentds
# (REIN_E2E_DB), each on a throwaway cluster (server/pgtest). The whole e2e
# suite runs on PostgreSQL with REIN_E2E_DB=postgres make e2e.
test-pg:
	@echo "== go test server on PostgreSQL"; cd server && REIN_TEST_DB=postgres $(GO) test -count=1 -timeout $(TEST_TIMEOUT) .
	@echo "== go test e2e on PostgreSQL"; cd e2e && REIN_E2E_DB=postgres $(GO) test $(RACE) $(E2E_PARALLEL) -count=1 -timeout $(TEST_TIMEOUT) -run '^(TestHappyPath|TestServerKilledMidTurn|TestServerKilledDuringBigOutput|TestServerKilledDuringBinaryOutput|TestAgentdTakeover|TestBootstrapTimeout|TestNetworkPartition)$$' .

lint:
	@if git grep -n -E '^(<<<<<<<|>>>>>>>) ' >/dev/null 2>&1; then echo "merge conflict markers:"; git grep -n -E '^(<<<<<<<|>>>>>>>) '; exit 1; fi
	@set -e; out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@set -e; for m in $(MODULES); do echo "== vet + GOWORK=off build $$m"; (cd $$m && $(GO) vet ./... && GOWORK=off $(GO) build ./...); done

build:
	@mkdir -p $(BIN)
	cd server && $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...
	cd agentd && $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# Static agentd and demo-agent for images built from host binaries
# (deploy/agentd-prebuilt.Dockerfile, deploy/demo.Dockerfile).
static:
	@mkdir -p $(BIN)/static
	cd agentd && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o $(BIN)/static/ ./cmd/agentd ./cmd/demo-agent

# exec: the shell becomes the server, so Ctrl-C (SIGINT) and SIGTERM reach
# it and it shuts down cleanly. RUN_ARGS are passed on
# (make run RUN_ARGS='--port 0 --log-level debug').
run: build
	exec $(BIN)/rein-server $(RUN_ARGS)

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

# The PostgreSQL tests (server/pgtest starts a throwaway cluster per test
# binary, as the postgres user when root) need Debian's postgresql server.
# Installed only when missing; where apt-get cannot run this warns and those
# tests skip saying why (on CI, CI=true, they fail instead: they must run).
# REIN_PG_BIN points the tests at another directory holding initdb/postgres.
pg-deps:
	@if [ -n "$$REIN_PG_BIN" ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "== installing postgresql for the PostgreSQL tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || \
			echo "warning: could not install postgresql; the PostgreSQL tests will be skipped (and fail on CI)"; \
	else \
		echo "warning: PostgreSQL server binaries missing and apt-get is not usable here (needs root on Debian):"; \
		echo "         the PostgreSQL tests will be skipped (set REIN_PG_BIN to a directory with initdb and postgres)"; \
	fi

# agentd's tests of a state dir whose disk fails (agentd/internal/fulldisk)
# mount a tmpfs and an ext4 image on a loop device: they need root, losetup
# (Debian's mount) and mkfs.ext4 (e2fsprogs). Installed only when missing;
# where apt-get cannot run this warns and those tests skip saying why (on
# CI they fail instead).
disk-deps:
	@if command -v mkfs.ext4 >/dev/null && command -v losetup >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "== installing e2fsprogs and mount for the failing-disk tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq e2fsprogs mount >/dev/null || \
			echo "warning: could not install e2fsprogs/mount; the failing-disk tests will be skipped (and fail on CI)"; \
	else \
		echo "warning: mkfs.ext4 or losetup missing and apt-get is not usable here (needs root on Debian):"; \
		echo "         agentd's failing-disk tests will be skipped"; \
	fi

test-browser: browser-deps
	cd e2e && $(GO) test $(RACE) -count=1 -run '^TestBrowser$$' -v .

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

# Six minutes of agent turns and reconnecting followers on one server (README, Soak).
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
CODEX_VERSION := 0.171.0
CODEX_PREFIX  := $(TOOLS)/npm/codex
CODEX_BIN     := $(CODEX_PREFIX)/node_modules/.bin/codex

$(CODEX_PREFIX)/.installed-$(CODEX_VERSION):
	@mkdir -p $(CODEX_PREFIX)
	npm install --prefix $(CODEX_PREFIX) --no-audit --no-fund --loglevel=error @openai/codex@$(CODEX_VERSION)
	@touch $@

# Against the fake Responses API in agentd/internal/fakemodel; the matrix
# rows are TestCodexCLISession's subtests. RECORD=1 rewrites
# agentd/internal/codex/testdata from the run.
test-agent-codex: $(CODEX_PREFIX)/.installed-$(CODEX_VERSION)
	@echo "== $$($(CODEX_BIN) --version) against agentd/internal/codex"
	@cd agentd && REIN_CODEX_BIN=$(CODEX_BIN) $(GO) test $(RACE) -count=1 -v -run 'TestCodexCLI|TestReplay' ./internal/codex $(if $(RECORD),-args -record) >$(BIN)/test-agent-codex.log 2>&1; \
		rc=$$?; grep -E '^\s*--- |^(ok|FAIL|PASS)' $(BIN)/test-agent-codex.log; \
		[ $$rc = 0 ] || echo "full log: $(BIN)/test-agent-codex.log"; exit $$rc

# claude-agent-acp (ACP adapter) against the fake Anthropic API in
# agentd/internal/fakemodel, in mode "default" (--acp-mode): the matrix rows
# are TestClaudeAgentACPMatrix's subtests. RECORD=1 rewrites
# agentd/internal/acp/testdata/claude-agent-acp.*, which `make test` replays.
.PHONY: test-agent-claude-agent-acp
test-agents: test-agent-claude-agent-acp
CLAUDE_AGENT_ACP_VERSION := 0.101.0
CLAUDE_AGENT_ACP_PREFIX  := $(NPM_TOOLS)/claude-agent-acp
CLAUDE_AGENT_ACP_BIN     := $(CLAUDE_AGENT_ACP_PREFIX)/node_modules/.bin/claude-agent-acp

$(CLAUDE_AGENT_ACP_PREFIX)/.installed-$(CLAUDE_AGENT_ACP_VERSION):
	@mkdir -p $(CLAUDE_AGENT_ACP_PREFIX)
	npm install --prefix $(CLAUDE_AGENT_ACP_PREFIX) --no-audit --no-fund --loglevel=error @agentclientprotocol/claude-agent-acp@$(CLAUDE_AGENT_ACP_VERSION)
	@touch $@

test-agent-claude-agent-acp: $(CLAUDE_AGENT_ACP_PREFIX)/.installed-$(CLAUDE_AGENT_ACP_VERSION)
	@echo "== claude-agent-acp $(CLAUDE_AGENT_ACP_VERSION) against agentd/internal/acp"
	@cd agentd && REIN_CLAUDE_AGENT_ACP_BIN=$(CLAUDE_AGENT_ACP_BIN) $(GO) test -count=1 -v -run 'TestClaudeAgentACP|TestReplay' ./internal/acp/ $(if $(RECORD),-args -record) >$(BIN)/test-agent-claude-agent-acp.log 2>&1; \
		rc=$$?; grep -E '^\s*--- |^(ok|FAIL|PASS)' $(BIN)/test-agent-claude-agent-acp.log; \
		[ $$rc = 0 ] || echo "full log: $(BIN)/test-agent-claude-agent-acp.log"; exit $$rc

# codex-acp (ACP adapter over Codex) against the fake OpenAI Responses API
# in agentd/internal/fakemodel, in mode "workspace-write" (--acp-mode; its
# default mode never asks): the matrix rows are TestCodexACPMatrix's
# subtests. Its package brings its own @openai/codex. RECORD=1 rewrites
# agentd/internal/acp/testdata/codex-acp.*, which `make test` replays.
.PHONY: test-agent-codex-acp
test-agents: test-agent-codex-acp
CODEX_ACP_VERSION := 2.6.0
CODEX_ACP_PREFIX  := $(NPM_TOOLS)/codex-acp
CODEX_ACP_BIN     := $(CODEX_ACP_PREFIX)/node_modules/.bin/codex-acp

$(CODEX_ACP_PREFIX)/.installed-$(CODEX_ACP_VERSION):
	@mkdir -p $(CODEX_ACP_PREFIX)
	npm install --prefix $(CODEX_ACP_PREFIX) --no-audit --no-fund --loglevel=error @agentclientprotocol/codex-acp@$(CODEX_ACP_VERSION)
	@touch $@

test-agent-codex-acp: $(CODEX_ACP_PREFIX)/.installed-$(CODEX_ACP_VERSION)
	@echo "== $$($(CODEX_ACP_BIN) --version) against agentd/internal/acp"
	@cd agentd && REIN_CODEX_ACP_BIN=$(CODEX_ACP_BIN) $(GO) test -count=1 -v -run 'TestCodexACP|TestReplay' ./internal/acp/ $(if $(RECORD),-args -record) >$(BIN)/test-agent-codex-acp.log 2>&1; \
		rc=$$?; grep -E '^\s*--- |^(ok|FAIL|PASS)' $(BIN)/test-agent-codex-acp.log; \
		[ $$rc = 0 ] || echo "full log: $(BIN)/test-agent-codex-acp.log"; exit $$rc

# Gemini CLI over ACP (`gemini --acp`) against the fake Gemini API in
# agentd/internal/fakemodel/gemini.go: TestGeminiMatrix's subtests are the
# matrix rows. RECORD=1 rewrites agentd/internal/acp/testdata/gemini.*,
# which `make test` replays.
.PHONY: test-agent-gemini
test-agents: test-agent-gemini
GEMINI_CLI_VERSION := 0.61.0
GEMINI_PREFIX      := $(NPM_TOOLS)/gemini
GEMINI_BIN         := $(GEMINI_PREFIX)/node_modules/.bin/gemini

$(GEMINI_PREFIX)/.installed-$(GEMINI_CLI_VERSION):
	@mkdir -p $(GEMINI_PREFIX)
	npm install --prefix $(GEMINI_PREFIX) --no-audit --no-fund --loglevel=error @google/gemini-cli@$(GEMINI_CLI_VERSION)
	@touch $@

test-agent-gemini: $(GEMINI_PREFIX)/.installed-$(GEMINI_CLI_VERSION)
	@echo "== gemini $(GEMINI_CLI_VERSION) against agentd/internal/acp"
	@cd agentd && REIN_TEST_WAIT_TIMEOUT=2m REIN_GEMINI_BIN=$(GEMINI_BIN) $(GO) test -count=1 -v -run 'TestGemini|TestReplay' ./internal/acp/ $(if $(RECORD),-args -record) >$(BIN)/test-agent-gemini.log 2>&1; \
		rc=$$?; grep -E '^\s*--- |^(ok|FAIL|PASS)' $(BIN)/test-agent-gemini.log; \
		[ $$rc = 0 ] || echo "full log: $(BIN)/test-agent-gemini.log"; exit $$rc

# opencode over ACP (`opencode acp`) against the fake Anthropic API, its
# config (provider base URL, permissions that ask) in
# OPENCODE_CONFIG_CONTENT and temporary XDG dirs: TestOpencodeMatrix's
# subtests are the matrix rows. The package ships a ~180 MB binary that
# starts slowly on a loaded machine, hence the longer wait bound.
# RECORD=1 rewrites agentd/internal/acp/testdata/opencode.*.
.PHONY: test-agent-opencode
test-agents: test-agent-opencode
OPENCODE_VERSION := 1.18.33
OPENCODE_PREFIX  := $(NPM_TOOLS)/opencode
OPENCODE_BIN     := $(OPENCODE_PREFIX)/node_modules/.bin/opencode

$(OPENCODE_PREFIX)/.installed-$(OPENCODE_VERSION):
	@mkdir -p $(OPENCODE_PREFIX)
	npm install --prefix $(OPENCODE_PREFIX) --no-audit --no-fund --loglevel=error opencode-ai@$(OPENCODE_VERSION)
	@touch $@

test-agent-opencode: $(OPENCODE_PREFIX)/.installed-$(OPENCODE_VERSION)
	@echo "== opencode $(OPENCODE_VERSION) against agentd/internal/acp"
	@cd agentd && REIN_TEST_WAIT_TIMEOUT=2m REIN_OPENCODE_BIN=$(OPENCODE_BIN) $(GO) test -count=1 -v -run 'TestOpencode|TestReplay' ./internal/acp/ $(if $(RECORD),-args -record) >$(BIN)/test-agent-opencode.log 2>&1; \
		rc=$$?; grep -E '^\s*--- |^(ok|FAIL|PASS)' $(BIN)/test-agent-opencode.log; \
		[ $$rc = 0 ] || echo "full log: $(BIN)/test-agent-opencode.log"; exit $$rc

# Runs every fuzz target of the modules for FUZZTIME (default 30s) each.
# The targets are found in the sources, so a new one is fuzzed without an
# edit here; the name is anchored, as -fuzz refuses a pattern that matches
# two targets (FuzzDecodeCommand and FuzzDecodeCommandReference).
FUZZTIME ?= 30s
fuzz:
	@grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' protocol reducer server agentd | sort | \
	while IFS=: read -r file fn; do \
		name=$${fn#func }; dir=./$$(dirname $$file); \
		echo "== fuzz $$name in $$dir for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$dir || exit 1; \
	done

# Container images (deploy/*.Dockerfile) with whichever builder works
# here: docker (with a reachable daemon), podman, or buildah. The builds
# pull golang:1.26 and, for the agent example, node:22-bookworm-slim.
IMAGE_BUILDER ?= $(shell if command -v docker >/dev/null && docker info >/dev/null 2>&1; then echo docker build; \
	elif command -v podman >/dev/null; then echo podman build; elif command -v buildah >/dev/null; then echo "buildah bud"; fi)
IMAGE_TAG ?= $(VERSION)

image:
	@[ -n "$(IMAGE_BUILDER)" ] || { echo "make image: no docker (with a daemon), podman or buildah found"; exit 1; }
	$(IMAGE_BUILDER) --build-arg VERSION=$(VERSION) -f deploy/rein-server.Dockerfile -t rein-server:$(IMAGE_TAG) .
	$(IMAGE_BUILDER) --build-arg VERSION=$(VERSION) -f deploy/agentd.Dockerfile -t rein-agentd:$(IMAGE_TAG) -t rein-agentd .

# The image test (e2e TestImageAgentdScratch) builds a FROM scratch agentd
# image with buildah or podman and runs agentd --version from its exported
# file system. buildah is installed from Debian when neither is there; where
# apt-get cannot run (not root, not Debian) this warns and the test skips.
image-deps:
	@if command -v buildah >/dev/null || command -v podman >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "== installing buildah for the image test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null || \
			echo "warning: could not install buildah; the image test will be skipped"; \
	else \
		echo "warning: buildah/podman missing and apt-get is not usable here (needs root on Debian):"; \
		echo "         the image test will be skipped"; \
	fi

test-image: image-deps
	cd e2e && $(GO) test -count=1 -run '^TestImage' -v .

clean:
	rm -rf $(BIN)
