#!/usr/bin/env bash
# Formatting, clippy and rustdoc, as CI runs them:
#
#   bash scripts/lint.sh
#
# Clippy denies warnings; Cargo.toml's [lints] deny unwrap/expect/panic/todo/
# unimplemented outside tests (clippy.toml and each tests/*.rs allow them in
# tests). The guest tests (feature guest-tests, run by scripts/test-vm.sh) are
# linted too. Exits non-zero on the first failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "==> cargo fmt --all --check"
cargo fmt --all --check

echo "==> cargo clippy --locked --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings
# fault-injection: the tests' builds; guest-tests: the guest lane's targets.
echo "==> cargo clippy --locked --all-targets --features fault-injection,guest-tests -- -D warnings"
cargo clippy --locked --all-targets --features fault-injection,guest-tests -- -D warnings

# The library's docs: every intra-doc link resolves (docs/architecture.md
# points readers at them).
echo "==> cargo doc --locked --no-deps (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps
