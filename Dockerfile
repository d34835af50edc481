# Multi-stage build of a static fwagent binary.
#
#   docker build -t fwagent .
#   docker run --rm --network host --cap-add NET_ADMIN \
#     -v "$PWD/policies/examples:/etc/fwagent:ro" \
#     fwagent run --policy /etc/fwagent/log-only.yaml
#
# --network host: the agent filters the host's traffic, so it must live in
# the host's network namespace. NET_ADMIN is the only capability it needs
# (nftables, NFQUEUE and NFLOG are all netlink, guarded by CAP_NET_ADMIN).
# The test suite is the one CI runs (scripts/test.sh); it needs a privileged
# host with network namespaces, so it is not run in this build.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/fwagent ./cmd/fwagent \
 && CGO_ENABLED=0 go vet ./...

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/fwagent /usr/local/bin/fwagent
COPY policies/examples /etc/fwagent/examples
ENTRYPOINT ["/usr/local/bin/fwagent"]
CMD ["run", "--policy", "/etc/fwagent/examples/log-only.yaml"]
