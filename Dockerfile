# Multi-stage build: compile with the Rust toolchain, run on a slim Debian as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY config ./config
RUN cargo build --release --locked && strip target/release/palabre

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 991 --home-dir /data palabre \
    && mkdir -p /data && chown palabre /data
COPY --from=build /src/target/release/palabre /usr/local/bin/palabre
USER palabre
ENV PALABRE_DATA_DIR=/data \
    PALABRE_LISTEN=0.0.0.0:8008
VOLUME ["/data"]
EXPOSE 8008 8448
# Ready = serving and the database answers; `palabre health` exits 1 otherwise.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["palabre", "health"]
ENTRYPOINT ["palabre"]
CMD ["serve"]
