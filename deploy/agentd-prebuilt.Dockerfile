# agentd from a binary built on the host, for builders that cannot pull a
# Go image (and for `make test`, which checks this image):
#
#   (cd agentd && CGO_ENABLED=0 go build -o ../bin/static/agentd ./cmd/agentd)
#   buildah bud -f deploy/agentd-prebuilt.Dockerfile -t rein-agentd bin/static
#
# The build context is the directory holding the static agentd binary.
FROM scratch
COPY agentd /usr/local/bin/agentd
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/agentd"]
CMD ["--version"]
