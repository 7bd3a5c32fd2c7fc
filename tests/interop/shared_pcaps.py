#!/usr/bin/env python3
"""Interop suite: replays the peer-labelled captures in ../shared/pcaps through relaywatch.

Positives: every labelled remote-access flow of an app relaywatch claims to identify must
come out as a remote_session with that app (5-tuple matched in either direction; for the
GRE/Geneve captures, whose JA4 labels pair the outer addresses with the inner ports, the
ports and transport are matched). Negatives: no remote_session at all.

Also lists the relay (latency) methods' alerts on the negatives, without failing on them:
those captures are real clients (phones, an Echo, macOS apps) filtered to one application's
flows, so a client slow on its own shows there without the rest of its host's traffic
(docs/relay-quality.md, "Real clients: the shared captures' negatives").

Prints a per-app table, false sessions per negative file, and a closing
"N passed, M failed" line. Exit 0 when nothing failed, 77 when the corpus is absent (ctest
reports a skip), 1 otherwise.
"""
import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile

# App names as relaywatch spells them, keyed by the label's app (before any "[nDPI:...]").
LABEL_TO_APP = {
    "RDP": "rdp", "VNC": "vnc", "SSH": "ssh", "AnyDesk": "anydesk",
    "TeamViewer": "teamviewer", "NoMachine": "nomachine", "Radmin": "radmin",
    "Citrix": "citrix",
}
# The latency methods (docs/detectors/relay.md).
RELAY_METHODS = {"hidden_leg", "controller_rtt", "stepping_stone", "routed_relay", "keystrokes"}

# What relaywatch identifies today; labels of other apps are reported but do
# not fail the run (they belong to the next detector release).
DEFAULT_SUPPORTED = "rdp,vnc,ssh,teamviewer,nomachine,radmin,citrix,anydesk"

LABEL_RE = re.compile(
    r"^(?P<app>\w+)(?:\[[^\]]*\])?\s+(?P<l4>TCP|UDP)\s+(?P<a>\S+)<->(?P<b>\S+?)(?P<note>\s+\(.*\))?$")


def split_endpoint(text):
    if text.startswith("["):
        host, port = text[1:].rsplit("]:", 1)
    else:
        host, port = text.rsplit(":", 1)
    return host, int(port)


def parse_labels(field):
    flows = []
    for part in field.split("; "):
        m = LABEL_RE.match(part.strip())
        if not m:
            continue
        flows.append({
            "label": part.strip(),
            "app": LABEL_TO_APP.get(m.group("app"), m.group("app").lower()),
            "proto": m.group("l4"),
            "a": split_endpoint(m.group("a")),
            "b": split_endpoint(m.group("b")),
            "inner": bool(m.group("note") and "inner flow" in m.group("note")),
        })
    return flows


