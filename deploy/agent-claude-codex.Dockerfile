# An agent image with agentd added: Claude Code and the Codex CLI from npm,
# agentd copied from its own image. Build from the repository root:
#
#   docker build -f deploy/agentd.Dockerfile -t rein-agentd .
#   docker build -f deploy/agent-claude-codex.Dockerfile -t rein-agent .
#
# Run one per session; the platform supplies the session and its sandbox
# token (a file, never an argument), and the agent's API key:
#
#   docker run --rm --add-host=host.docker.internal:host-gateway \
#     -e REIN_SERVER=http://host.docker.internal:4800 -e REIN_SESSION_ID=demo \
#     -e REIN_TOKEN_FILE=/run/rein/token -v "$PWD/demo.token:/run/rein/token:ro" \
#     -e ANTHROPIC_API_KEY rein-agent
#
# For Codex instead: append `--protocol codex -- codex app-server` to the
# run command (it replaces CMD, which holds the protocol and the agent) and
# pass OPENAI_API_KEY. A named volume at /var/lib/rein-agentd keeps
# agentd's outbox and cursor across restarts: add
# `-v rein-state-demo:/var/lib/rein-agentd` (a new volume takes the
# directory's owner, the image's user).
#
# The base images are named in full: buildah and podman refuse a short
# name like golang:1.26 unless registries.conf lists a search registry.
ARG AGENTD_IMAGE=rein-agentd
FROM ${AGENTD_IMAGE} AS agentd

FROM docker.io/library/node:22-bookworm-slim
ARG CLAUDE_CODE_VERSION=2.1.330
ARG CODEX_VERSION=0.171.0
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates git \
 && rm -rf /var/lib/apt/lists/* \
 && npm install -g --no-fund --no-audit @anthropic-ai/claude-code@${CLAUDE_CODE_VERSION} @openai/codex@${CODEX_VERSION} \
 && npm cache clean --force
COPY --from=agentd /usr/local/bin/agentd /usr/local/bin/agentd
RUN mkdir -p /var/lib/rein-agentd && chown node:node /var/lib/rein-agentd
# The image's own unprivileged user: Claude Code refuses to skip permission
# prompts as root, and agentd answers them itself.
ENV DISABLE_AUTOUPDATER=1 REIN_STATE_DIR=/var/lib/rein-agentd
USER node
WORKDIR /home/node/work
# The protocol is in CMD, not ENTRYPOINT, so that arguments given to
# docker run (which replace CMD) can choose another agent whole.
ENTRYPOINT ["agentd"]
CMD ["--protocol", "claude", "--", "claude"]
