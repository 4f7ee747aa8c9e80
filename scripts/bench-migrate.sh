#!/usr/bin/env bash
# Benchmark (as root): migration downtime of one workload (SIZE of touched
# memory, default 1G; SIZE=256M for a quick run) in its own pid namespace,
# through a page server on 127.0.0.1, each strategy this machine runs:
#   ckptctl:      stop-and-copy: `apply --role destination` (page server via
#                 swrk) then `apply --role source --pid N`; downtime = its
#                 report (dump start -> destination restored);
#   ckptctl-post: the same plus `[lazy_pages]` without an address: post-copy
#                 from the destination's images (lazy restore, a local
#                 lazy-pages daemon fills the memory after the resume);
#   criu:    `criu page-server` & `sleep 1`, `criu dump --page-server`,
#            `criu restore -d`; downtime = dump start -> restore end.
# Alternating runs, RUNS each; prints per-run figures, medians and ratios.
# Never fails on noise: exits 0 unless set-up is impossible (then it says
# why and exits 0 too, as a skip).
#
#   SIZE=256M RUNS=3 bash scripts/bench-migrate.sh
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZE=${SIZE:-1G}
RUNS=${RUNS:-3}
CKPTCTL=${CKPTCTL:-target/release/ckptctl}
if [[ $(id -u) != 0 ]]; then echo "skip: needs root"; exit 0; fi
CRIU=${CKPTCTL_CRIU:-$(command -v criu || true)}
if [[ -z "$CRIU" ]]; then echo "skip: no criu"; exit 0; fi
[[ -x "$CKPTCTL" ]] || cargo build --release --locked --quiet || { echo "skip: build failed"; exit 0; }
case "$SIZE" in
  *G|*g) SIZE_MIB=$(( ${SIZE%[Gg]} * 1024 ));;
  *M|*m) SIZE_MIB=${SIZE%[Mm]};;
  *) SIZE_MIB=$SIZE;;
esac
export SIZE_MIB RUNS CKPTCTL CRIU
exec python3 - <<'PY'
import json, os, signal, statistics, subprocess, tempfile, time, sys

size, runs = int(os.environ["SIZE_MIB"]), int(os.environ["RUNS"])
ckptctl, criu = os.path.abspath(os.environ["CKPTCTL"]), os.environ["CRIU"]
port = 27600 + os.getpid() % 300

