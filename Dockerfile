# ferry: multi-stage build. The runtime image holds only the binary, CA certificates and an
# unprivileged user, and runs `ferry run -c /etc/ferry/ferry.yaml`.
#
#   docker build -t ferry --build-arg FERRY_BUILD_COMMIT=$(git rev-parse --short=12 HEAD) .
#   docker run --rm -v /etc/ferry:/etc/ferry:ro -v ferry-state:/var/lib/ferry -p 9464:9464 ferry
#
# In the mounted config, set `state_dir: /var/lib/ferry` and `monitor: { listen: "0.0.0.0:9464" }`
# (the HEALTHCHECK asks that monitor through `ferry health`; the image has no curl).
#
# scripts/check-dockerfile.sh lints this file and builds from exactly what it copies (CI runs it).

# The toolchain the test suite runs with; bump it together with the CI image.
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Only what the build needs, so edits elsewhere (docs, tests) do not invalidate the layer.
COPY Cargo.toml Cargo.lock build.rs ./
COPY adapters ./adapters
COPY crates ./crates
COPY patches ./patches
COPY benches ./benches
COPY src ./src
# The build context has no .git, so `ferry --version` and ferry_build_info say commit "unknown"
# unless it is passed in: --build-arg FERRY_BUILD_COMMIT=$(git rev-parse --short=12 HEAD), and
# for a reproducible build date --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct).
ARG FERRY_BUILD_COMMIT=""
ARG SOURCE_DATE_EPOCH
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
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/ferry", "health", "-c", "/etc/ferry/ferry.yaml"]
ENTRYPOINT ["/usr/local/bin/ferry"]
CMD ["run", "-c", "/etc/ferry/ferry.yaml"]
