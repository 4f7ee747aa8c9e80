#!/usr/bin/env bash
# Benchmark `ckptctl validate DIR` against check-jsonschema with our schema on
# the same 1,000 generated profiles (TOML and YAML, all actions, ~10 % with a
# mistake). Alternates the two tools for several runs and prints each run,
# the medians, the ratio and the time per profile. Never fails on noise: it
# reports against the targets (>= 20x faster, < 1 ms per profile) and exits 0
# unless a tool cannot run.
#
#   bash scripts/bench-validate.sh [N_PROFILES=1000] [RUNS=5]
#
# Environment: CKPTCTL_BIN (default: build target/release/ckptctl),
# CARGO_TARGET_DIR honoured.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N="${1:-1000}"
RUNS="${2:-5}"
SCHEMA="$PWD/schemas/ckptctl-profile.schema.json"

if [[ -z "${CKPTCTL_BIN:-}" ]]; then
    cargo build --release --quiet --bin ckptctl
    CKPTCTL_BIN="${CARGO_TARGET_DIR:-target}/release/ckptctl"
fi
command -v check-jsonschema >/dev/null || { echo "check-jsonschema not found (pip install check-jsonschema)" >&2; exit 2; }

WORK="$(mktemp -d /tmp/ckptctl-bench.XXXXXX)"
trap 'rm -rf -- "$WORK"' EXIT
mkdir -p "$WORK/profiles" "$WORK/schemas"
cp "$SCHEMA" "$WORK/schemas/"
python3 scripts/bench/gen_profiles.py "$WORK/profiles" "$N"

python3 - "$CKPTCTL_BIN" "$WORK/profiles" "$SCHEMA" "$N" "$RUNS" <<'PY'
import glob, statistics, subprocess, sys, time
binary, folder, schema, n, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
files = sorted(glob.glob(folder + "/*"))
assert len(files) == n, (len(files), n)

def timed(cmd):
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return time.perf_counter() - t, r

ours_cmd = [binary, "--color", "never", "validate", folder]
theirs_cmd = ["check-jsonschema", "--schemafile", schema] + files
# Sanity: both find the same invalid files (structural ones at least).
_, r = timed([binary, "--output", "json", "validate", folder])
print(f"ckptctl exit {r.returncode}; check-jsonschema exit {timed(theirs_cmd)[1].returncode} (1/2 expected: ~10 % are broken on purpose)")
timed(ours_cmd)  # warm the page cache
ours, theirs = [], []
for i in range(runs):
    a, _ = timed(ours_cmd)
    b, _ = timed(theirs_cmd)
    ours.append(a); theirs.append(b)
    print(f"run {i + 1}: ckptctl {a * 1000:8.1f} ms   check-jsonschema {b * 1000:8.1f} ms   ratio {b / a:6.1f}x")
mo, mt = statistics.median(ours), statistics.median(theirs)
ratio = mt / mo
per = mo * 1000 / n
print(f"median: ckptctl {mo * 1000:.1f} ms for {n} profiles ({per:.3f} ms/profile), "
      f"check-jsonschema {mt * 1000:.1f} ms ({mt * 1000 / n:.3f} ms/profile)")
print(f"ratio: ckptctl is {ratio:.1f}x faster  [target >= 20x: {'met' if ratio >= 20 else 'NOT met'}; "
      f"target < 1 ms/profile: {'met' if per < 1 else 'NOT met'}]")
PY
