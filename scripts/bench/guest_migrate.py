"""Guest benchmark of the migration strategies (run by `scripts/test-vm.sh
--bench` inside the QEMU guest; the guest is emulated, so only ratios mean
anything).

Side by side in one run, on the same workload (a python3 counter in its own
pid namespace holding SIZE MiB of touched memory and rewriting DIRTY KiB of
it every 50 ms), both roles of `ckptctl apply` on one host over 127.0.0.1:
stop-and-copy, pre-copy, post-copy from the source's memory, and both.
Downtime is each source's report (dump start -> the destination restored
the tree). Then post-copy at 64 MiB and at 1 GiB (flat in memory size?),
and pre-copy of a workload that dirties memory faster than the rounds copy
it: the convergence rule must stop the rounds and say why.

Env: CKPTCTL (the binary), CKPTCTL_CRIU, SIZE (MiB, default 256), DIRTY
(KiB, default 64), BIG (MiB, default 1024). Exits 0 unless nothing ran.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

CKPTCTL = os.environ["CKPTCTL"]
CRIU = os.environ["CKPTCTL_CRIU"]
SIZE = int(os.environ.get("SIZE", "256"))
DIRTY = int(os.environ.get("DIRTY", "64"))
BIG = int(os.environ.get("BIG", "1024"))
PORT = [27700]


def kill(*pids):
    for p in pids:
        if p:
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def workload(d, mib, dirty_kib):
    counter = os.path.join(d, "counter")
    code = (
        "import os,time\nos.closerange(3,65536)\n"
        f"b=bytearray({mib}<<20)\nfor i in range(0,len(b),4096): b[i]=1\n"
        f"n=({dirty_kib}*1024)//4096\ni=0\n"
        "while True:\n i+=1\n for k in range(n): b[((i*n+k)*4096)%len(b)]=i&255\n"
        f" open({counter!r}+'.t','w').write(str(i)); os.rename({counter!r}+'.t',{counter!r})\n"
        " time.sleep(0.05)\n"
    )
    launcher = subprocess.Popen(
        ["unshare", "--pid", "--fork", "setsid", "python3", "-c", code],
        cwd=d, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(6000):
        try:
            kids = open(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read().split()
            if kids and os.path.exists(counter):
                return launcher, int(kids[0])
        except OSError:
            pass
        time.sleep(0.05)
    kill(launcher.pid)
    return launcher, None


def migrate(d, pid, pre=False, post=False, pre_extra=""):
    PORT[0] += 3
    port = PORT[0]
    text = (
        'version = 1\nname = "bench"\naction = "migrate"\n[images]\ndir = "imgs"\n'
        f'[page_server]\naddress = "127.0.0.1"\nport = {port + 1}\n'
        f'[migration]\ndestination = "127.0.0.1"\ncontrol_port = {port}\nstep_timeout = "300s"\n'
    )
    if pre:
        text += "[checkpoint.pre_dump]\niterations = 5\n" + pre_extra
    if post:
        text += f'[lazy_pages]\nenabled = true\naddress = "127.0.0.1"\nport = {port + 2}\n'
    prof = os.path.join(d, "mig.toml")
    open(prof, "w").write(text)
    r, w = os.pipe()
    dst = subprocess.Popen(
        [CKPTCTL, "--output", "json", "--criu", CRIU, "apply", prof, "--role", "destination",
         "--status-fd", str(w)],
        pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    os.close(w)
    ready = os.read(r, 1)
    os.close(r)
    if ready != b"\0":
        _, err = dst.communicate()
        return None, f"destination not ready: {err[-600:]}"
    src = subprocess.run(
        [CKPTCTL, "--criu", CRIU, "apply", prof, "--role", "source", "--pid", str(pid)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
    )
    out, err = dst.communicate(timeout=900)
    ev = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    mig = next((e for e in ev if e.get("event") == "migrated"), None)
    if src.returncode != 0 or dst.returncode != 0 or mig is None:
        return None, f"src {src.returncode}: {src.stderr[-600:]} / dst {dst.returncode}: {err[-600:]}"
    kill(mig.get("restored_pid"))
    rec = json.load(open(os.path.join(d, "imgs", "ckptctl-run-source.json")))
    dst_rec = json.load(open(os.path.join(d, "imgs", "ckptctl-run-destination.json")))
    rounds = rec.get("stats", {}).get("criu", {}).get("pre_dump_rounds") or []
    why = [l.split("ckptctl: ", 1)[-1] for l in src.stderr.splitlines()
           if "stops after round" in l or "ends after round" in l]
    return {
        "downtime_s": rec["stats"]["downtime"].get("downtime_s"),
        "lazy_s": rec["stats"]["downtime"].get("lazy_after_resume_s"),
        "rounds": [r.get("pages_written") for r in rounds],
        "why": why[0] if why else "",
        "stop": next((r["stop"] for r in rounds if r.get("stop")), ""),
        "breakdown": breakdown(rec, dst_rec),
    }, None


def breakdown(src, dst):
    """Where the downtime went, from both run records: the source's dump up
    to CRIU's post-dump callback (freeze, memory dump, page write: CRIU's
    stats-dump), then the handover until the destination's restore starts,
    the restore (CRIU's restore_time), and what is left (the `restored`
    message, CRIU's start and end around its restore_time)."""
    out = {}
    dump = next((s for s in reversed(src.get("steps", [])) if s["step"] == "dump"), None)
    post = [t for n, t in (dump or {}).get("notifications", []) if n == "post-dump"]
    if dump and post:
        out["to_post_dump"] = post[0] - dump["started_s"]
    st = (src.get("stats", {}).get("criu", {}) or {}).get("dump") or {}
    for k in ("freezing_time_us", "memdump_time_us", "memwrite_time_us"):
        if st.get(k) is not None:
            out[k[:-8]] = st[k] / 1e6
    out["pages_written"] = st.get("pages_written")
    steps = {s["step"]: s for s in dst.get("steps", [])}
    dumped, restore = steps.get("source dumped"), steps.get("restore")
    if dumped and restore:
        out["handover_to_restore"] = restore["started_s"] - (dumped["started_s"] + dumped["duration_s"])
        out["restore_step"] = restore["duration_s"]
    r = (dst.get("stats", {}).get("criu", {}) or {}).get("restore") or {}
    if r.get("restore_time_us") is not None:
        out["criu_restore"] = r["restore_time_us"] / 1e6
    return out


def show_breakdown(b):
    keys = [("to_post_dump", "dump to post-dump"), ("freezing_time", "freezing"),
            ("memdump_time", "memdump"), ("memwrite_time", "memwrite"),
            ("handover_to_restore", "handover to restore"), ("restore_step", "restore step"),
            ("criu_restore", "CRIU restore_time")]
    parts = [f"{label} {b[k] * 1000:.0f} ms" for k, label in keys if b.get(k) is not None]
    if b.get("pages_written") is not None:
        parts.append(f"final dump wrote {b['pages_written']} pages")
    return ", ".join(parts)


def run(name, mib, dirty, **kw):
    with tempfile.TemporaryDirectory(prefix="ckptctl-bench-") as d:
        os.chmod(d, 0o700)
        launcher, pid = workload(d, mib, dirty)
        if pid is None:
            print(f"{name}: the workload did not start", flush=True)
            return None
        try:
            res, err = migrate(d, pid, **kw)
        except Exception as e:  # noise must not fail the bench
            res, err = None, repr(e)
        kill(pid, launcher.pid)
        launcher.wait()
        if res is None:
            print(f"{name}: FAILED ({err.strip()[:600]})", flush=True)
            return None
        line = f"{name:34s} downtime {res['downtime_s'] * 1000:9.1f} ms"
        if res["lazy_s"] is not None:
            line += f"   pages flowed {res['lazy_s'] * 1000:9.1f} ms after the resume"
        if res["rounds"]:
            line += f"   rounds {res['rounds']}"
        print(line, flush=True)
        print(f"{'':34s} breakdown: {show_breakdown(res['breakdown'])}", flush=True)
        if res["why"]:
            print(f"{'':34s} {res['why']}", flush=True)
        return res


def ratio(a, b):
    if a is None or b is None or not b["downtime_s"]:
        return "n/a"
    return f"{a['downtime_s'] / b['downtime_s']:.2f}"


print(f"guest benchmark (emulated: ratios only); workload {SIZE} MiB, {DIRTY} KiB dirtied every 50 ms", flush=True)
stop = run("stop-and-copy", SIZE, DIRTY)
pre = run("pre-copy", SIZE, DIRTY, pre=True)
post = run("post-copy (source's memory)", SIZE, DIRTY, post=True)
both = run("pre-copy then post-copy", SIZE, DIRTY, pre=True, post=True)
print(f"\nratios against stop-and-copy ({SIZE} MiB): pre-copy {ratio(pre, stop)} (goal <= 0.25), "
      f"post-copy {ratio(post, stop)}, both {ratio(both, stop)}", flush=True)
small = run("post-copy 64 MiB", 64, DIRTY, post=True)
big = run(f"post-copy {BIG} MiB", BIG, DIRTY, post=True)
print(f"post-copy downtime {BIG} MiB / 64 MiB: {ratio(big, small)} (goal <= 1.5)", flush=True)
# Dirtied faster than copied: 96 MiB of 128 MiB rewritten every 50 ms.
fast = run("pre-copy, fast-dirtying workload", 128, 96 * 1024, pre=True, pre_extra="min_pages = 16\n")
if fast is not None:
    if fast["stop"]:
        print(f"fast-dirtying: the rule stopped the rounds after {len(fast['rounds'])} of 5 "
              f"(recorded: {fast['stop']})", flush=True)
    else:
        print(f"fast-dirtying: the convergence rule did not stop the rounds ({len(fast['rounds'])} ran)", flush=True)
sys.exit(0 if any(x is not None for x in (stop, pre, post, both, small, big, fast)) else 1)
