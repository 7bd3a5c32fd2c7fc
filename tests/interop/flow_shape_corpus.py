#!/usr/bin/env python3
"""The flow_shape detector on real traffic, with and without the signature detectors.

--mode golden: our lab captures (tests/golden). With remote_access off and no signatures, the
  real VNC, RDP and WebRTC sessions must each come out as one unknown_remote_control session
  whose controlled side is the laptop, and no other case (interactive and
  jump SSH, SSH tunnel, direct and proxied TLS) may produce one. With the default config the
  shape detector must stay silent on them all (every remote flow there is already named).
  And a named session of unknown direction gets its direction from the shape.

--mode corpus: the peer-labelled captures in ../shared/pcaps (exit 77 when absent). Prints
  how many unknown_remote_control sessions appear on the negatives (video calls, streaming,
  downloads, games, VPNs...; must be 0, with signatures on and off) and, as a secondary
  figure, how many labelled remote-access flows the shape detector alone would catch.

Prints the figures and "N passed, M failed"; exit 0/1 (77: corpus absent).
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "..", "golden")
SHAPE_APP = "unknown_remote_control"
# The shape alone: no handshake parsing of remote-access protocols and no signature (an
# empty file, so no TLS or DNS clue names a tool). The TLS detector stays on: what names a
# flow as *not* remote control (a DNS transport's ALPN) is part of the shape's decision.
SIGNATURES_OFF = """detectors:
  remote_access: {{enabled: false, signatures: {signatures}}}
outputs:
  jsonl:
    events: [alert, remote_session]
