# syntax=docker/dockerfile:1
# The one `ticketing` binary in a small image; every service runs from it with its own
# `--target` (compose.yaml, deploy/k8s/). Build: docker build -t ticketing .
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit cache mounts); the
# binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ticketing \
    && install -D -m 0755 target/release/ticketing /out/ticketing

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# CA certificates for TLS to Stripe; nothing else: the health checks use bash's /dev/tcp.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --gid 0 --home-dir /data --no-create-home ticketing \
    && install -d -o 10001 -g 0 -m 0770 /data
COPY --from=build /out/ticketing /usr/local/bin/ticketing
# Listen on every interface inside the container; embedded mode (no database URL) keeps
# its SQLite files in /data (a volume). Distributed mode writes nothing to the filesystem,
# so the root filesystem can be read-only.
ENV TICKETING_LISTEN=0.0.0.0:3000 \
    TICKETING_DATA_DIR=/data
WORKDIR /data
VOLUME ["/data"]
USER 10001:0
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${TICKETING_LISTEN##*:} && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["ticketing"]
