# Mayfly security token service: container image.
#
#   docker build -t mayfly .
#   docker run --rm -p 8080:8080 \
#     -e MAYFLY_ISSUER=http://localhost:8080 \
#     -e MAYFLY_DATABASE_URL=postgres://... \
#     -e MAYFLY_MASTER_KEY_FILE=/run/secrets/mayfly_master_key \
#     -v "$PWD/secrets/mayfly.key:/run/secrets/mayfly_master_key:ro" mayfly
#
# No key, secret or database is baked into the image: the master key is
# mounted at run time (see docker-compose.yml).

# ---- build stage -----------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /build
# Queries are checked offline if the code ever uses sqlx's query macros;
# migrations are embedded at compile time from migrations/.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never
COPY . .
RUN cargo build --release --locked -p mayfly-server --bin mayfly \
 && install -D -m 0755 target/release/mayfly /out/mayfly

# ---- runtime stage ---------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# ca-certificates follows bookworm security updates rather than a pinned version.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 mayfly \
 && useradd --system --uid 10001 --gid mayfly --no-create-home \
      --home-dir /var/lib/mayfly --shell /usr/sbin/nologin mayfly \
 && install -d -o mayfly -g mayfly -m 0750 /var/lib/mayfly
COPY --from=builder /out/mayfly /usr/local/bin/mayfly
WORKDIR /var/lib/mayfly
USER 10001:10001
ENV MAYFLY_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["mayfly"]
CMD ["serve"]
