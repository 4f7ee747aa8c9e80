#!/usr/bin/env bash
# Install and run ckptctl on the shipped examples, on a fresh Debian 12 machine
# (as root, with a Rust toolchain on PATH):
#
#   bash scripts/setup.sh
#
# 1. installs CRIU 4.1.1 and its runtime tools (scripts/install-criu.sh),
# 2. builds the release binary,
# 3. validates every profile under examples/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-criu.sh

command -v cargo >/dev/null 2>&1 || {
    echo "setup: cargo not found on PATH (install a Rust toolchain first)" >&2
    exit 1
}
cargo build --release --locked

./target/release/ckptctl validate examples/
