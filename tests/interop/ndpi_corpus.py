#!/usr/bin/env python3
"""Builds an interop corpus from a checkout of nDPI's test suite, in the layout of
../shared/pcaps (MANIFEST.tsv, positives/, negatives/), so shared_pcaps.py judges it:

    python3 tests/interop/ndpi_corpus.py NDPI_CHECKOUT OUT [--exclude ../shared/pcaps]
    python3 tests/interop/shared_pcaps.py --relaywatch build/daemon/relaywatch --pcaps OUT

Every capture under NDPI_CHECKOUT/tests/cfgs/*/pcap/ with an expected result (result/<name>.out
beside it) is taken once (identical files once, and none that --exclude holds: the captures
../shared already judges are left out, so what remains is held out). Labels follow
../shared/pcaps/NOTES.md: a flow is remote access when its nDPI protocol (master or app) is
RDP, VNC, TeamViewer, AnyDesk, NoMachine, Radmin, Citrix or SSH; a capture with such a flow
is a positive, any other a negative. The files are symlinked, not copied.
"""
import argparse
import glob
import hashlib
import os
import re
import sys

REMOTE = {"RDP", "VNC", "TeamViewer", "AnyDesk", "NoMachine", "Radmin", "Citrix", "SSH"}
# "	1	TCP 95.237.48.208:59791 <-> 192.168.2.110:6900 [proto: 89/VNC][..."
FLOW_RE = re.compile(r"^\s*\d+\s+(TCP|UDP)\s+(\S+)\s+<?->\s+(\S+)\s+.*?\[proto: [\d.]+/([^\]]+)\]")
HEADER = "file\tset\tsource_repo\tsource_commit\tsource_path\tlicense\tlabels\tpackets\tbytes\n"


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def labels(result):
    found = []
    with open(result, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = FLOW_RE.match(line)
            if not m:
                continue
            proto = m.group(4)
            app = next((p for p in proto.split(".") if p in REMOTE), None)
            if app:
                tag = "" if proto == app else f"[nDPI:{proto}]"
                found.append(f"{app}{tag} {m.group(1)} {m.group(2)}<->{m.group(3)}")
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ndpi")
    ap.add_argument("out")
    ap.add_argument("--exclude", action="append", default=[],
                    help="a folder of captures to leave out (searched recursively)")
    a = ap.parse_args()
    pcaps = sorted(glob.glob(os.path.join(a.ndpi, "tests", "cfgs", "*", "pcap", "*")))
    if not pcaps:
        sys.exit(f"{a.ndpi}: no tests/cfgs/*/pcap/ (not a checkout of nDPI?)")
    skip = set()
    for folder in a.exclude:
        for root, _, files in os.walk(folder):
            skip.update(digest(os.path.join(root, f)) for f in files
                        if f.endswith((".pcap", ".pcapng")))
    rows, seen, left_out = [], set(), 0
    for pcap in pcaps:
        result = os.path.join(os.path.dirname(os.path.dirname(pcap)), "result",
                              os.path.basename(pcap) + ".out")
        # nDPI's other configurations link to default's captures; git may store the links
        # as small text files.
        if (not os.path.isfile(pcap) or os.path.islink(pcap) or os.path.getsize(pcap) < 64
                or not os.path.exists(result)):
            continue
        h = digest(pcap)
        if h in seen or h in skip:
            left_out += h in skip and h not in seen
            seen.add(h)
            continue
        seen.add(h)
        flows = labels(result)
        kind = "positives" if flows else "negatives"
        cfg = os.path.basename(os.path.dirname(os.path.dirname(pcap)))
        name = os.path.basename(pcap) if cfg == "default" else f"{cfg}__{os.path.basename(pcap)}"
        rel = f"{kind}/{name}"
        dest = os.path.join(a.out, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if os.path.lexists(dest):
            os.unlink(dest)
        os.symlink(os.path.abspath(pcap), dest)
        rows.append([rel, kind[:-1], "ntop/nDPI", "", os.path.relpath(pcap, a.ndpi), "LGPL-3.0",
                     "; ".join(flows) if flows else "(no remote-access flow)", "",
                     str(os.path.getsize(pcap))])
    with open(os.path.join(a.out, "MANIFEST.tsv"), "w", encoding="utf-8") as f:
        f.write(HEADER)
        for r in rows:
            f.write("\t".join(r) + "\n")
    positives = sum(r[1] == "positive" for r in rows)
    print(f"{len(rows)} captures ({positives} positive, {len(rows) - positives} negative), "
          f"{left_out} left out as already judged elsewhere -> {a.out}/MANIFEST.tsv")


if __name__ == "__main__":
    main()
