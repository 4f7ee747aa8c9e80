#!/usr/bin/env bash
# Benchmark (as root): `ckptctl inspect --output json` of a checkpoint of a
# process holding SIZE_MIB (default 1024) of touched memory, against CRIU's
# own decoder on the same files: `crit show` of every image inspect reads
# (inventory, pstree, and per process core, ids, mm, pagemap, fs, fdinfo;
# files), run one after the other as a user would; and, without crit's
# per-file start-up, pycriu decoding the same files in one python process.
# Alternating runs, RUNS each; prints every run, the medians and the ratios.
#
# Also proves inspect reads no page data: under strace, the bytes read from
# pages-*.img (only the pages holding the command lines) and the bytes of
# those files.
#
#   SIZE_MIB=1024 RUNS=9 bash scripts/bench-inspect.sh
#
# Needs crit (scripts/install-criu.sh installs it). Never fails on noise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-9}
CKPTCTL=${CKPTCTL:-target/release/ckptctl}
[[ -x "$CKPTCTL" ]] || cargo build --release --locked --quiet
command -v crit >/dev/null || { echo "crit not found: run scripts/install-criu.sh" >&2; exit 1; }
export SIZE_MIB RUNS CKPTCTL
exec python3 - <<'PY'
import json, os, re, signal, statistics, subprocess, tempfile, time

size, runs = int(os.environ["SIZE_MIB"]), int(os.environ["RUNS"])
ckptctl = os.path.abspath(os.environ["CKPTCTL"])

d = tempfile.mkdtemp(prefix="ckptctl-bench-inspect-")
os.chmod(d, 0o700)
ready = os.path.join(d, "ready")
code = (f"import os,time\nb=bytearray({size}<<20)\n"
        "for i in range(0,len(b),4096): b[i]=1\n"
        f"open({ready!r},'w').close()\nwhile True: time.sleep(0.1)\n")
launcher = subprocess.Popen(["unshare", "--pid", "--fork", "setsid", "python3", "-c", code],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
pid = None
for _ in range(1200):
    try:
        kids = open(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read().split()
        if kids and os.path.exists(ready):
            pid = int(kids[0]); break
    except OSError:
        pass
    time.sleep(0.05)
if pid is None:
    raise SystemExit("workload did not start")
prof = os.path.join(d, "bench.toml")
open(prof, "w").write('version = 1\nname = "bench"\naction = "checkpoint"\n[images]\ndir = "imgs"\n')
out = subprocess.run([ckptctl, "--output", "json", "apply", prof, "--pid", str(pid)],
                     capture_output=True, text=True)
for p in (pid, launcher.pid):
    try: os.kill(p, signal.SIGKILL)
    except ProcessLookupError: pass
launcher.wait()
if out.returncode != 0:
    raise SystemExit(f"checkpoint failed:\n{out.stderr}")
imgs = os.path.join(d, "imgs")
pages = sum(os.path.getsize(os.path.join(imgs, f)) for f in os.listdir(imgs)
            if f.startswith("pages-") and f.endswith(".img"))

# The files inspect reads, for crit.
tree = json.loads(subprocess.run(["crit", "show", os.path.join(imgs, "pstree.img")],
                                 capture_output=True, text=True, check=True).stdout)
pids = [e["pid"] for e in tree["entries"]]
files = ["inventory.img", "pstree.img", "files.img"]
for p in pids:
    files += [f"core-{p}.img", f"ids-{p}.img", f"mm-{p}.img", f"pagemap-{p}.img", f"fs-{p}.img"]
    ids = json.loads(subprocess.run(["crit", "show", os.path.join(imgs, f"ids-{p}.img")],
                                    capture_output=True, text=True, check=True).stdout)
    files.append(f"fdinfo-{ids['entries'][0]['files_id']}.img")
files = [f for f in dict.fromkeys(files) if os.path.exists(os.path.join(imgs, f))]

def t_inspect():
    t = time.monotonic()
    r = subprocess.run([ckptctl, "--output", "json", "inspect", imgs], capture_output=True)
    e = time.monotonic() - t
    if r.returncode != 0:
        raise SystemExit(r.stderr.decode())
    return e

crit_py = os.path.join(os.environ.get("CKPTCTL_CRIT_PREFIX", "/opt/ckptctl-crit"),
                       "usr/lib/python3/dist-packages")
one_proc = ("import sys, pycriu\n"
            "for f in sys.argv[1:]:\n"
            "    pycriu.images.load(open(f, 'rb'))\n")

def t_pycriu():
    t = time.monotonic()
    subprocess.run(["/usr/bin/python3", "-c", one_proc] + [os.path.join(imgs, f) for f in files],
                   env=dict(os.environ, PYTHONPATH=crit_py), capture_output=True, check=True)
    return time.monotonic() - t

def t_crit():
    t = time.monotonic()
    for f in files:
        subprocess.run(["crit", "show", os.path.join(imgs, f)], capture_output=True, check=True)
    return time.monotonic() - t

t_inspect(); t_crit(); t_pycriu()  # warm the page cache
a, b, c = [], [], []
for i in range(runs):
    a.append(t_inspect()); b.append(t_crit()); c.append(t_pycriu())
    print(f"run {i+1}: inspect {a[-1]*1000:8.1f} ms   crit show ({len(files)} files) {b[-1]*1000:8.1f} ms"
          f"   pycriu, one process {c[-1]*1000:8.1f} ms")
ma, mb, mc = statistics.median(a), statistics.median(b), statistics.median(c)
print(f"checkpoint: {size} MiB touched, {pages/2**20:.1f} MiB of pages files, {len(pids)} process(es)")
print(f"median: inspect {ma*1000:.1f} ms, crit show {mb*1000:.1f} ms, pycriu one process {mc*1000:.1f} ms")
print(f"ratios: crit show / inspect = {mb/ma:.1f}x, pycriu one process / inspect = {mc/ma:.1f}x")

# Page data read by inspect (strace: reads on pages-*.img descriptors).
st = os.path.join(d, "strace.txt")
subprocess.run(["strace", "-f", "-e", "trace=openat,read,pread64", "-o", st,
                ckptctl, "--output", "json", "inspect", imgs], capture_output=True)
fds, read_pages = {}, 0
for line in open(st):
    m = re.search(r'openat\(.*"([^"]+)".*\) = (\d+)', line)
    if m:
        fds[m.group(2)] = os.path.basename(m.group(1))
        continue
    m = re.search(r'(?:read|pread64)\((\d+),.*\) = (\d+)', line)
    if m and fds.get(m.group(1), "").startswith("pages-"):
        read_pages += int(m.group(2))
print(f"page data read by inspect: {read_pages} bytes of {pages} (the command lines only)")
subprocess.run(["rm", "-rf", d])
PY
