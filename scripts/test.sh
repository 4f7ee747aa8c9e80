#!/usr/bin/env bash
# The project's single test command: build everything, then run all tests.
#
#   bash scripts/test.sh [extra args for the test binaries]
#
# Unit tests (lib + bin, and doc tests) run in parallel. Integration tests
# (tests/*.rs) run one at a time: the CRIU/root tests share the machine's
# kernel (pid and network namespaces, ports, iptables/nftables state), so
# they must not overlap. Every phase runs even if an earlier one failed; the
# script exits non-zero if any failed. The last line is a total over all
# phases: "tests: N passed, N failed, N skipped" (skipped = #[ignore]d).
#
# Set CKPTCTL_TEST_REQUIRE_CRIU=1 to turn "skipped: needs root/CRIU" into
# failures (CI does this, see .ci/run).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

LOG="$(mktemp /tmp/ckptctl-test.XXXXXX)"
trap 'rm -f -- "$LOG"' EXIT

cargo --version
rustc --version
printf 'CKPTCTL_TEST_REQUIRE_CRIU=%s\n' "${CKPTCTL_TEST_REQUIRE_CRIU:-}"
if command -v criu >/dev/null 2>&1; then
    printf 'criu: %s (%s)\n' "$(command -v criu)" "$(criu --version 2>/dev/null | head -n1)"
else
    printf 'criu: not on PATH\n'
fi

# The tests inject faults through `CKPTCTL_FAULT`, which only builds with
# this feature (never in release builds): every build and test here has it.
FEATURES=(--features fault-injection)

echo "==> cargo build --locked --all-targets ${FEATURES[*]}"
cargo build --locked --all-targets "${FEATURES[@]}"

failed_phases=()

# run_phase NAME CMD...: run a cargo test command, keep its output for the total.
run_phase() {
    local name="$1"
    shift
    echo "==> $*"
    if ! "$@" 2>&1 | tee -a "$LOG"; then
        failed_phases+=("$name")
    fi
}

run_phase "doc tests" cargo test --locked "${FEATURES[@]}" --doc -- "$@"
run_phase "unit tests" cargo test --locked "${FEATURES[@]}" --no-fail-fast --lib --bins -- "$@"

# Integration test targets, if any. Targets that need a cargo feature (the
# guest lane's tests/guest_*.rs, feature guest-tests) are left out: this
# kernel cannot run them; scripts/test-vm.sh runs them in a QEMU guest.
mapfile -t integration_tests < <(
    cargo metadata --locked --no-deps --format-version 1 |
        python3 -c 'import json, sys
m = json.load(sys.stdin)
for p in m["packages"]:
    for t in p["targets"]:
        if "test" in t["kind"] and not t.get("required-features"):
            print(t["name"])'
)
if ((${#integration_tests[@]} > 0)); then
    test_flags=()
    for t in "${integration_tests[@]}"; do
        test_flags+=(--test "$t")
    done
    run_phase "integration tests" \
        cargo test --locked "${FEATURES[@]}" --no-fail-fast "${test_flags[@]}" -- --test-threads=1 "$@"
else
    echo "==> no integration test targets under tests/"
fi

# Total over every "test result:" line cargo printed.
total="$(awk '
    /^test result: / {
        for (i = 1; i <= NF; i++) {
            if ($i ~ /^passed;?$/)  p += $(i - 1)
            if ($i ~ /^failed;?$/)  f += $(i - 1)
            if ($i ~ /^ignored;?$/) s += $(i - 1)
        }
    }
    END { printf "%d passed, %d failed, %d skipped", p, f, s }
' "$LOG")"

if ((${#failed_phases[@]} > 0)); then
    echo "FAILED phases: ${failed_phases[*]}" >&2
    echo "tests: $total"
    exit 1
fi
echo "tests: $total"
