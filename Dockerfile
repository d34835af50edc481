# Multi-stage build of a static fwagent binary, run as a non-root user.
#
#   docker build -t fwagent .
#   docker run --rm --network host --cap-add NET_ADMIN \
#     -v "$PWD/policies/examples:/etc/fwagent:ro" \
#     fwagent run --policy /etc/fwagent/log-only.yaml
#
# --network host: the agent filters the host's traffic, so it must live in
# the host's network namespace. NET_ADMIN is the only capability it needs
# (nftables, NFQUEUE and NFLOG are all netlink, guarded by CAP_NET_ADMIN).
#
# The image runs as uid 65532 (distroless "nonroot"). A non-root process gets
# no capability from --cap-add alone, so the binary carries the file
# capability cap_net_admin+ep, set in the build stage and kept by COPY
# (BuildKit, the default builder, copies the security.capability xattr).
# --cap-add NET_ADMIN is still required at run time, for every command of
# the image: it puts NET_ADMIN in the container's bounding set, and without
# it the kernel refuses to exec a binary whose file capability it cannot
# grant ("operation not permitted"). Do not combine with
# --security-opt no-new-privileges (Kubernetes: allowPrivilegeEscalation:
# false), which disables file capabilities.
#
# The test suite is the one CI runs (scripts/test.sh); it needs a privileged
# host with network namespaces, so it is not run in this build.

FROM golang:1.26-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/fwagent ./cmd/fwagent \
 && CGO_ENABLED=0 go vet ./... \
 && setcap cap_net_admin+ep /out/fwagent \
 && getcap /out/fwagent | grep -q cap_net_admin

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/fwagent /usr/local/bin/fwagent
COPY policies/examples /etc/fwagent/examples
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fwagent"]
CMD ["run", "--policy", "/etc/fwagent/examples/log-only.yaml"]
