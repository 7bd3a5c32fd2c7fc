#!/usr/bin/env python3
"""One laptop's client traffic for farm.sh (runs inside the laptop namespace).

Until --deadline (epoch seconds) it runs, all toward the company entry point:
  * one long ssh session whose remote side prints the time once a second
    (a long-lived TCP connection with steady traffic, so TCP timestamps can
    be fitted), started right away and ended ~3 s before the deadline;
  * --n-curls HTTPS requests to the SSO portal (curl, one connection each) at
    seeded times, small seeded sizes;
  * --n-inner HTTPS requests to the intranet inside the corporate VPN
    (--inner-ip), if given.
Writes the events (wall-clock start/end, command, rc, curl's -w line) as JSON.
Every random choice comes from --seed.
"""
import argparse
import json
import random
import subprocess
import sys
import time

SIZES = ["/", "/bytes/20000", "/bytes/60000", "/bytes/150000"]


def curl(name, ip, path, cacert, timeout=20):
    cmd = ["curl", "-sS", "--max-time", str(timeout), "--cacert", cacert, "--resolve",
           "%s:443:%s" % (name, ip), "-o", "/dev/null", "-w",
           "http=%{http_code} bytes=%{size_download} local=%{local_ip}:%{local_port} "
           "connect=%{time_connect} tls=%{time_appconnect} total=%{time_total}",
           "https://%s%s" % (name, path)]
    t = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return {"t": t, "t_end": time.time(), "cmd": " ".join(cmd[-1:]), "rc": p.returncode,
            "out": (p.stdout + p.stderr).strip()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--deadline", type=float, required=True)
    ap.add_argument("--ssh-ip", required=True)
    ap.add_argument("--ssh-config", required=True)
    ap.add_argument("--portal-ip", required=True)
    ap.add_argument("--portal-name", required=True)
    ap.add_argument("--cacert", required=True)
    ap.add_argument("--n-curls", type=int, default=6)
    ap.add_argument("--inner-ip", default="")
    ap.add_argument("--inner-name", default="")
    ap.add_argument("--n-inner", type=int, default=0)
    ap.add_argument("--events", required=True)
    a = ap.parse_args()

    rnd = random.Random(a.seed)
    t0 = time.time()
    span = a.deadline - t0
    events = []
    ok = True
    if span < 15:
        print("%s: only %.1f s left, nothing to do" % (a.name, span), file=sys.stderr)
        return 1
    # long ssh session: the server prints the time every second
    lines = max(5, int(span - 5))
    remote = "for i in $(seq %d); do date +%%s.%%N; sleep 1; done" % lines
    ssh_cmd = ["ssh", "-F", a.ssh_config, "root@" + a.ssh_ip, remote]
    ssh = subprocess.Popen(ssh_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    events.append({"t": time.time(), "kind": "ssh_start", "cmd": " ".join(ssh_cmd[3:])})

    plan = []
    for _ in range(a.n_curls):
        plan.append((t0 + rnd.uniform(3, span - 5), "portal", rnd.choice(SIZES)))
    if a.inner_ip:
        for _ in range(a.n_inner):
            plan.append((t0 + rnd.uniform(3, span - 5), "intranet", rnd.choice(SIZES[:3])))
    plan.sort()
    for when, kind, path in plan:
        d = when - time.time()
        if d > 0:
            time.sleep(d)
        if kind == "portal":
            ev = curl(a.portal_name, a.portal_ip, path, a.cacert)
        else:
            ev = curl(a.inner_name, a.inner_ip, path, a.cacert)
        ev["kind"] = kind
        ok = ok and ev["rc"] == 0
        events.append(ev)
        print("%s %s %s rc=%d %s" % (a.name, kind, path, ev["rc"], ev["out"]), flush=True)
    try:
        out, _ = ssh.communicate(timeout=max(5, a.deadline - time.time() + 10))
    except subprocess.TimeoutExpired:
        ssh.kill()
        out, _ = ssh.communicate()
    n_lines = len([x for x in out.splitlines() if x.strip()])
    events.append({"t": time.time(), "kind": "ssh_end", "rc": ssh.returncode, "lines": n_lines})
    print("%s ssh rc=%s lines=%d (expected %d)" % (a.name, ssh.returncode, n_lines, lines), flush=True)
    ok = ok and ssh.returncode == 0
    with open(a.events, "w") as f:
        json.dump({"name": a.name, "seed": a.seed, "started": t0, "deadline": a.deadline,
                   "events": events}, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
