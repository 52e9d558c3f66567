#!/usr/bin/env bash
# Installs the pinned nats-server when missing, then runs every check a change must pass:
# formatting, clippy with warnings denied, and all unit and integration tests (with the test-only
# fault hooks compiled in).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Integration tests start real nats-servers; they find the pinned binary through NATS_SERVER_BIN
# (and `ferry demo` through PATH).
NATS_SERVER_BIN="$(scripts/install-nats-server.sh)"
export NATS_SERVER_BIN
PATH="$(dirname "$NATS_SERVER_BIN"):$PATH"
export PATH

cargo fmt --all -- --check
# The Dockerfile: linted, and ferry built from exactly the files it copies.
scripts/check-dockerfile.sh
# The systemd unit, verified where systemd-analyze exists; the Prometheus rules, checked and
# unit-tested with promtool (installed into .tools/prometheus when missing).
scripts/check-packaging.sh
cargo clippy --all-targets -- -D warnings
# The test-only fault hooks (src/fault.rs) are compiled in for the tests of the supervisor.
cargo clippy --all-targets --features fault-injection -- -D warnings
cargo test --workspace --features fault-injection
