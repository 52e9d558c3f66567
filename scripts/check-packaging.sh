#!/usr/bin/env bash
# Verifies the files under packaging/ with the tools that judge them, where those tools exist:
# the systemd unit with `systemd-analyze verify` (which exits 0 on many problems, so any line it
# prints is a failure here). A machine without systemd skips that check and says so.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v systemd-analyze >/dev/null; then
    echo "check-packaging: systemd-analyze not found; packaging/ferry.service not verified" >&2
    exit 0
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-unit.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# verify wants the programs the unit runs to exist: point them at any executable of this machine.
sed "s#/usr/local/bin/ferry#$(command -v true)#g" packaging/ferry.service >"$work/ferry.service"
if ! output="$(systemd-analyze verify "$work/ferry.service" 2>&1)" || [ -n "$output" ]; then
    echo "packaging/ferry.service does not pass systemd-analyze verify:" >&2
    echo "${output//$work\//packaging/}" >&2
    exit 1
fi
echo "packaging/ferry.service: systemd-analyze verify ok" >&2
