# agentd alone: a static binary on an empty base, as an unprivileged user.
# Its useful form is a stage other images copy it from (see
# agent-claude-codex.Dockerfile); the image itself runs
# `agentd --version` by default. Build from the repository root:
#
#   docker build -f deploy/agentd.Dockerfile -t rein-agentd .
ARG GO_VERSION=1.26
FROM docker.io/library/golang:${GO_VERSION} AS build
ARG VERSION=dev
WORKDIR /src
COPY go.work go.work.sum ./
COPY protocol protocol
COPY agentd agentd
COPY reducer/go.mod reducer/
COPY server/go.mod server/go.sum server/
COPY e2e/go.mod e2e/go.sum e2e/
WORKDIR /src/agentd
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/agentd ./cmd/agentd

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/agentd /usr/local/bin/agentd
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/agentd"]
CMD ["--version"]
