# syntax=docker/dockerfile:1
# Courier's image: built in the Rust image, run on Debian slim as a non-root user.
#
#   docker build -t courier .
#   docker run --rm -p 50051:50051 -v courier-data:/data courier serve --listen 0.0.0.0:50051
#
# The default command is `courier serve`: SQLite at /data/courier.db (the working directory),
# gRPC on 127.0.0.1:50051 unless `--listen`, a `--config` file or COURIER_LISTEN says otherwise
# (the Helm chart writes listen = "0.0.0.0:50051" into the courier.toml it mounts).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# Only what the build reads: protox compiles the protos, sqlx embeds the migrations.
COPY Cargo.toml Cargo.lock build.rs ./
# How the bundled SQLite is compiled (LIBSQLITE3_FLAGS).
COPY .cargo ./.cargo
COPY proto ./proto
COPY migrations ./migrations
COPY src ./src
# The Rust client is a workspace member: Cargo reads its manifest even to build the server.
COPY clients/rust ./clients/rust
# The crate the server and the Rust client share (write coalescing).
COPY crates ./crates
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin courier \
    && install -m 0755 target/release/courier /usr/local/bin/courier

FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 courier \
    && useradd --system --uid 10001 --gid courier --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin courier \
    && mkdir /data \
    && chown courier:courier /data
COPY --from=builder /usr/local/bin/courier /usr/local/bin/courier
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 50051 9464
ENTRYPOINT ["courier"]
CMD ["serve"]
