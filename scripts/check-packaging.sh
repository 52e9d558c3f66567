#!/usr/bin/env bash
# Verifies the files under packaging/ with the tools that judge them:
# - the systemd unit with `systemd-analyze verify` (which exits 0 on many problems, so any line it
#   prints is a failure here), where systemd exists: a machine without it skips that check and
#   says so;
# - the Prometheus alerting rules with `promtool check rules` and their unit tests with `promtool
#   test rules`, always: scripts/install-promtool.sh installs promtool when it is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

check_unit() {
    if ! command -v systemd-analyze >/dev/null; then
        echo "check-packaging: systemd-analyze not found; packaging/ferry.service not verified" >&2
        return 0
    fi
    local work output
    work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-unit.XXXXXX")"
    # verify wants the programs the unit runs to exist: point them at any executable of this machine.
    sed "s#/usr/local/bin/ferry#$(command -v true)#g" packaging/ferry.service >"$work/ferry.service"
    if ! output="$(systemd-analyze verify "$work/ferry.service" 2>&1)" || [ -n "$output" ]; then
        echo "packaging/ferry.service does not pass systemd-analyze verify:" >&2
        echo "${output//$work\//packaging/}" >&2
        rm -rf "$work"
        return 1
    fi
    rm -rf "$work"
    echo "packaging/ferry.service: systemd-analyze verify ok" >&2
}

check_rules() {
    local promtool
    promtool="$(scripts/install-promtool.sh)"
    "$promtool" check rules packaging/prometheus/ferry.rules.yml >&2
    # The test file names the rules file relative to itself.
    (cd packaging/prometheus && "$promtool" test rules ferry.rules.test.yml) >&2
    echo "packaging/prometheus: promtool check rules and test rules ok" >&2
}

check_unit
check_rules
