# syntax=docker/dockerfile:1
# One image with both binaries: `streamplane-control` (the default command) and `streamplane-worker`.
#   docker build -t streamplane .
#   docker run --rm streamplane streamplane-worker --help

FROM rust:1-bookworm AS builder
WORKDIR /src
# protoc comes vendored (protoc-bin-vendored), so the build needs no extra packages.
COPY . .
# The caches keep the registry and incremental artefacts between builds; the binaries are copied out of the
# cached target directory because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace \
    && mkdir -p /out \
    && cp target/release/streamplane-control target/release/streamplane-worker /out/

FROM debian:bookworm-slim
# ca-certificates: TLS to a managed Postgres or pulled sources; curl: the compose healthchecks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 streamplane \
    && useradd --system --uid 10001 --gid streamplane --home-dir /nonexistent --shell /usr/sbin/nologin streamplane
COPY --from=builder /out/streamplane-control /out/streamplane-worker /usr/local/bin/
USER streamplane:streamplane
# Control plane: REST 9997, gRPC 50051. Worker: RTSP 8554, RTP/RTCP 8000-8001/udp, HLS 8888, WebRTC 8889 and
# 8189/udp, metrics 9998.
EXPOSE 9997 50051 8554 8000/udp 8001/udp 8888 8889 8189/udp 9998
STOPSIGNAL SIGTERM
CMD ["streamplane-control"]
