#!/usr/bin/env bash
# Short fuzz smoke for CI: build the cargo-fuzz crate in fuzz/, run every
# target for FUZZ_SMOKE_SECS (default 10) seconds over its committed corpus
# (read-only: new inputs go to a scratch folder), and fail on any crash,
# timeout or out-of-memory. Long runs: see fuzz/README.md.
#
# Uses a nightly toolchain when rustup has one, else stable with
# RUSTC_BOOTSTRAP=1 (cargo-fuzz needs -Z flags). Installs cargo-fuzz with
# `cargo install --locked` when it is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
secs="${FUZZ_SMOKE_SECS:-10}"

toolchain=()
if command -v rustup >/dev/null 2>&1; then
    # FUZZ_SMOKE_STABLE=1 takes the stable path even when nightly exists.
    if [ -z "${FUZZ_SMOKE_STABLE:-}" ] && rustup toolchain list | grep -q '^nightly'; then
        toolchain=(+nightly)
    else
        toolchain=(+stable)
        export RUSTC_BOOTSTRAP=1
    fi
else
    export RUSTC_BOOTSTRAP=1
fi

CARGO_FUZZ_VERSION="0.13.2"
if [[ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz ${CARGO_FUZZ_VERSION}" ]]; then
    echo "==> installing cargo-fuzz ${CARGO_FUZZ_VERSION}"
    cargo install --locked cargo-fuzz --version "${CARGO_FUZZ_VERSION}"
fi

# No sanitizer (the library forbids unsafe code; libFuzzer still catches
# panics, timeouts and memory blow-ups) and debug assertions on: quicker to
# build, and overflow checks stay on.
build=(--sanitizer none --debug-assertions)

echo "==> cargo ${toolchain[*]} fuzz build ${build[*]}"
cargo "${toolchain[@]}" fuzz build "${build[@]}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
status=0
# The list first: a failure inside `$(...)` in a `for` would not stop us,
# and an empty list would pass without fuzzing anything.
targets="$(cargo "${toolchain[@]}" fuzz list)"
if [[ -z "$targets" ]]; then
    echo "fuzz smoke: \`cargo fuzz list\` found no targets" >&2
    exit 1
fi
for target in $targets; do
    if [ ! -d "corpus/$target" ]; then
        echo "fuzz smoke: no seed corpus for $target (fuzz/corpus/$target)" >&2
        status=1
        continue
    fi
    mkdir -p "$scratch/$target" "$scratch/artifacts/$target"
    echo "==> $target: ${secs}s over corpus/$target"
    if ! cargo "${toolchain[@]}" fuzz run "${build[@]}" "$target" \
        "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$scratch/artifacts/$target/" \
        >"$scratch/$target.log" 2>&1; then
        tail -n 40 "$scratch/$target.log" >&2
        mkdir -p artifacts/"$target"
        cp "$scratch/artifacts/$target/"* artifacts/"$target"/ 2>/dev/null || true
        echo "fuzz smoke: $target FAILED (reproducer in fuzz/artifacts/$target/)" >&2
        status=1
    else
        grep -E '^(stat::number_of_executed_units|Done )' "$scratch/$target.log" || true
    fi
done
exit "$status"
