#!/usr/bin/env bash
# Benchmark `ckptctl validate DIR` against `cat` reading the same files
# (the floor: validation can hardly be faster than reading). Generates N
# small profiles (TOML and YAML, all actions, ~10 % with a mistake),
# alternates the two for several runs, prints each run, the medians and the
# ratio. Never fails on noise: it reports against the goal (ckptctl no
# slower than cat) and exits 0 unless a tool cannot run.
#
#   bash scripts/bench-validate-cat.sh [N_PROFILES=10000] [RUNS=7]
#
# Environment: CKPTCTL_BIN (default: build target/release/ckptctl),
# CARGO_TARGET_DIR honoured. CKPTCTL_BEFORE=PATH adds a second ckptctl
# (e.g. a build of the previous commit) to the same rotation, so before and
# after are measured under the same load and printed side by side.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N="${1:-10000}"
RUNS="${2:-7}"

if [[ -z "${CKPTCTL_BIN:-}" ]]; then
    cargo build --release --quiet --bin ckptctl
    CKPTCTL_BIN="${CARGO_TARGET_DIR:-target}/release/ckptctl"
fi

WORK="$(mktemp -d /tmp/ckptctl-bench-cat.XXXXXX)"
trap 'rm -rf -- "$WORK"' EXIT
mkdir -p "$WORK/profiles"
python3 scripts/bench/gen_profiles.py "$WORK/profiles" "$N"

python3 - "$CKPTCTL_BIN" "$WORK/profiles" "$N" "$RUNS" "${CKPTCTL_BEFORE:-}" <<'PY'
import glob, os, statistics, subprocess, sys, time
binary, folder, n, runs, before = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
files = sorted(glob.glob(folder + "/*"))
assert len(files) == n, (len(files), n)

def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t

ours_cmd = [binary, "--color", "never", "validate", folder]
# cat gets the file names like ckptctl finds them (xargs keeps argv bounded).
cat_cmd = ["sh", "-c", 'find "$1" -type f -print0 | xargs -0 cat', "sh", folder]
print(f"{n} profiles, {sum(os.path.getsize(f) for f in files) / 1e6:.1f} MB, "
      f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
before_cmd = [before] + ours_cmd[1:] if before else None
timed(ours_cmd); timed(cat_cmd)  # warm the page cache
ours, cat, old = [], [], []
for i in range(runs):
    a = timed(ours_cmd)
    b = timed(cat_cmd)
    ours.append(a); cat.append(b)
    line = f"run {i + 1}: ckptctl {a * 1000:7.1f} ms   cat {b * 1000:7.1f} ms   ratio {a / b:5.2f}"
    if before_cmd:
        c = timed(before_cmd)
        old.append(c)
        line += f"   before {c * 1000:7.1f} ms   ratio {c / b:5.2f}"
    print(line)
mo, mc = statistics.median(ours), statistics.median(cat)
if old:
    mb = statistics.median(old)
    print(f"median before: {mb * 1000:.1f} ms, {mb / mc:.2f}x the time of cat; "
          f"after/before {mo / mb:.2f}")
print(f"median: ckptctl {mo * 1000:.1f} ms, cat {mc * 1000:.1f} ms; "
      f"ckptctl takes {mo / mc:.2f}x the time of cat  [goal <= 1.0: {'met' if mo <= mc else 'NOT met'}]")
PY