def read_manifest(pcaps):
    """MANIFEST.tsv's rows as dicts keyed by its header."""
    with open(os.path.join(pcaps, "MANIFEST.tsv"), encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        return [dict(zip(header, line.rstrip("\n").split("\t"))) for line in f if line.strip()]


def run_relaywatch(binary, pcap, workdir, config=None):
    out = os.path.join(workdir, "events.jsonl")
    cmd = [binary] + (["-c", config] if config else []) + ["-r", pcap, "--jsonl", out,
                                                            "--workers", "1"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=600)
    events = []
    if os.path.exists(out):
        with open(out, encoding="utf-8") as f:
            events = [json.loads(line) for line in f if line.strip()]
        os.unlink(out)
    return proc.returncode, proc.stderr, events


def matches(flow, session):
    s = ((session["src_ip"], session["src_port"]), (session["dest_ip"], session["dest_port"]))
    if session["proto"] != flow["proto"]:
        return False
    if flow["inner"]:
        ports = {flow["a"][1], flow["b"][1]}
        return {s[0][1], s[1][1]} == ports
    return {s[0], s[1]} == {flow["a"], flow["b"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relaywatch", required=True)
    parser.add_argument("--pcaps", default=os.environ.get("RELAYWATCH_SHARED_PCAPS"))
    parser.add_argument("--apps", default=DEFAULT_SUPPORTED,
                        help="apps whose labelled flows must be found (comma list)")
    args = parser.parse_args()
    if not args.pcaps:
        args.pcaps = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "pcaps")
    manifest = os.path.join(args.pcaps, "MANIFEST.tsv")
    if not os.path.exists(manifest):
        print(f"SKIP: peer-labelled pcap corpus not present ({manifest})")
        return 77
    supported = set(args.apps.split(","))

    per_app = collections.defaultdict(lambda: [0, 0])  # app -> [found, labelled]
    unsupported = collections.Counter()
    failures = []
    passed = 0
    false_sessions = {}
    extra = []
    relay_alerts = []
    rows = read_manifest(args.pcaps)
    with tempfile.TemporaryDirectory() as work:
        for row in rows:
            pcap = os.path.join(args.pcaps, row["file"])
            rc, stderr, events = run_relaywatch(args.relaywatch, pcap, work)
            if rc != 0:
                failures.append(f"{row['file']}: relaywatch exited {rc}: {stderr.strip()[-300:]}")
                continue
            sessions = [e for e in events if e.get("event_type") == "remote_session"]
            if row["set"] == "negative":
                for e in events:
                    if e.get("event_type") != "alert":
                        continue
                    detector = e.get("alert", {}).get("detector")
                    if detector in RELAY_METHODS:
                        ev = e.get("evidence", {})
                        relay_alerts.append(
                            f"{row['file']}: {detector} on {e.get('host_ip')}: "
                            f"{ev.get('hidden_leg_rtt_ms', ev.get('controller_rtt_ms'))} ms, "
                            f"rule {ev.get('rule', '-')}, servers {ev.get('servers', '-')}, "
                            f"apps {','.join(ev.get('apps', []))}")
                if sessions:
                    false_sessions[row["file"]] = sessions
                    failures.append(f"{row['file']}: {len(sessions)} false remote_session(s): " +
                                    ", ".join(s["remote_session"]["app"] for s in sessions))
                else:
                    passed += 1
                continue
            labelled = parse_labels(row["labels"])
            used = set()
            for flow in labelled:
                if flow["app"] not in supported:
                    unsupported[flow["app"]] += 1
                    continue
                per_app[flow["app"]][1] += 1
                hit = [i for i, s in enumerate(sessions)
                       if matches(flow, s) and s["remote_session"]["app"] == flow["app"]]
                if hit:
                    per_app[flow["app"]][0] += 1
                    used.update(hit)
                    passed += 1
                else:
                    wrong = [s["remote_session"]["app"] for s in sessions if matches(flow, s)]
                    failures.append(f"{row['file']}: not found: {flow['label']}" +
                                    (f" (reported as {wrong})" if wrong else ""))
            for i, s in enumerate(sessions):
                if i not in used:
                    extra.append(f"{row['file']}: unlabelled session {s['remote_session']['app']} "
                                 f"{s['src_ip']}:{s['src_port']} -> {s['dest_ip']}:{s['dest_port']}")

    print("Remote-access flows labelled by peers (nDPI, JA4) and found by relaywatch:")
    print(f"  {'app':<12} {'found':>5} / {'labelled':<8}")
    for app in sorted(per_app):
        found, total = per_app[app]
        print(f"  {app:<12} {found:>5} / {total:<8} {'ok' if found == total else 'MISSING'}")
    total_found = sum(v[0] for v in per_app.values())
    total_labelled = sum(v[1] for v in per_app.values())
    print(f"  {'all':<12} {total_found:>5} / {total_labelled:<8}")
    if unsupported:
        print("Labelled flows of apps not claimed yet (--apps): " +
              ", ".join(f"{a} {n}" for a, n in sorted(unsupported.items())))
    negatives = sum(1 for r in rows if r["set"] == "negative")
    print(f"Negative captures: {negatives}; false remote_session records: "
          f"{sum(len(v) for v in false_sessions.values())} in {len(false_sessions)} files")
    for line in extra:
        print("  note: " + line)
    print(f"Relay-method alerts on negative captures (reported, not failed): {len(relay_alerts)}")
    for line in relay_alerts:
        print("  " + line)
    for line in failures:
        print("FAIL: " + line)
    print(f"{passed} passed, {len(failures)} failed")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
