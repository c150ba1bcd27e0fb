# syntax=docker/dockerfile:1
# Hoist: multi-stage build. The build stage caches dependencies in a layer of their own;
# the runtime is slim Debian with CA certificates (S3 over TLS) and OpenSSL (the libpq built
# into the binary uses it for TLS to PostgreSQL), as a non-root user.
#
#   docker build -t hoist .
# With a binary built elsewhere (CI) and another Debian bookworm base (scripts/check-image):
#   docker build --build-arg BINARY_STAGE=prebuilt --build-arg RUNTIME_BASE=<image> .
# (the build context then holds the binary as ./hoist)

ARG RUNTIME_BASE=debian:bookworm-slim
ARG BINARY_STAGE=compiled

FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
# Dependencies first: this layer is rebuilt only when Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches/bench_support \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > benches/uploads.rs \
 && cargo build --release --locked \
 && rm -rf src benches
COPY src src
COPY migrations migrations
COPY config config
COPY benches benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin hoist

FROM scratch AS compiled
COPY --from=build /src/target/release/hoist /hoist

FROM scratch AS prebuilt
COPY hoist /hoist

# hadolint ignore=DL3006
FROM ${BINARY_STAGE} AS binary

# hadolint ignore=DL3006
FROM ${RUNTIME_BASE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/hoist --create-home hoist
WORKDIR /app
COPY --from=binary /hoist /usr/local/bin/hoist
COPY config /app/config
# config/production.toml: listen 0.0.0.0:8080, data in /var/lib/hoist.
ENV HOIST_ENV=production \
    HOIST_CONFIG_DIR=/app/config
USER 10001:10001
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=2s --start-period=10s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/health/live"]
ENTRYPOINT ["hoist"]
CMD ["serve"]
