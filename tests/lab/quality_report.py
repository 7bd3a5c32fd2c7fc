#!/usr/bin/env python3
"""Detection-quality report of the relay detector over a corpus of lab runs.

    tests/lab/quality_runs.sh /work/labruns            # record the corpus (lab, ~40 min)
    python3 tests/lab/quality_report.py --relaywatch build/daemon/relaywatch \\
        /work/labruns > docs/relay-quality.md

Every run directory holds gw.pcap and truth.json (tests/lab/README.md); run directories are
taken from the corpus and one level down, so the shared lab's `lab.sh run all --out CORPUS/SET`
can be judged as it is. Each run is replayed
twice: as captured (the gateway sees the operator's leg and the laptop's egress) and
egress-only (the operator's address filtered out with capture.bpf, as when the operator
reaches the laptop over another path). For each method (alert.detector) the report gives:

  recall       relayed runs alerted / runs where the method applies, by operator delay
  false alerts runs alerted where nothing should fire: direct runs, and relayed runs whose
               operator round trip is within the local budget (under the default 60 ms:
               0 and 20 ms one way in the standard corpus)
  error        hidden_leg_rtt_ms and controller_rtt_ms against the configured round trip,
               and a forwarded session's operator_rtt_ms against the person's
  obfuscation  typed SSH flows tagged ssh_obfuscated, by the truth's ssh_keystroke_obfuscation
               (runs with another OpenSSH: RWLAB_SSH_CLIENT, RWLAB_SSHD)

Where a method applies (from the truth file, never from our own output):
  hidden_leg      a relayed egress flow whose TLS or SSH client is the far human
                  (relay_kind socks5, http_connect, ssh_jump, ssh_dynamic_forward,
                  ssh_local_forward)
  controller_rtt  an operator leg that is a remote-control session (ssh, vnc, rdp, webrtc); captured
                  view only, but both views when the operator comes through a forwarder near
                  the laptop (relay_kind forwarder: the session's peer is not the operator,
                  and the person's round trip is 2 x operator + 4 x near one-way delay) or a
                  TURN server there (relay_kind turn: the same round trip, which the
                  session's ICE checks time end to end, so controller_rtt_ms is judged
                  against it)
  stepping_stone  the operator's typing relayed into a laptop's own interactive egress flow
                  (ssh_jump, and remote desktop with a relayed egress flow; not routed_nat,
                  whose SSH flows are single commands); captured only
  routed_relay    a relayed egress flow whose packets the laptop routes for the far device
                  (relay_kind routed_nat); both views
"""

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile

OPERATOR = "198.18.9.50"
LOCAL_RTT_MS = 60.0  # detectors.relay.local_rtt default
METHODS = ["hidden_leg", "controller_rtt", "stepping_stone", "routed_relay"]
# Methods that judge distance; a stepping stone is a relay through the laptop whatever the
# operator's distance, so its alerts at 0 and 20 ms are correct, not false.
DISTANCE_METHODS = {"hidden_leg", "controller_rtt", "routed_relay"}
HIDDEN_KINDS = {"socks5", "http_connect", "ssh_jump", "ssh_dynamic_forward", "ssh_local_forward"}
ROUTED_KINDS = {"routed_nat"}
# The operator reaches the laptop's remote desktop or sshd through a forwarder near it
# (lab.sh vnc_forwarded, ssh_forwarded, rdp_forwarded): the session's peer is near, the person beyond it, and the forwarder's
# leg is not the operator's address, so an egress-only view keeps it too.
FORWARDER_KINDS = {"forwarder", "turn"}
# A TURN server near the laptop (lab.sh webrtc_turn_session) relays the session's ICE checks
# end to end: the controller's round trip is the person's, not the server's.
END_TO_END_KINDS = {"turn"}
# webrtc: lab.sh webrtc_session, a remote desktop over WebRTC (its operator leg is one UDP flow,
# timed by its STUN consent checks); webrtc_call's flow is "direct", so no method applies to it.
REMOTE_APPS = {"ssh", "vnc", "rdp", "webrtc"}


