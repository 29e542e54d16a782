# syntax=docker/dockerfile:1
# terapi in a container: the CLI with the Gong component built in (the
# component is compiled for wasm32-wasip2 from this tree and embedded in the
# binary), run as an unprivileged user. `docker build -t terapi .`, then e.g.
#   docker run -p 3003:3003 -v terapi:/var/lib/terapi \
#     -e TERAPI_PUBLIC_URL=https://terapi.example.com -e TERAPI_MASTER_KEY=... terapi
# (`terapi master-key generate` makes the key; without TERAPI_DATABASE_URL the
# store is SQLite in the volume). cli/tests/cli/deploy.rs checks this file and runs its command.

FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p terapi \
    && install -m 0755 target/release/terapi /usr/local/bin/terapi

FROM debian:bookworm-slim AS runtime
# CA certificates for Gong's TLS; nothing else the binary needs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/terapi --create-home --shell /usr/sbin/nologin terapi
COPY --from=build /usr/local/bin/terapi /usr/local/bin/terapi
USER 10001:10001
ENV TERAPI_DATA_DIR=/var/lib/terapi \
    TERAPI_CACHE_DIR=/var/lib/terapi/cache \
    TERAPI_LOG_FORMAT=json
VOLUME ["/var/lib/terapi"]
EXPOSE 3003
# SIGTERM stops cleanly: running syncs give their leases up, checkpoints kept.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/terapi"]
CMD ["serve", "--bind", "0.0.0.0:3003"]
