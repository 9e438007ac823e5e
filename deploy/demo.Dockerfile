# agentd with the demo agent, from binaries built on the host (no registry
# needed), for a local trial (README.md, "Local trial"):
#
#   make static     # bin/static/agentd and bin/static/demo-agent, CGO_ENABLED=0
#   docker build -f deploy/demo.Dockerfile -t rein-demo bin/static
#
# The demo agent's `run: CMD` needs a shell, which scratch does not have;
# plain prompts, ask:, slow: and plan: work.
FROM scratch
COPY agentd demo-agent /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/agentd", "--", "/usr/local/bin/demo-agent"]
