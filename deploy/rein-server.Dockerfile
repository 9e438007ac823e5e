# rein-server: a static binary (pure-Go SQLite, no cgo) on an empty base,
# running as an unprivileged user. Build from the repository root:
#
#   docker build -f deploy/rein-server.Dockerfile -t rein-server .
#   docker run -p 4800:4800 -v rein-data:/data \
#     -e REIN_API_TOKEN_FILE=/run/secrets/rein-api-token ... rein-server
#
# The image listens on 0.0.0.0:4800 (a container's loopback is its own), so
# it needs a client token: mount one and point REIN_API_TOKEN_FILE at it.
# The database is /data/rein.db; mount a volume there to keep it.
ARG GO_VERSION=1.26
FROM docker.io/library/golang:${GO_VERSION} AS build
ARG VERSION=dev
WORKDIR /src
COPY go.work go.work.sum ./
COPY protocol protocol
COPY reducer reducer
COPY server server
COPY agentd/go.mod agentd/go.sum agentd/
COPY e2e/go.mod e2e/go.sum e2e/
WORKDIR /src/server
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/rein-server ./cmd/rein-server \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/rein ./cmd/rein \
 && mkdir -p /out/data

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/rein-server /out/rein /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV REIN_HOST=0.0.0.0 REIN_PORT=4800 REIN_DB=/data/rein.db
EXPOSE 4800
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/rein-server"]
