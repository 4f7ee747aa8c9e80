#!/usr/bin/env bash
# Benchmark (as root): `ckptctl apply` of a container checkpoint profile
# against the equivalent plain `runc checkpoint` command, on the same
# counting busybox container (leave_running, so both dump the same
# container), alternating, RUNS times each, each into a fresh directory.
# Prints wall time per run and the ratio of the medians ckptctl/runc. Never
# fails on noise; exits non-zero only if a checkpoint fails.
# CKPTCTL_BEFORE=PATH adds a second ckptctl (e.g. a build of the previous
# commit) to the same rotation, so before and after are measured under the
# same load and printed side by side.
#
#   RUNS=9 bash scripts/bench-runc.sh
#   RUNS=21 CKPTCTL_BEFORE=/tmp/ckptctl-old bash scripts/bench-runc.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${RUNS:-9}
CKPTCTL=${CKPTCTL:-target/release/ckptctl}
[[ -x "$CKPTCTL" ]] || cargo build --release --locked --quiet
CRIU=${CKPTCTL_CRIU:-$(command -v criu)}
RUNC=${CKPTCTL_RUNC:-$(command -v runc)}
BUSYBOX=$(command -v busybox || echo /bin/busybox)
CKPTCTL_BEFORE=${CKPTCTL_BEFORE:-}
export RUNS CKPTCTL CKPTCTL_BEFORE CRIU RUNC BUSYBOX
exec python3 - <<'PY'
import json, os, shutil, statistics, subprocess, tempfile, time

runs = int(os.environ["RUNS"])
ckptctl, criu, runc = os.path.abspath(os.environ["CKPTCTL"]), os.environ["CRIU"], os.environ["RUNC"]
before = os.environ["CKPTCTL_BEFORE"] and os.path.abspath(os.environ["CKPTCTL_BEFORE"])

with tempfile.TemporaryDirectory(prefix="ckptctl-bench-runc-") as d:
    os.chmod(d, 0o700)
    bundle, root = os.path.join(d, "bundle"), os.path.join(d, "runc-root")
    os.makedirs(os.path.join(bundle, "rootfs/bin"))
    shutil.copy(os.environ["BUSYBOX"], os.path.join(bundle, "rootfs/bin/busybox"))
    for a in ("sh", "sleep", "mv"):
        os.symlink("busybox", os.path.join(bundle, "rootfs/bin", a))
    subprocess.run([runc, "spec", "--bundle", bundle], check=True)
    cfg = json.load(open(os.path.join(bundle, "config.json")))
    cfg["process"]["terminal"] = False
    cfg["process"].pop("rlimits", None)
    cfg["process"]["args"] = ["/bin/sh", "-c",
        "i=0; while :; do i=$((i+1)); echo $i > /count.tmp; mv -f /count.tmp /count; sleep 0.05; done"]
    cfg["root"]["readonly"] = False
    json.dump(cfg, open(os.path.join(bundle, "config.json"), "w"))
    cid = f"ckptctl-bench-{os.getpid()}"
    subprocess.run([runc, "--root", root, "run", "-d", "--bundle", bundle, cid], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def ckptctl_run(binary, tag):
            def run(i):
                prof = os.path.join(d, f"bench-{tag}-{i}.toml")
                open(prof, "w").write(
                    f'version = 1\nname = "bench"\naction = "checkpoint"\n[target]\ncontainer = "{cid}"\n'
                    f'runtime_root = "runc-root"\n[images]\ndir = "{tag}-{i}"\n[checkpoint]\nleave_running = true\n')
                t = time.monotonic()
                out = subprocess.run([binary, "-q", "--criu", criu, "apply", prof], capture_output=True, text=True,
                                     env=dict(os.environ, CKPTCTL_RUNC=runc))
                wall = time.monotonic() - t
                if out.returncode != 0:
                    raise SystemExit(f"{tag} failed:\n{out.stderr}")
                # ckptctl's own time: the wall time less the runc run its
                # record timed (less noisy than the ratio on a busy host).
                rec = json.load(open(os.path.join(d, f"{tag}-{i}", "ckptctl-run.json")))
                own[tag].append(wall - sum(s["duration_s"] for s in rec["steps"]))
                return wall
            return run

        def run_runc(i):
            img = os.path.join(d, f"runc-{i}"); os.makedirs(img, mode=0o700)
            cmd = [runc, "--root", root, "--criu", criu, "checkpoint", "--image-path", img, "--work-path", img,
                   "--leave-running", "--manage-cgroups-mode", "soft", cid]
            t = time.monotonic()
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"runc checkpoint failed:\n{out.stderr}")
            return time.monotonic() - t

        order = [("ckptctl", ckptctl_run(ckptctl, "ckptctl")), ("runc", run_runc)]
        if before:
            order.insert(1, ("before", ckptctl_run(before, "before")))
        rows = {name: [] for name, _ in order}
        own = {name: [] for name, _ in order}
        for i in range(runs):
            # Each run starts with another of them: none always goes first.
            k = i % len(order)
            for name, fn in order[k:] + order[:k]:
                rows[name].append(fn(i))
                print(f"run {i+1} {name:8s} wall {rows[name][-1]*1000:8.1f} ms")
    finally:
        subprocess.run([runc, "--root", root, "delete", "-f", cid], stderr=subprocess.DEVNULL)

c, r = statistics.median(rows["ckptctl"]), statistics.median(rows["runc"])
print(f"\n{runs} alternating runs each (medians), same container, leave_running")
if before:
    b = statistics.median(rows["before"])
    print(f"wall time: before {b*1000:.1f} ms / runc checkpoint {r*1000:.1f} ms = ratio {b/r:.3f} ({before})")
print(f"wall time: ckptctl apply {c*1000:.1f} ms / runc checkpoint {r*1000:.1f} ms = ratio {c/r:.3f} (goal <= 1.05)")
for tag in [t for t in ("before", "ckptctl") if own.get(t)]:
    print(f"{tag}'s own time (wall less its runc run, median): {statistics.median(own[tag])*1000:.1f} ms")
PY
