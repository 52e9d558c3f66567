#!/usr/bin/env bash
# Installs promtool, which scripts/check-packaging.sh runs on packaging/prometheus/ (`promtool check
# rules`, `promtool test rules`).
#
# `$PROMTOOL`, when set, is used as it is (e.g. a promtool from a Prometheus release on a machine
# without apt). Otherwise promtool goes into .tools/prometheus under the repository root
# (git-ignored), taken from Debian's `prometheus` package: `apt-get download` and `dpkg -x` unpack
# the package without installing it, so no Prometheus service is set up or started and no
# maintainer script runs. Downloading needs the package lists; on a fresh machine without them,
# `apt-get update` runs first (as root). Idempotent: when promtool is already there and runs,
# nothing is downloaded. Prints the path of the binary on stdout (progress goes to stderr), so
# callers can do `PROMTOOL="$(scripts/install-promtool.sh)"`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="$ROOT/.tools/prometheus"
BIN="$TARGET/promtool"

runs() {
    "$1" --version >/dev/null 2>&1
}

if [ -n "${PROMTOOL:-}" ]; then
    if ! runs "$PROMTOOL"; then
        echo "error: PROMTOOL=$PROMTOOL does not run (\`$PROMTOOL --version\` fails); point it at a promtool binary or unset it" >&2
        exit 1
    fi
    echo "$PROMTOOL"
    exit 0
fi

if runs "$BIN"; then
    echo "$BIN"
    exit 0
fi

if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
    {
        echo "error: promtool is needed to check packaging/prometheus/ and cannot be installed here (no apt-get and dpkg)."
        echo "Install promtool (it ships with every Prometheus release: https://prometheus.io/download/, or the"
        echo "'prometheus' package of your distribution), then either put it at $BIN or set PROMTOOL to its path."
    } >&2
    exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-promtool.XXXXXX")"
trap 'rm -rf "$work"' EXIT
apt_options=()
if [ "$(id -u)" -eq 0 ]; then
    # As root, apt downloads as its unprivileged `_apt` user, which cannot write to this private
    # directory (it warns, then downloads as root anyway): say so up front instead.
    apt_options+=(-o APT::Sandbox::User=root)
fi

download() {
    (cd "$work" && apt-get ${apt_options[@]+"${apt_options[@]}"} download prometheus) >&2
}

echo "installing promtool from Debian's prometheus package into $TARGET" >&2
if ! download; then
    # A fresh machine has no package lists yet: fetch them, which needs root.
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: \`apt-get download prometheus\` failed and refreshing the package lists needs root; run \`sudo apt-get update\` (or this script as root), or set PROMTOOL to an installed promtool" >&2
        exit 1
    fi
    echo "refreshing the package lists (apt-get update), then downloading again" >&2
    apt-get update >&2
    download
fi
package=("$work"/prometheus_*.deb)
if [ ! -f "${package[0]}" ]; then
    echo "error: apt-get download prometheus left no prometheus_*.deb in $work" >&2
    exit 1
fi
dpkg -x "${package[0]}" "$work/root"
mkdir -p "$TARGET"
install -m 0755 "$work/root/usr/bin/promtool" "$BIN"
if ! runs "$BIN"; then
    echo "error: $BIN does not run after installing (\`$BIN --version\` fails)" >&2
    exit 1
fi
echo "installed $("$BIN" --version 2>&1 | head -n 1)" >&2

echo "$BIN"
