#!/usr/bin/env bash
# The ferry tour in one command: installs the pinned nats-server when it is missing, builds ferry in
# release mode and runs `ferry demo`: two local nats-servers ("east" and "west"), a simulated Choria
# fleet publishing in east, ferry adapting its traffic into JetStream streams in east and replicating
# them to west (lifecycle events in full, registrations sampled per node). Arguments go to
# `ferry demo`, e.g.
#
#   scripts/demo.sh --nodes 10000 --duration 1m
#   scripts/demo.sh --json
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -n "${NATS_SERVER_BIN:-}" ] && [ -x "$NATS_SERVER_BIN" ]; then
    : # use the server the caller chose
elif command -v nats-server >/dev/null 2>&1; then
    NATS_SERVER_BIN="$(command -v nats-server)"
else
    # Idempotent: downloads only when .tools/nats does not hold the pinned version yet.
    NATS_SERVER_BIN="$(scripts/install-nats-server.sh)"
fi
export NATS_SERVER_BIN
PATH="$(dirname "$NATS_SERVER_BIN"):$PATH"
export PATH

# Said before cargo starts, and cargo's own progress left visible: the first build compiles every
# dependency and runs for minutes, which without a word looks like a hang.
echo "building ferry (first build takes several minutes)…" >&2
cargo build --release --bin ferry

exec "${CARGO_TARGET_DIR:-target}/release/ferry" demo "$@"
