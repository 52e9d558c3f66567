# ferry: multi-stage build. The runtime image holds only the binary, CA certificates and an
# unprivileged user, and runs `ferry run -c /etc/ferry/ferry.yaml`.
#
#   docker build -t ferry .
#   docker run --rm -v /etc/ferry:/etc/ferry:ro -v ferry-state:/var/lib/ferry -p 9464:9464 ferry
#
# In the mounted config, set `state_dir: /var/lib/ferry` and `monitor: { listen: "0.0.0.0:9464" }`.

ARG RUST_VERSION=1
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Only what the build needs, so edits elsewhere (docs, tests) do not invalidate the layer.
COPY Cargo.toml Cargo.lock ./
COPY adapters ./adapters
COPY crates ./crates
COPY patches ./patches
COPY benches ./benches
COPY src ./src
RUN cargo build --release --locked --bin ferry \
    && strip target/release/ferry \
    && install -D target/release/ferry /out/ferry

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ferry \
    && useradd --system --uid 10001 --gid ferry --home-dir /var/lib/ferry --shell /usr/sbin/nologin ferry \
    && install -d -o ferry -g ferry -m 0750 /var/lib/ferry \
    && install -d -m 0755 /etc/ferry
COPY --from=build /out/ferry /usr/local/bin/ferry
USER ferry:ferry
WORKDIR /var/lib/ferry
VOLUME ["/var/lib/ferry"]
EXPOSE 9464
# ferry handles SIGTERM itself (graceful stop bounded by shutdown_timeout); give `docker stop` a
# longer timeout than that, e.g. `docker stop -t 30`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ferry"]
CMD ["run", "-c", "/etc/ferry/ferry.yaml"]