def workload(d):
    ready = os.path.join(d, "ready")
    code = (f"import os,time\nb=bytearray({size}<<20)\n"
            "for i in range(0,len(b),4096): b[i]=1\n"
            f"open({ready!r},'w').close()\nwhile True: time.sleep(0.1)\n")
    launcher = subprocess.Popen(["unshare", "--pid", "--fork", "setsid", "python3", "-c", code],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(1200):
        try:
            kids = open(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read().split()
            if kids and os.path.exists(ready):
                return launcher, int(kids[0])
        except OSError:
            pass
        time.sleep(0.05)
    kill(launcher.pid)
    return launcher, None

def kill(*pids):
    for p in pids:
        if p:
            try: os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError): pass

def run_ckptctl(d, pid, lazy=False):
    global port
    port += 2
    prof = os.path.join(d, "mig.toml")
    open(prof, "w").write(
        'version = 1\nname = "bench"\naction = "migrate"\n[images]\ndir = "imgs-ckptctl"\n'
        f'[page_server]\naddress = "127.0.0.1"\nport = {port + 1}\n'
        f'[migration]\ndestination = "127.0.0.1"\ncontrol_port = {port}\nstep_timeout = "120s"\n'
        + ('[lazy_pages]\nenabled = true\n' if lazy else ''))
    r, w = os.pipe()
    dst = subprocess.Popen([ckptctl, "--criu", criu, "apply", prof, "--role", "destination", "--status-fd", str(w)],
                           pass_fds=(w,), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(w)
    ready = os.read(r, 1); os.close(r)
    if ready != b"\0":
        out, err = dst.communicate()
        return None, f"destination not ready: {err[-800:]}"
    t = time.monotonic()
    src = subprocess.run([ckptctl, "--criu", criu, "apply", prof, "--role", "source", "--pid", str(pid)],
                         capture_output=True, text=True)
    wall = time.monotonic() - t
    out, err = dst.communicate(timeout=300)
    ev = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    mig = next((e for e in ev if e.get("event") == "migrated"), None)
    if src.returncode != 0 or dst.returncode != 0 or mig is None:
        return None, f"ckptctl failed: src {src.returncode} {src.stderr[-800:]} dst {dst.returncode} {err[-800:]}"
    kill(mig.get("restored_pid"))
    dt = mig["downtime"]
    return {"downtime_s": dt.get("downtime_s"), "frozen_ms": dt.get("frozen_ms"), "wall_s": wall,
            "lazy_after_s": dt.get("lazy_after_resume_s")}, None

def run_criu(d, pid):
    global port
    port += 2
    img = os.path.join(d, "imgs-criu"); os.makedirs(img, mode=0o700)
    ps = subprocess.Popen([criu, "page-server", "--no-default-config", "-D", img, "--address", "127.0.0.1",
                           "--port", str(port), "-o", "page-server.log", "-v4"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    t = time.monotonic()
    dump = subprocess.run([criu, "dump", "--no-default-config", "-t", str(pid), "-D", img, "-o", "dump.log", "-v4",
                           "--manage-cgroups=soft", "--page-server", "--address", "127.0.0.1", "--port", str(port),
                           "--display-stats"], capture_output=True, text=True)
    if dump.returncode != 0:
        kill(ps.pid); ps.wait()
        return None, f"criu dump failed: {dump.stderr[-800:]}"
    try: ps.wait(timeout=60)
    except subprocess.TimeoutExpired: kill(ps.pid); ps.wait()
    pidfile = os.path.join(d, "restored.pid")
    rst = subprocess.run([criu, "restore", "--no-default-config", "-D", img, "-d", "-o", "restore.log", "-v4",
                          "--manage-cgroups=soft", "--pidfile", pidfile], capture_output=True, text=True)
    downtime = time.monotonic() - t
    if rst.returncode != 0:
        return None, f"criu restore failed: {rst.stderr[-800:]}"
    try: kill(int(open(pidfile).read().strip()))
    except (OSError, ValueError): pass
    import re
    m = re.search(r"Frozen time:\s*(\d+)", dump.stdout + dump.stderr)
    return {"downtime_s": downtime, "frozen_ms": int(m.group(1)) / 1000 if m else None, "wall_s": downtime}, None

rows = {"ckptctl": [], "ckptctl-post": [], "criu": []}
for i in range(runs):
    order = [("ckptctl", run_ckptctl), ("ckptctl-post", lambda d, p: run_ckptctl(d, p, lazy=True)),
             ("criu", run_criu)]
    if i % 2: order.reverse()
    for name, fn in order:
        with tempfile.TemporaryDirectory(prefix="ckptctl-bench-mig-") as d:
            os.chmod(d, 0o700)
            launcher, pid = workload(d)
            if pid is None:
                print(f"run {i+1} {name}: workload did not start; skipped"); continue
            try:
                res, err = fn(d, pid)
            except Exception as e:  # noise must not fail the bench
                res, err = None, repr(e)
            kill(pid, launcher.pid); launcher.wait()
            if res is None:
                print(f"run {i+1} {name:12s}: FAILED ({err.strip()[:400]})")
                continue
            rows[name].append(res)
            fm = res["frozen_ms"]
            la = res.get("lazy_after_s")
            print(f"run {i+1} {name:12s}: downtime {res['downtime_s']*1000:8.1f} ms"
                  f"   frozen {fm if fm is None else round(fm,1)} ms"
                  + (f"   pages still loading {la*1000:.1f} ms after resume" if la is not None else ""),
                  flush=True)

def med(name, key):
    v = [r[key] for r in rows[name] if r.get(key) is not None]
    return statistics.median(v) if v else None

print(f"\nworkload {size} MiB, {runs} alternating runs each, page server on 127.0.0.1")
for key, unit, k in (("downtime_s", "ms", 1000), ("frozen_ms", "ms", 1)):
    b = med("criu", key)
    for name in ("ckptctl", "ckptctl-post"):
        a = med(name, key)
        if a is None or b is None:
            print(f"median {key} {name}: not enough successful runs"); continue
        print(f"median {key:10s}: {name:12s} {a*k:8.1f} {unit}   criu CLI {b*k:8.1f} {unit}   ratio {a/b:5.2f}")
sys.exit(0)
PY
