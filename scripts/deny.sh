#!/usr/bin/env bash
# cargo-deny over Cargo.lock, offline: licences, bans (duplicates, wildcards),
# sources (crates.io only) and advisories (deny.toml).
#
#   bash scripts/deny.sh                 # install if needed, then check
#   bash scripts/deny.sh --install-only  # only install (CI starts this early)
#
# Installs the pinned cargo-deny from crates.io when it is missing (a build
# from source: several minutes). The advisory database is the committed
# snapshot under deny/advisory-db/ (scripts/update-advisory-db.sh makes it);
# cargo-deny only reads a database from a git repository, so this script
# builds one from the snapshot in a temporary directory, then runs cargo-deny
# with --offline (no advisory fetch, no network but `cargo fetch` from
# crates.io for the licence files). Before the real check it proves that the
# advisory check can fail: a throwaway advisory against `libc` (any version)
# must make cargo-deny fail. Exits non-zero on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_DENY_VERSION="0.20.2"
SNAPSHOT="deny/advisory-db"
# cargo-deny keeps each database in <db-path>/<last URL segment>-<xxhash64 of
# the lower-cased URL>. For db-urls = ["https://github.com/rustsec/advisory-db"]
# (deny.toml) and cargo-deny 0.20 that is:
DB_DIR_NAME="advisory-db-3157b0e258782691"
# A snapshot older than this many days is reported (never a failure: the
# result must depend on the commit only, not on the date of the run).
STALE_DAYS=90

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# --- cargo-deny ------------------------------------------------------------
if [[ "$(cargo deny --version 2>/dev/null || true)" != "cargo-deny ${CARGO_DENY_VERSION}" ]]; then
    echo "==> cargo install --locked cargo-deny --version ${CARGO_DENY_VERSION}"
    start=$SECONDS
    cargo install --locked --quiet cargo-deny --version "${CARGO_DENY_VERSION}"
    echo "cargo-deny installed in $((SECONDS - start)) s"
fi
cargo deny --version
if [[ "${1:-}" == "--install-only" ]]; then
    exit 0
fi

# --- the snapshot must cover every crate in Cargo.lock ---------------------
if [[ ! -f "$SNAPSHOT/CRATES" ]]; then
    echo "error: $SNAPSHOT/CRATES is missing; run scripts/update-advisory-db.sh" >&2
    exit 1
fi
missing="$(comm -23 \
    <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.lock | LC_ALL=C sort -u) \
    <(LC_ALL=C sort -u "$SNAPSHOT/CRATES"))"
if [[ -n "$missing" ]]; then
    echo "error: the advisory snapshot predates these crates in Cargo.lock:" >&2
    mapfile -t missing_names <<<"$missing"
    printf '  %s\n' "${missing_names[@]}" >&2
    echo "run: bash scripts/update-advisory-db.sh /path/to/advisory-db (a RustSec advisory-db checkout)" >&2
    exit 1
fi

snapshot_date="$(sed -n 's/^- source commit date: //p' "$SNAPSHOT/README.md")"
if [[ -z "$snapshot_date" ]]; then
    echo "error: no source commit date in $SNAPSHOT/README.md" >&2
    exit 1
fi
age_days=$((($(date +%s) - $(date -d "$snapshot_date" +%s)) / 86400))
echo "advisory snapshot of ${snapshot_date} (${age_days} days old)"
if ((age_days > STALE_DAYS)); then
    echo "warning: the advisory snapshot is older than ${STALE_DAYS} days; refresh it with scripts/update-advisory-db.sh" >&2
fi

# --- crate sources for the licence check (crates.io is reachable) ----------
cargo fetch --locked --quiet

# --- advisory databases as git repositories --------------------------------
work="$(mktemp -d)"
trap 'rm -rf -- "$work"' EXIT

# make_db ROOT: a git repository at ROOT/$DB_DIR_NAME holding the snapshot.
make_db() {
    local db="$1/$DB_DIR_NAME"
    mkdir -p "$db"
    cp -R "$SNAPSHOT/." "$db/"
    git -C "$db" init --quiet
    git -C "$db" add --all
    GIT_AUTHOR_DATE="$snapshot_date" GIT_COMMITTER_DATE="$snapshot_date" \
        git -C "$db" -c user.name=ckptctl -c user.email=ckptctl@localhost \
        -c commit.gpgsign=false commit --quiet --no-verify -m "advisory snapshot"
}

deny() {
    cargo deny --offline --locked --log-level warn --color never "$@"
}

# The canary: the snapshot plus an advisory that affects every libc version.
make_db "$work/canary"
canary_id="RUSTSEC-0000-0001"
canary_db="$work/canary/$DB_DIR_NAME"
mkdir -p "$canary_db/crates/libc"
cat >"$canary_db/crates/libc/$canary_id.md" <<EOF
\`\`\`toml
[advisory]
id = "$canary_id"
package = "libc"
date = "2000-01-01"

[versions]
patched = []
\`\`\`

# Canary: scripts/deny.sh checks that the advisory check can fail
EOF
git -C "$canary_db" add --all
git -C "$canary_db" -c user.name=ckptctl -c user.email=ckptctl@localhost \
    -c commit.gpgsign=false commit --quiet --no-verify -m canary

echo "==> canary: cargo deny check advisories must fail on a planted advisory"
if CKPTCTL_ADVISORY_DB_ROOT="$work/canary" deny check advisories >"$work/canary.log" 2>&1; then
    cat "$work/canary.log" >&2
    echo "error: cargo-deny passed with a planted advisory: the advisory check cannot fail" >&2
    exit 1
fi
if ! grep -q "$canary_id" "$work/canary.log"; then
    cat "$work/canary.log" >&2
    echo "error: cargo-deny failed, but not on the planted advisory $canary_id" >&2
    exit 1
fi
echo "ok: the planted advisory $canary_id was reported"

# The real check.
make_db "$work/db"
echo "==> cargo deny --offline check advisories bans licenses sources"
CKPTCTL_ADVISORY_DB_ROOT="$work/db" deny check advisories bans licenses sources
echo "cargo deny: ok"
