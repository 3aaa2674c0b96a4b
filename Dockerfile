# syntax=docker/dockerfile:1

# Build: cgo is required by confluent-kafka-go, which links its bundled, statically
# built librdkafka (glibc flavour), so builder and runtime are both Debian bookworm.
FROM golang:1.27.3-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/orders-service ./app

# Runtime: glibc for librdkafka, wget for the health check, and nothing else.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates wget \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin orders
COPY --from=build /out/orders-service /usr/local/bin/orders-service
USER 10001:10001
EXPOSE 8081
# /health answers 200 while the process lives (ORDERS_HTTP_ADDR defaults to :8081).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD wget -q -O /dev/null http://127.0.0.1:8081/health || exit 1
# `docker run IMAGE` serves; `docker run IMAGE produce --count 1000` runs another subcommand.
ENTRYPOINT ["/usr/local/bin/orders-service"]
CMD ["serve"]
