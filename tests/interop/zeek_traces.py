#!/usr/bin/env python3
"""Held-out interop check against Zeek's test suite: every RDP, RFB (VNC) and SSH session that
Zeek's own baseline logs name for its test traces must come out of relaywatch as a
remote_session of that app.

    git clone https://github.com/zeek/zeek
    python3 tests/interop/zeek_traces.py --zeek zeek --relaywatch build/daemon/relaywatch

For each test under testing/btest/scripts/base/protocols/{rdp,rfb,ssh}/ whose baseline holds
that protocol's log (rdp.log, rfb.log, ssh.log), the traces its `@TEST-EXEC: zeek ... -r`
lines read are replayed with the default config, and the log's connections (orig and resp
address and port) are matched, in either direction, with relaywatch's sessions. Sessions
Zeek's log does not list are printed, not failed (a test's script may log less than the
trace holds). Prints one line per test and "N passed, M failed"; exit 0/1, 77 without a
checkout.
"""
import argparse
import glob
import gzip
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shared_pcaps import run_relaywatch  # noqa: E402  (the same replay)

APPS = {"rdp": "rdp", "rfb": "vnc", "ssh": "ssh"}
TRACE_RE = re.compile(r"@TEST-EXEC:.*\bzeek\b.*?-r\s+\$TRACES/(\S+)")


def log_connections(path):
    """(orig_h, orig_p, resp_h, resp_p) of each row of a Zeek ASCII log."""
    fields, rows = None, []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#fields"):
                fields = line.split("\t")[1:]
            elif line.startswith("ts\t"):  # btest's canonified header
                fields = line.split("\t")
            elif line and not line.startswith("#") and fields:
                row = dict(zip(fields, line.split("\t")))
                try:
                    rows.append((row["id.orig_h"], int(row["id.orig_p"]),
                                 row["id.resp_h"], int(row["id.resp_p"])))
                except (KeyError, ValueError):
                    continue
    return rows


def sessions(binary, trace, work):
    if trace.endswith(".gz"):
        plain = os.path.join(work, os.path.basename(trace)[:-3])
        with gzip.open(trace, "rb") as src, open(plain, "wb") as dst:
            shutil.copyfileobj(src, dst)
        trace = plain
    rc, stderr, events = run_relaywatch(binary, trace, work)
    if rc != 0:
        return None, stderr.strip()
    return [(e["remote_session"]["app"], e["src_ip"], e.get("src_port"), e["dest_ip"],
             e.get("dest_port")) for e in events if e.get("event_type") == "remote_session"], ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zeek", default=os.environ.get("RELAYWATCH_ZEEK_SRC"),
                    help="a checkout of github.com/zeek/zeek")
    ap.add_argument("--relaywatch", required=True)
    a = ap.parse_args()
    btest = os.path.join(a.zeek or "", "testing", "btest")
    if not a.zeek or not os.path.isdir(os.path.join(btest, "Traces")):
        print(f"SKIP: no Zeek checkout ({a.zeek})")
        return 77
    passed, failures = 0, []
    with tempfile.TemporaryDirectory() as work:
        for proto, app in APPS.items():
            scripts = sorted(glob.glob(os.path.join(btest, "scripts", "base", "protocols", proto,
                                                    "*")))
            for script in scripts:
                name = os.path.splitext(os.path.basename(script))[0]
                log = os.path.join(btest, "Baseline", f"scripts.base.protocols.{proto}.{name}",
                                   f"{proto}.log")
                if not os.path.exists(log):
                    continue
                with open(script, encoding="utf-8", errors="replace") as f:
                    traces = TRACE_RE.findall(f.read())
                expected = log_connections(log)
                if not traces or not expected:
                    continue
                found = []
                for trace in traces:
                    got, error = sessions(a.relaywatch, os.path.join(btest, "Traces", trace), work)
                    if got is None:
                        failures.append(f"{proto}/{name}: {trace}: {error}")
                        break
                    found += [s for s in got if s[0] == app]
                else:
                    ours = {frozenset({(s[1], s[2]), (s[3], s[4])}) for s in found}
                    missed = [c for c in expected
                              if frozenset({(c[0], c[1]), (c[2], c[3])}) not in ours]
                    theirs = {frozenset({(c[0], c[1]), (c[2], c[3])}) for c in expected}
                    extra = [s for s in found if frozenset({(s[1], s[2]), (s[3], s[4])})
                             not in theirs]
                    line = (f"{proto}/{name}: {len(expected) - len(missed)} / {len(expected)} "
                            f"of Zeek's {proto}.log found as {app} ({', '.join(traces)})")
                    if extra:
                        line += f"; {len(extra)} more {app} session(s) not in Zeek's log"
                    print(line)
                    if missed:
                        failures.append(f"{proto}/{name}: missed {missed}")
                    else:
                        passed += 1
    for f in failures:
        print(f"FAIL: {f}")
    print(f"{passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
