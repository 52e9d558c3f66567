#!/usr/bin/env bash
# Checks the Dockerfile without a Docker daemon: lints it (scripts/lint_dockerfile.py), then builds
# ferry from exactly the files the build stage COPYs, so a file the build needs but the Dockerfile
# leaves out (a bench target, a workspace crate) fails here rather than in `docker build`. With a
# daemon at hand, `docker build .` is the full check; this is what CI can always run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python3 scripts/lint_dockerfile.py Dockerfile

context="$(mktemp -d "${TMPDIR:-/tmp}/ferry-docker-context.XXXXXX")"
trap 'rm -rf "$context"' EXIT
# The build stage: the lines from the first FROM up to the next one.
awk '/^FROM /{stage++} stage==1' Dockerfile | while read -r instruction rest; do
    [ "$instruction" = "COPY" ] || continue
    # COPY src... dest: every word but the last is a path in the build context.
    read -r -a words <<<"$rest"
    for source in "${words[@]:0:${#words[@]}-1}"; do
        case "$source" in --*) continue ;; esac
        cp -R --parents "$source" "$context/"
    done
done

# The same command as the Dockerfile's (as a check, to stay quick): it reads every manifest and
# compiles every source file the binary needs. Its own target directory is kept between runs.
echo "building ferry from the Dockerfile's file set ($(cd "$context" && ls | tr '\n' ' '))" >&2
CARGO_TARGET_DIR="$PWD/target/dockerfile-check" cargo check --manifest-path "$context/Cargo.toml" \
    --release --locked --bin ferry
