# syntax=docker/dockerfile:1
# tokengate: a static binary on distroless, running as a non-root user.
#
#   docker build \
#     --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg COMMIT=$(git rev-parse --short HEAD) \
#     -t tokengate .
#   docker run --rm -p 8081:8081 -p 9091:9091 \
#     -v "$PWD/config.yaml:/etc/tokengate/config.yaml:ro" tokengate
#
# Images are pinned by tag here. For reproducible, tamper-evident builds pin
# them by digest as well (golang:1.26@sha256:..., and the same for the
# distroless image) and let Renovate or Dependabot bump the digests.

FROM golang:1.26 AS build
WORKDIR /src
ENV GOFLAGS=-buildvcs=false

# Modules first: this layer stays cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
# The same flags as the Makefile's build target (a test in deploy/ checks).
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/tokengate ./cmd/tokengate

# distroless has no shell to mkdir with: prepare the data directory here.
RUN mkdir -p /out/data

# static: no libc needed (CGO_ENABLED=0); CA certificates and tzdata included.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="tokengate" \
      org.opencontainers.image.description="Reverse-proxy authentication sidecar" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/tokengate /tokengate
COPY --from=build --chown=65532:65532 /out/data /var/lib/tokengate
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
# The bolt revocation store and users database live here.
VOLUME ["/var/lib/tokengate"]
# 8081: public (proxy, login); 9091: admin (metrics, probes), never public.
EXPOSE 8081 9091
# No HEALTHCHECK: there is no shell or curl; orchestrators probe /healthz and
# /readyz on the admin port.
ENTRYPOINT ["/tokengate"]
CMD ["serve", "--config", "/etc/tokengate/config.yaml"]