def replay(binary, pcap, egress_only, operator=OPERATOR, relay_keys=None):
    """`relay_keys`: detectors.relay settings over the defaults ({"key": value})."""
    events = "[alert, remote_session, relay]"
    bpf = f'"not host {operator}"' if egress_only else '""'
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(f"capture:\n  bpf: {bpf}\noutputs:\n  jsonl:\n    events: {events}\n")
        if relay_keys:
            f.write("detectors:\n  relay:\n" +
                    "".join(f"    {k}: {v}\n" for k, v in relay_keys.items()))
        config = f.name
    try:
        proc = subprocess.run([binary, "-c", config, "-r", pcap, "--jsonl", "-"],
                              capture_output=True, text=True, timeout=600)
    finally:
        os.unlink(config)
    if proc.returncode != 0:
        raise RuntimeError(f"{pcap}: relaywatch exited {proc.returncode}: {proc.stderr}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def same_flow(event, ft):
    a = {(event.get("src_ip"), event.get("src_port")), (event.get("dest_ip"),
                                                        event.get("dest_port"))}
    return a == {(ft["src"], ft["sport"]), (ft["dst"], ft["dport"])}


def applies(truth, method, egress_only):
    label = truth.get("label", {})
    flows = truth.get("flows", [])
    if not label.get("relayed"):
        return False
    if method == "hidden_leg":
        return label.get("relay_kind") in HIDDEN_KINDS and any(
            f["role"] == "relayed_egress" for f in flows)
    if method == "routed_relay":
        return label.get("relay_kind") in ROUTED_KINDS and any(
            f["role"] == "relayed_egress" for f in flows)
    if method == "controller_rtt" and label.get("relay_kind") in FORWARDER_KINDS:
        return any(f["role"] == "operator_leg" and f["app"] in REMOTE_APPS for f in flows)
    if egress_only:
        return False
    if method == "controller_rtt":
        return any(f["role"] == "operator_leg" and f["app"] in REMOTE_APPS for f in flows)
    if method == "stepping_stone":
        # A routed relay's SSH flows are single commands, not a person's typing.
        if label.get("relay_kind") in ROUTED_KINDS:
            return False
        return any(f["role"] == "relayed_egress" and f["app"] == "ssh" for f in flows) and any(
            f["role"] == "operator_leg" and f["app"] in REMOTE_APPS for f in flows)
    return False


def person_rtt(truth):
    """The configured round trip from the sensor to the person who drives the run."""
    rtt = 2 * truth["op_delay_ms"]
    if truth["label"].get("relay_kind") in FORWARDER_KINDS:
        rtt += 4 * truth.get("near_delay_ms", 0.0)  # to srv and back, and srv to the gateway
    return rtt


def judge(run_dir, binary, run_name):
    truth = json.load(open(os.path.join(run_dir, "truth.json")))
    if truth.get("status") != "ok":
        return None
    rows = []
    for egress_only in (False, True):
        # The truth's operator address (an IPv6 twin of the corpus has its own).
        events = replay(binary, os.path.join(run_dir, "gw.pcap"), egress_only,
                        truth.get("hosts", {}).get("op", OPERATOR))
        alerts = collections.Counter(e["alert"]["detector"] for e in events
                                     if e["event_type"] == "alert")
        relays = [e for e in events if e["event_type"] == "relay"]
        hidden_err, controller_err, routed_err, keys, obfuscation = [], [], [], [], []
        operator_err = []  # a forwarded session: the person's round trip beyond its peer
        hidden_bound_err = []  # flows whose flights all came spread: a lower bound
        # The routed relay's hidden leg: a forwarded flow's originator leg beyond the
        # laptop's own least leg (as opener or answerer) in this replay.
        farm = truth.get("hosts", {}).get("farm")
        own = [r["relay"].get("rtt_originator_ms" if r["src_ip"] == farm else
                              "rtt_responder_ms") for r in relays
               if farm in (r["src_ip"], r["dest_ip"])]
        own = [v for v in own if v is not None]
        for flow in truth.get("flows", []):
            ft = flow["five_tuple"]
            found = [r["relay"] for r in relays if same_flow(r, ft)]
            if not found:
                continue
            r = found[0]
            if flow["role"] == "relayed_egress" and truth["label"].get("relay_kind") in \
                    HIDDEN_KINDS and r.get("hidden_leg_rtt_ms") is not None:
                (hidden_bound_err if r.get("hidden_leg_lower_bound") else hidden_err).append(
                    (r["hidden_leg_rtt_ms"], flow["hidden_leg_rtt_ms"]))
            if flow["role"] == "relayed_egress" and truth["label"].get("relay_kind") in \
                    ROUTED_KINDS and r.get("rtt_originator_ms") is not None and own:
                routed_err.append((r["rtt_originator_ms"] - min(own), flow["hidden_leg_rtt_ms"]))
            if flow["role"] == "operator_leg" and r.get("controller_rtt_ms") is not None:
                end_to_end = truth["label"].get("relay_kind") in END_TO_END_KINDS
                controller_err.append((r["controller_rtt_ms"], flow["expected_outer_rtt_ms"] + (
                    flow["hidden_leg_rtt_ms"] if end_to_end else 0)))
            if flow["role"] == "operator_leg" and truth["label"].get("relay_kind") in \
                    FORWARDER_KINDS and r.get("operator_rtt_ms") is not None:
                operator_err.append((r["operator_rtt_ms"],
                                     flow["expected_outer_rtt_ms"] + flow["hidden_leg_rtt_ms"]))
            if flow["app"] == "ssh" and truth.get("ssh_keystroke_obfuscation") and \
                    "ssh_obfuscated" in r:
                obfuscation.append((truth["ssh_keystroke_obfuscation"], flow["role"],
                                    r["ssh_obfuscated"]))
            if flow["app"] == "ssh" and flow["role"] in ("direct", "relayed_egress") and \
                    r.get("keystrokes", {}).get("output_to_input_p10_ms") is not None:
                keys.append(r["keystrokes"]["output_to_input_p10_ms"])
        rows.append({
            "scenario": truth["scenario"],
            "delay": truth["op_delay_ms"],
            "near_jitter": truth.get("near_jitter_ms", 0.0),
            "relayed": bool(truth["label"].get("relayed")),
            "far": bool(truth["label"].get("relayed")) and person_rtt(truth) >= LOCAL_RTT_MS,
            "view": "egress-only" if egress_only else "captured",
            "alerts": dict(alerts),
            "applies": {m: applies(truth, m, egress_only) for m in METHODS},
            "hidden_err": hidden_err,
            "hidden_bound_err": hidden_bound_err,
            "controller_err": controller_err,
            "operator_err": operator_err,
            "routed_err": routed_err,
            "output_to_input_p10": keys,
            "obfuscation": obfuscation,
            "run": run_name,
        })
    return rows


def find_runs(corpus):
    """Run directories (holding truth.json) in the corpus or one level down: our
    quality_runs.sh writes CORPUS/RUN, the shared lab's `run all --out CORPUS/SET` writes
    CORPUS/SET/SCENARIO."""
    runs = []
    for d in sorted(os.listdir(corpus)):
        path = os.path.join(corpus, d)
        if os.path.exists(os.path.join(path, "truth.json")):
            runs.append(path)
        elif os.path.isdir(path):
            runs += [os.path.join(path, s) for s in sorted(os.listdir(path))
                     if os.path.exists(os.path.join(path, s, "truth.json"))]
    return runs


def pct(n, d):
    return "n/a" if d == 0 else f"{100.0 * n / d:.0f}% ({n}/{d})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--relaywatch", required=True)
    parser.add_argument("corpus")
    args = parser.parse_args()
    if not os.path.isdir(args.corpus):
        parser.error(f"no such corpus directory: {args.corpus}")
    runs = find_runs(args.corpus)
    if not runs:
        parser.error(f"no run directories (with truth.json) in {args.corpus} or one level down")
    rows, skipped = [], []
    for run in runs:
        name = os.path.relpath(run, args.corpus)
        judged = judge(run, args.relaywatch, name)
        if judged is None:
            skipped.append(name)
        else:
            rows += judged
    delays = sorted({r["delay"] for r in rows if r["relayed"]})
    out = []
    out.append(f"Runs judged: {len(rows) // 2} ({len(rows)} replays: as captured and "
               f"egress-only); runs not ok in the corpus: {len(skipped)}.\n")
    out.append("### Recall: relayed runs alerted by the method, where it applies\n")
    if delays:
        out.append("| method | view | " + " | ".join(f"{d:g} ms" for d in delays) + " |")
        out.append("|---|---|" + "---|" * len(delays))
    else:
        out.append("No relayed runs in this corpus.")
    for m in METHODS:  # without delays no cell is filled, so no row
        for view in ("captured", "egress-only"):
            cells = []
            for d in delays:
                sel = [r for r in rows if r["relayed"] and r["delay"] == d and
                       r["view"] == view and r["applies"][m]]
                cells.append(pct(sum(1 for r in sel if r["alerts"].get(m)), len(sel)))
            if any(c != "n/a" for c in cells):
                out.append(f"| {m} | {view} | " + " | ".join(cells) + " |")
    near_delays = "/".join(f"{d:g}" for d in sorted({r["delay"] for r in rows
                                                     if r["relayed"] and not r["far"]}))
    jitters = sorted({r["near_jitter"] for r in rows if not r["relayed"]})
    jitter_range = "-".join(f"{j:g}" for j in sorted({jitters[0], jitters[-1]})) if jitters \
        else "-"
    near_text = f"{near_delays} ms one way" if near_delays else "none in this corpus"
    out.append("\nOperator one-way delay in the column head; the round trip is twice that. "
               f"The default local budget is {LOCAL_RTT_MS:g} ms round trip, so operators "
               f"whose round trip is under it ({near_text}) are *near*: an alert there "
               "counts as false below.\n")
    out.append("### False alerts\n")
    out.append("Counted in replays (each run twice: as captured and egress-only).\n")
    out.append(f"| method | direct runs (near jitter {jitter_range} ms) | relayed, near operator "
               f"({near_delays or '-'} ms) | relayed, method not applicable |")
    out.append("|---|---|---|---|")
    for m in METHODS:
        direct = [r for r in rows if not r["relayed"]]
        near = [r for r in rows if r["relayed"] and not r["far"]]
        na = [r for r in rows if r["relayed"] and (r["far"] or m not in DISTANCE_METHODS)
              and not r["applies"][m]]
        near_cell = (f"{sum(1 for r in near if r['alerts'].get(m))} of {len(near)}"
                     if m in DISTANCE_METHODS else "n/a: not a distance method")
        out.append(f"| {m} | {sum(1 for r in direct if r['alerts'].get(m))} of {len(direct)} | "
                   f"{near_cell} | {sum(1 for r in na if r['alerts'].get(m))} of {len(na)} |")
    out.append("\n### Error of the measured round trips against the configured ones\n")
    out.append("| quantity | delay | flows | median error | worst error | within ±20% |")
    out.append("|---|---|---|---|---|---|")
    for key, name in (("hidden_err", "hidden_leg_rtt_ms"),
                      ("hidden_bound_err", "hidden_leg_rtt_ms, lower bounds"),
                      ("controller_err", "controller_rtt_ms"),
                      ("operator_err", "operator_rtt_ms (through a forwarder)"),
                      ("routed_err", "routed: rtt_originator_ms - own leg")):
        for d in delays:
            pairs = [p for r in rows if r["delay"] == d and r["view"] == "captured"
                     for p in r[key]]
            if not pairs or d == 0:
                continue
            errs = [(got - want) / want for got, want in pairs]
            d_label = f"{d:g} ms one-way ({2 * d:g} ms RTT)"
            ok = sum(1 for e in errs if abs(e) <= 0.2)
            worst = max(errs, key=abs)
            out.append(f"| {name} | {d_label} | {len(pairs)} | "
                       f"{100 * statistics.median(errs):+.1f}% | {100 * worst:+.1f}% | "
                       f"{pct(ok, len(pairs))} |")
    out.append("\n### Output-to-next-key delay (10th percentile) in SSH sessions typed by a "
               "person (one 20 s session is too short for the typing baseline: see its "
               "own section)\n")
    out.append("| scenario | delay | view | sessions | median p10 (ms) |")
    out.append("|---|---|---|---|---|")
    groups = collections.defaultdict(list)
    for r in rows:
        if r["output_to_input_p10"]:
            groups[(r["scenario"], r["delay"] if r["relayed"] else 0, r["view"])] += \
                r["output_to_input_p10"]
    for (scenario, d, view), values in sorted(groups.items()):
        out.append(f"| {scenario} | {d:g} ms | {view} | {len(values)} | "
                   f"{statistics.median(values):.0f} |")
    tagged = collections.defaultdict(lambda: [0, 0])
    for r in rows:
        for mode, role, flag in r["obfuscation"]:
            tagged[(mode, role, r["view"])][0] += flag
            tagged[(mode, role, r["view"])][1] += 1
    if tagged:
        out.append("\n### Typed SSH flows tagged `ssh_obfuscated`, by what the client's keys "
                   "look like on the wire (truth `ssh_keystroke_obfuscation`)\n")
        out.append("| keys on the wire | flow | view | tagged |")
        out.append("|---|---|---|---|")
        for (mode, role, view), (n, d) in sorted(tagged.items()):
            out.append(f"| {mode} | {role} | {view} | {pct(n, d)} |")
    out.append("\n### Runs\n")
    out.append("| run | view | alerts |")
    out.append("|---|---|---|")
    for r in rows:
        alerts = ", ".join(f"{k}×{v}" for k, v in sorted(r["alerts"].items())) or "-"
        out.append(f"| {r['run']} | {r['view']} | {alerts} |")
    if skipped:
        out.append(f"\nNot judged (status not ok): {', '.join(skipped)}")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
