#!/usr/bin/env bash
# Benchmark (as root): the same workload (default 256 MiB of touched memory,
# in its own pid namespace) dumped by `ckptctl apply` and by the `criu dump`
# CLI with the same options, alternating, RUNS times each. Prints wall time
# and CRIU's frozen time per run, the median ratios ckptctl/criu, and
# ckptctl's own peak RSS. Never fails on noise; exits non-zero only if a
# dump fails.
#
#   SIZE_MIB=256 RUNS=5 bash scripts/bench-apply.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZE_MIB=${SIZE_MIB:-256}
RUNS=${RUNS:-5}
CKPTCTL=${CKPTCTL:-target/release/ckptctl}
[[ -x "$CKPTCTL" ]] || cargo build --release --locked --quiet
CRIU=${CKPTCTL_CRIU:-$(command -v criu)}
export SIZE_MIB RUNS CKPTCTL CRIU
exec python3 - <<'PY'
import json, os, re, signal, statistics, subprocess, tempfile, time

size, runs = int(os.environ["SIZE_MIB"]), int(os.environ["RUNS"])
ckptctl, criu = os.path.abspath(os.environ["CKPTCTL"]), os.environ["CRIU"]

def workload(d):
    ready = os.path.join(d, "ready")
    code = (f"import os,time\nb=bytearray({size}<<20)\n"
            "for i in range(0,len(b),4096): b[i]=1\n"
            f"open({ready!r},'w').close()\nwhile True: time.sleep(0.1)\n")
    launcher = subprocess.Popen(["unshare", "--pid", "--fork", "setsid", "python3", "-c", code],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = None
    for _ in range(600):
        try:
            kids = open(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read().split()
            if kids and os.path.exists(ready):
                pid = int(kids[0]); break
        except OSError:
            pass
        time.sleep(0.05)
    if pid is None:
        raise SystemExit("workload did not start")
    return launcher, pid

def reap(launcher, pid):
    for p in (pid, launcher.pid):
        try: os.kill(p, signal.SIGKILL)
        except ProcessLookupError: pass
    launcher.wait()

def run_ckptctl(d, pid):
    prof = os.path.join(d, "bench.toml")
    open(prof, "w").write('version = 1\nname = "bench"\naction = "checkpoint"\n'
                          '[images]\ndir = "imgs-ckptctl"\n[cgroups]\nmode = "soft"\n')
    t = time.monotonic()
    out = subprocess.run([ckptctl, "--output", "json", "--criu", criu, "apply", prof, "--pid", str(pid)],
                         capture_output=True, text=True)
    wall = time.monotonic() - t
    if out.returncode != 0:
        raise SystemExit(f"ckptctl failed:\n{out.stderr}")
    v = json.loads(out.stdout)
    rec = json.load(open(os.path.join(d, "imgs-ckptctl", "ckptctl-run.json")))
    return wall, v["stats"]["dump"]["frozen_time_us"] / 1000, rec.get("ckptctl_peak_rss_kib", 0)

def run_criu(d, pid):
    img = os.path.join(d, "imgs-criu"); os.makedirs(img, mode=0o700)
    cmd = [criu, "dump", "--no-default-config", "-t", str(pid), "-D", img, "-o", "dump.log", "-v4",
           "--manage-cgroups=soft", "--network-lock", "iptables", "--ghost-limit", "1048576",
           "--timeout", "10", "--display-stats"]
    t = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t
    if out.returncode != 0:
        raise SystemExit(f"criu dump failed ({out.returncode}):\n{out.stderr[-2000:]}")
    m = re.search(r"Frozen time:\s*(\d+)", out.stdout + out.stderr)
    return wall, (int(m.group(1)) / 1000 if m else float("nan")), 0

rows = {"ckptctl": [], "criu": []}
for i in range(runs):
    order = [("ckptctl", run_ckptctl), ("criu", run_criu)]
    if i % 2: order.reverse()
    for name, fn in order:
        with tempfile.TemporaryDirectory(prefix="ckptctl-bench-") as d:
            launcher, pid = workload(d)
            try:
                rows[name].append(fn(d, pid))
            finally:
                reap(launcher, pid)
        w, f, rss = rows[name][-1]
        print(f"run {i+1} {name:8s} wall {w*1000:8.1f} ms  frozen {f:8.1f} ms" + (f"  ckptctl peak RSS {rss/1024:.1f} MiB" if rss else ""))

med = lambda xs: statistics.median(xs)
cw, cf = med([r[0] for r in rows["ckptctl"]]), med([r[1] for r in rows["ckptctl"]])
rw, rf = med([r[0] for r in rows["criu"]]), med([r[1] for r in rows["criu"]])
rss = max(r[2] for r in rows["ckptctl"]) / 1024
print(f"\nworkload {size} MiB, {runs} alternating runs each (medians)")
print(f"wall time:   ckptctl {cw*1000:.1f} ms / criu CLI {rw*1000:.1f} ms = ratio {cw/rw:.3f} (target <= 1.05)")
print(f"frozen time: ckptctl {cf:.1f} ms / criu CLI {rf:.1f} ms = ratio {cf/rf:.3f}")
print(f"ckptctl peak RSS: {rss:.1f} MiB (target < 20 MiB)")
PY
