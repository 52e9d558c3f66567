#!/usr/bin/env bash
# Runs the coverage-guided fuzz targets in fuzz/ (cargo-fuzz, libFuzzer) for RUNS inputs each
# (default 1,000,000), seeded with the wire-format fixtures. Needs a nightly toolchain
# (`rustup toolchain install nightly`); installs cargo-fuzz when missing.
#
#   scripts/fuzz.sh                      # every target, 1,000,000 inputs each
#   RUNS=100000 scripts/fuzz.sh decode_lifecycle
#
# A crash stops the run and leaves the input under fuzz/artifacts/<target>/; reproduce it with
# `cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>` from fuzz/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS="${RUNS:-1000000}"

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cd fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Seeds: real events for the decoders, real configs for the loader; the other targets start empty.
seed() {
  local target=$1; shift
  mkdir -p "corpus/$target"
  for dir in "$@"; do
    [ -d "$dir" ] && find "$dir" -type f \( -name '*.json' -o -name '*.txt' -o -name '*.yaml' \) -exec cp {} "corpus/$target/" \;
  done
  return 0
}
seed decode_lifecycle ../fixtures/lifecycle
seed decode_registration ../fixtures/registration
seed decode_passthrough ../fixtures/lifecycle ../fixtures/registration
seed config_load ../config

for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  echo "== $target: $RUNS inputs"
  start=$(date +%s)
  log="$(mktemp)"
  status=0
  cargo +nightly fuzz run -O "$target" "corpus/$target" -- -runs="$RUNS" -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY|panicked|ERROR' "$log" || true
  echo "   exit $status after $(( $(date +%s) - start )) s"
  if [ "$status" -ne 0 ]; then
    tail -40 "$log"
    exit "$status"
  fi
  rm -f "$log"
done
