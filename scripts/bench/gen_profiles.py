#!/usr/bin/env python3
"""Write N varied ckptctl profiles (TOML and YAML, every action, most
tables, about 10 % with a mistake) into a folder, deterministically.

    python3 scripts/bench/gen_profiles.py DIR [N]
"""
import os
import random
import sys

out = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
rng = random.Random(1234)
os.makedirs(out, exist_ok=True)


def profile(i):
    action = rng.choice(["checkpoint", "restore", "migrate"])
    p = {"version": 1, "name": f"svc-{i}", "description": f"generated profile {i}", "action": action}
    t = {}
    t["images"] = {"dir": f"/var/lib/ckptctl/svc-{i}", "log_level": rng.choice([1, 2, 3, 4])}
    if rng.random() < 0.3:
        t["images"]["work_dir"] = f"/var/lib/ckptctl/svc-{i}/work"
    t["process"] = {k: rng.random() < 0.5 for k in ["tcp_established", "ext_unix_sk", "shell_job", "file_locks", "link_remap"]}
    if rng.random() < 0.3:
        t["process"]["external"] = [f"mnt[/data{j}]:data{j}" for j in range(rng.randint(1, 3))]
    if action != "restore":
        t["target"] = rng.choice([{"pid": rng.randint(2, 99999)}, {"pidfile": f"/run/svc-{i}.pid"}])
        c = {"ghost_limit": rng.choice(["1MiB", "512K", "8MiB", 1048576]), "timeout": rng.choice(["10s", "2m", 30]),
             "network_lock": rng.choice(["iptables", "nftables", "skip"])}
        if action == "checkpoint":
            c["leave_running"] = rng.random() < 0.5
        if rng.random() < 0.4:
            c["pre_dump"] = {"iterations": rng.randint(1, 64), "mode": rng.choice(["splice", "read"]),
                             "min_pages": rng.randint(0, 1000), "max_growth": round(rng.random(), 2)}
            c["auto_dedup"] = True
        t["checkpoint"] = c
    if action == "restore":
        t["restore"] = {"tcp_close": rng.random() < 0.5, "pidfile": f"/run/svc-{i}.pid",
                        "veth_pairs": [{"inside": f"eth{j}", "outside": f"v{i}-{j}"} for j in range(rng.randint(0, 3))]}
    t["cgroups"] = {"mode": rng.choice(["soft", "full", "strict", "ignore", "props", "none", "default"])}
    if rng.random() < 0.3:
        t["cgroups"]["roots"] = [{"controller": "cpu", "path": f"/svc-{i}"}, {"path": f"/svc-{i}"}]
    if action == "migrate":
        t["page_server"] = {"address": f"10.0.{i % 250}.{1 + i % 200}", "port": rng.randint(1024, 65535)}
        if rng.random() < 0.5:
            t["page_server"]["tls"] = {"ca_cert": "/etc/ckptctl/ca.pem", "cert": "/etc/ckptctl/c.pem", "key": "/etc/ckptctl/c.key"}
        t["migration"] = {"destination": f"host-{i}.example.com", "control_port": rng.randint(1024, 65535),
                          "images": rng.choice(["shared", "send"]), "step_timeout": "60s"}
        if rng.random() < 0.3:
            t["lazy_pages"] = {"enabled": True, "address": "10.1.0.1", "port": 27010}
    t["criu"] = {"host_config": "ignore", "min_version": "3.17"}
    # About 10 % carry one mistake (the kind people make).
    r = rng.random()
    if r < 0.03:
        t["process"]["tcp_establised"] = True
    elif r < 0.06:
        t["images"]["log_level"] = 7
    elif r < 0.08:
        t["cgroups"]["mode"] = "hard"
    elif r < 0.10:
        t["checkpoint"] = dict(t.get("checkpoint", {}), ghost_limit="1MB")
    return p, t


def toml_val(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_val(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_val(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def to_toml(p, t):
    lines = ["#:schema ../schemas/ckptctl-profile.schema.json"] + [f"{k} = {toml_val(v)}" for k, v in p.items()]
    for name, table in t.items():
        subs = {k: v for k, v in table.items() if isinstance(v, dict)}
        lines += ["", f"[{name}]"] + [f"{k} = {toml_val(v)}" for k, v in table.items() if k not in subs]
        for s, st in subs.items():
            lines += ["", f"[{name}.{s}]"] + [f"{k} = {toml_val(v)}" for k, v in st.items()]
    return "\n".join(lines) + "\n"


def yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def yaml_block(d, indent):
    pad = "  " * indent
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(f"{pad}{k}:")
            out += yaml_block(v, indent + 1)
        elif isinstance(v, list):
            if not v:
                out.append(f"{pad}{k}: []")
                continue
            out.append(f"{pad}{k}:")
            for item in v:
                if isinstance(item, dict):
                    first = True
                    for ik, iv in item.items():
                        out.append(f"{pad}  {'- ' if first else '  '}{ik}: {yaml_scalar(iv)}")
                        first = False
                else:
                    out.append(f"{pad}  - {yaml_scalar(item)}")
        else:
            out.append(f"{pad}{k}: {yaml_scalar(v)}")
    return out


def to_yaml(p, t):
    lines = ["# yaml-language-server: $schema=../schemas/ckptctl-profile.schema.json"]
    lines += yaml_block(p, 0)
    for name, table in t.items():
        lines += ["", f"{name}:"] + yaml_block(table, 1)
    return "\n".join(lines) + "\n"


for i in range(n):
    p, t = profile(i)
    if i % 2 == 0:
        open(os.path.join(out, f"p{i:04}.toml"), "w").write(to_toml(p, t))
    else:
        open(os.path.join(out, f"p{i:04}.yaml"), "w").write(to_yaml(p, t))
