#!/usr/bin/env bash
# Verifies the files under packaging/ with the tools that judge them:
# - the systemd unit with `systemd-analyze verify` (which exits 0 on many problems, so any line it
#   prints is a failure here), where systemd exists: a machine without it skips that check and
#   says so;
# - the Prometheus alerting rules with `promtool check rules` and their unit tests with `promtool
#   test rules`, and the PromQL of the Grafana dashboard with promtool too, always:
#   scripts/install-promtool.sh installs promtool when it is missing.
# (That every metric the rules and the Grafana dashboard name is one ferry exports is checked by
# tests/packaging.rs, against a running ferry.)
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

# promtool has no command to parse one expression, so every `expr` of the dashboard becomes a
# recording rule of a scratch rules file, with Grafana's variables replaced by values of their
# kind ($__rate_interval and the like by a duration, $instance and the like by a regex), and
# `promtool check rules` parses them all.
check_dashboard() {
    local promtool work
    promtool="$(scripts/install-promtool.sh)"
    work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-dashboard.XXXXXX")"
    if ! python3 - packaging/grafana/ferry-dashboard.json >"$work/dashboard.rules.yml" <<'PYTHON'; then
import json, re, sys

path = sys.argv[1]
try:
    with open(path) as file:
        dashboard = json.load(file)
except ValueError as error:
    sys.exit(f"{path} is not valid JSON: {error}")
exprs = []
def walk(value):
    if isinstance(value, dict):
        for key, child in value.items():
            if key == "expr" and isinstance(child, str):
                exprs.append(child)
            else:
                walk(child)
    elif isinstance(value, list):
        for child in value:
            walk(child)
walk(dashboard.get("panels", []))
if not exprs:
    sys.exit(f"{path}: no panel has an expr")
print("groups:\n  - name: dashboard\n    rules:")
for number, expr in enumerate(exprs):
    expr = re.sub(r"\$__\w+", "5m", expr)
    expr = re.sub(r"\$\{?\w+\}?", ".*", expr)
    print(f"      - record: dashboard:expr_{number}\n        expr: {json.dumps(expr)}")
PYTHON
        rm -rf "$work"
        return 1
    fi
    if ! output="$("$promtool" check rules "$work/dashboard.rules.yml" 2>&1)"; then
        echo "packaging/grafana/ferry-dashboard.json: an expr does not parse as PromQL (expr_N is the Nth expr in the file, from 0):" >&2
        echo "$output" >&2
        rm -rf "$work"
        return 1
    fi
    rm -rf "$work"
    echo "packaging/grafana/ferry-dashboard.json: every expr parses (promtool)" >&2
}

check_unit
check_rules
check_dashboard
