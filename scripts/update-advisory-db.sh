#!/usr/bin/env bash
# Regenerate deny/advisory-db/, the offline RustSec advisory snapshot that
# scripts/deny.sh checks Cargo.lock against (CI cannot reach the live
# database, so the advisories it needs are committed).
#
#   bash scripts/update-advisory-db.sh /path/to/advisory-db
#
# The argument is a full git checkout (or bare clone) of the RustSec advisory
# database. Only the advisories of crates named in Cargo.lock are kept, plus
# the database's licence files. deny/advisory-db/CRATES lists every crate name
# the snapshot was cut for (with or without advisories); scripts/deny.sh
# refuses to run when Cargo.lock names a crate that is not in it, so a new
# dependency means re-running this script.
#
# Re-run it when Cargo.lock changes and whenever a fresher database is at hand,
# then update the snapshot date in deny.toml and commit deny/advisory-db/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $# -ne 1 ]]; then
    echo "usage: $0 /path/to/advisory-db (a git checkout or bare clone)" >&2
    exit 2
fi
SRC="$1"
OUT="deny/advisory-db"

if ! git -C "$SRC" rev-parse --verify --quiet HEAD:crates >/dev/null; then
    echo "error: $SRC is not a git repository with a crates/ directory at HEAD" >&2
    exit 1
fi

commit="$(git -C "$SRC" rev-parse HEAD)"
commit_date="$(git -C "$SRC" show -s --format=%cI HEAD)"

# Every package name in Cargo.lock, sorted, once.
crates="$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.lock | LC_ALL=C sort -u)"

tmp="$(mktemp -d)"
trap 'rm -rf -- "$tmp"' EXIT

mkdir -p "$tmp/crates" "$tmp/LICENSES"
for f in LICENSE.txt LICENSES/CC0-1.0.txt LICENSES/CC-BY-4.0.txt; do
    git -C "$SRC" show "HEAD:$f" >"$tmp/$f"
done

count=0
while read -r name; do
    [[ -n "$name" ]] || continue
    # `ls-tree` on a missing directory prints nothing: that crate has no advisories.
    while read -r path; do
        [[ "$path" == *.md ]] || continue
        mkdir -p "$tmp/crates/$name"
        git -C "$SRC" show "HEAD:$path" >"$tmp/$path"
        count=$((count + 1))
    done < <(git -C "$SRC" ls-tree -r --name-only HEAD -- "crates/$name/")
done <<<"$crates"

printf '%s\n' "$crates" >"$tmp/CRATES"

cat >"$tmp/README.md" <<EOF
# Offline RustSec advisory snapshot

Advisories from the RustSec advisory database (https://rustsec.org,
https://github.com/rustsec/advisory-db) for the crates listed in \`CRATES\`,
the package names of this project's Cargo.lock when the snapshot was cut.
\`scripts/deny.sh\` checks Cargo.lock against them with cargo-deny, offline.

- source commit: \`${commit}\`
- source commit date: ${commit_date}
- advisories kept: ${count}

The advisory files are copied unmodified. They are dedicated to the public
domain under CC0-1.0, except advisories imported from the GitHub Security
Advisory database, which are CC-BY-4.0 and say so in their own \`license\` and
\`url\` fields; see \`LICENSE.txt\` and \`LICENSES/\` (copied from the database).

Regenerate with \`bash scripts/update-advisory-db.sh /path/to/advisory-db\`;
do not edit by hand.
EOF

rm -rf -- "$OUT"
mkdir -p "$(dirname "$OUT")"
cp -R "$tmp" "$OUT"
chmod -R u=rwX,go=rX "$OUT"

echo "snapshot of ${commit} (${commit_date}): ${count} advisories for $(wc -l <"$tmp/CRATES") crates in $OUT"