"""

sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lab", "helpers"))
from shared_pcaps import matches, parse_labels  # noqa: E402  (same label format and matching)
import pcapflows  # noqa: E402

# detectors/flow_shape/config.h active_input_seconds: a session the golden cut keeps shorter
# than this (a byte cut of a screen that streams fast) has no shape to judge.
SHAPE_INPUT_SECONDS = 8


def replay(binary, pcap, config=None):
    cmd = [binary, "-r", pcap, "--jsonl", "-", "--workers", "1"]
    if config:
        cmd += ["-c", config]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{pcap}: relaywatch exited {proc.returncode}: {proc.stderr[-300:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def shape_sessions(events):
    return [e for e in events if e.get("event_type") == "remote_session"
            and e["remote_session"]["app"] == SHAPE_APP]


def describe(s):
    f = s["remote_session"].get("flow_shape", {})
    return (f"{s['src_ip']}:{s['src_port']} -> {s['dest_ip']}:{s['dest_port']} controlled "
            f"{s['remote_session']['controlled']} (coupling {f.get('coupling')}, response_share "
            f"{f.get('response_share')}, size_ratio {f.get('size_ratio')}, byte_ratio "
            f"{f.get('byte_ratio')}, active_input_seconds {f.get('active_input_seconds')})")


def golden(binary, config):
    passed, failures = 0, []
    cases = sorted(d for d in os.listdir(GOLDEN)
                   if os.path.exists(os.path.join(GOLDEN, d, "truth.json")))
    for case in cases:
        pcap = os.path.join(GOLDEN, case, "input.pcap")
        truth = json.load(open(os.path.join(GOLDEN, case, "truth.json")))
        screens = [f["five_tuple"] for f in truth.get("flows", [])
                   if f["app"] in ("vnc", "rdp", "webrtc")]
        # Sessions no detector names (WebRTC, lab webrtc_session) are found by their shape
        # with the signatures on too.
        unnamed = [f["five_tuple"] for f in truth.get("flows", []) if f["app"] == "webrtc"]
        spans = {(c["src"], c["sport"], c["dst"], c["dport"]): c["duration_s"]
                 for c in pcapflows.flows(pcap)}
        short = [ft for ft in screens
                 if spans.get((ft["src"], ft["sport"], ft["dst"], ft["dport"]), 0) <
                 SHAPE_INPUT_SECONDS]
        for ft in short:
            print(f"  {case}: {ft['src']}:{ft['sport']} -> {ft['dst']}:{ft['dport']} lasts under "
                  f"{SHAPE_INPUT_SECONDS} s in the cut: its shape is not judged")
        screens = [ft for ft in screens if ft not in short]
        alone = shape_sessions(replay(binary, pcap, config))
        with_signatures = shape_sessions(replay(binary, pcap))
        problems = []
        for ft in screens:
            # The laptop serves the screen; through a TURN server (webrtc_turn_session) it
            # opened the flow to the server, elsewhere the operator or a forwarder opened it.
            # A device beside the laptop (kvm_typed_ssh: an IP-KVM at an address of its own)
            # serves it there: the flow's responder, the laptop being neither end.
            laptop = truth.get("hosts", {}).get("farm", ft["dst"])
            if laptop not in (ft["src"], ft["dst"]):
                laptop = ft["dst"]
            found = [s for s in alone
                     if {(s["src_ip"], s["src_port"]), (s["dest_ip"], s["dest_port"])} ==
                     {(ft["src"], ft["sport"]), (ft["dst"], ft["dport"])}]
            if len(found) != 1:
                problems.append(f"expected one {SHAPE_APP} for {ft}, got {len(found)}")
            elif found[0]["remote_session"]["controlled"] != laptop:
                problems.append(f"controlled {found[0]['remote_session']['controlled']}, "
                                f"expected {laptop}")
            else:
                print(f"  {case}: shape alone: {describe(found[0])}")
        if len(alone) != len(screens):
            problems.append(f"{len(alone)} {SHAPE_APP} sessions with signatures off, expected "
                            f"{len(screens)}")
        if len(with_signatures) != len(unnamed):
            problems.append(f"{len(with_signatures)} {SHAPE_APP} sessions with signatures on, "
                            f"expected {len(unnamed)} (a named session must win)")
        if problems:
            failures += [f"{case}: {p}" for p in problems]
        else:
            passed += 1
            print(f"PASS: {case}")
    return passed, failures


def named_direction(binary, work):
    """The direction fill-in on real packets: the golden RDP session, named only by a test
    signature on its TLS server name with `controlled: unknown` (as a tool meeting at a relay
    would be), must get a second remote_session naming the laptop, from its shape."""
    case = os.path.join(GOLDEN, "rdp_session")
    truth = json.load(open(os.path.join(case, "truth.json")))
    ft = truth["flows"][0]["five_tuple"]
    sigs = os.path.join(work, "signatures.yaml")
    with open(sigs, "w") as f:
        f.write("apps:\n  - name: relay_tool_under_test\n    category: remote_desktop\n"
                f"    sni: [\"{ft['dst']}\"]\n    controlled: unknown\n")
    config = os.path.join(work, "named.yaml")
    with open(config, "w") as f:
        f.write(f"detectors:\n  remote_access: {{enabled: false, signatures: {sigs}}}\n")
    sessions = [e["remote_session"] for e in replay(binary, os.path.join(case, "input.pcap"), config)
                if e.get("event_type") == "remote_session"]
    got = [(s["app"], s["controlled"], s.get("direction_from")) for s in sessions]
    want = [("relay_tool_under_test", "unknown", None),
            ("relay_tool_under_test", ft["dst"], "flow_shape")]
    if got != want:
        return 0, [f"named tool of unknown direction: got {got}, expected {want}"]
    print(f"PASS: named tool of unknown direction gets controlled {ft['dst']} from its shape")
    return 1, []


def corpus(binary, config, pcaps):
    passed, failures = 0, []
    with open(os.path.join(pcaps, "MANIFEST.tsv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    negatives = {"on": 0, "off": 0}
    labelled = caught = 0
    for row in rows:
        pcap = os.path.join(pcaps, row["file"])
        clean = True
        for mode, cfg in (("on", None), ("off", config)):
            sessions = shape_sessions(replay(binary, pcap, cfg))
            if row["set"] == "negative":
                negatives[mode] += len(sessions)
                clean = clean and not sessions
                for s in sessions:
                    failures.append(f"{row['file']} (signatures {mode}): {describe(s)}")
            elif mode == "off":
                for flow in parse_labels(row["labels"]):
                    labelled += 1
                    hit = [s for s in sessions if matches(flow, s)]
                    if hit:
                        caught += 1
                        print(f"  caught by shape alone: {row['file']}: {flow['label']}: "
                              f"{describe(hit[0])}")
        passed += 1 if clean else 0
    n_neg = sum(1 for r in rows if r["set"] == "negative")
    print(f"Negative captures: {n_neg}; {SHAPE_APP} sessions: {negatives['on']} with the "
          f"default config, {negatives['off']} with remote_access off and no signatures (target 0)")
    print(f"Labelled remote-access flows caught by the shape detector alone: {caught} / "
          f"{labelled} (secondary: most are handshake-only or a few seconds long)")
    return passed, failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relaywatch", required=True)
    parser.add_argument("--mode", choices=["golden", "corpus"], required=True)
    parser.add_argument("--pcaps", default=os.environ.get("RELAYWATCH_SHARED_PCAPS"))
    args = parser.parse_args()
    if args.mode == "corpus":
        if not args.pcaps:
            args.pcaps = os.path.join(HERE, "..", "..", "..", "shared", "pcaps")
        if not os.path.exists(os.path.join(args.pcaps, "MANIFEST.tsv")):
            print(f"SKIP: peer-labelled pcap corpus not present ({args.pcaps}/MANIFEST.tsv)")
            return 77
    with tempfile.TemporaryDirectory() as work:
        no_signatures = os.path.join(work, "no_signatures.yaml")
        with open(no_signatures, "w") as f:
            f.write("apps: []\n")
        config = os.path.join(work, "signatures_off.yaml")
        with open(config, "w") as f:
            f.write(SIGNATURES_OFF.format(signatures=json.dumps(no_signatures)))
        if args.mode == "golden":
            passed, failures = golden(args.relaywatch, config)
            p, f = named_direction(args.relaywatch, work)
            passed, failures = passed + p, failures + f
        else:
            passed, failures = corpus(args.relaywatch, config, args.pcaps)
    for line in failures:
        print("FAIL: " + line)
    print(f"{passed} passed, {len(failures)} failed")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
