#!/usr/bin/env python3
"""Independent SSH sessions at one laptop, from real captures: is `stepping_stone` quiet?

A relay's two legs are correlated; the false alert to fear is two sessions of one laptop that
are not: someone from outside logged in to it while its own ssh runs elsewhere. Real pairs of
that kind are laid out from a corpus of relayed runs (`jump_ssh_interactive`, `proxied_ssh`):
run A's operator leg (the operator <-> laptop flows) beside run B's relayed egress (laptop ->
server:22), B shifted with editcap to begin 1 s after A's leg, as a jump host's inner session
does, and merged with mergecap. Both were typed by the lab's person from the same kind of plan,
so they are busy at the same time, and with OpenSSH >= 9.5 both chaff on 20 ms clocks of their
own: the case where packet coincidences are likeliest. Every ordered pair A != B of runs with
different seeds is replayed (runs of one seed type the same plan, at whatever delay, so their
ON periods coincide by construction), and each run's own two legs are the control, which must
alert.

usage: tests/lab/cross_pairs.py --relaywatch BIN RUN_DIR... (run directories with gw.pcap and
       truth.json, e.g. CORPUS/jump_ssh_interactive-* CORPUS/proxied_ssh-*)
       KEEP_FALSE=DIR keeps the merged capture of each falsely alerted pair there.
       --each-test also replays every pair with `stepping_stone_max_p: 1` and counts, in the
       window the packet test chose, what its binomial `chance` alone, its `gap_chance` alone
       and both would have alerted at --max-p (default 0.001, the default threshold).
"""

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quality_report  # noqa: E402  (replay, the operator's address)


def first_packet(pcap):
    out = subprocess.run(["capinfos", "-a", "-S", "-T", "-r", pcap], capture_output=True,
                         text=True, check=True).stdout.split("\t")
    return float(out[-1])


def legs(run, work, n):
    """The run's operator leg and its relayed SSH egress, each a pcap of its own (named by
    the run's place n too: runs of two corpora share names)."""
    truth = json.load(open(os.path.join(run, "truth.json")))
    hosts = truth.get("hosts", {})
    farm = hosts.get("farm", "10.77.1.10")
    op = hosts.get("op", quality_report.OPERATOR)
    egress = [f["five_tuple"] for f in truth.get("flows", [])
              if f.get("role") == "relayed_egress" and f.get("app") == "ssh"]
    # The operator's session goes to the laptop, or to a device beside it (kvm_typed_ssh).
    hop = next((f["five_tuple"]["dst"] for f in truth.get("flows", [])
                if f.get("role") == "operator_leg"), farm)
    if not egress:
        raise SystemExit(f"{run}: no relayed SSH egress flow in truth.json")
    pcap = os.path.join(run, "gw.pcap")
    name = f"{n:04d}-{os.path.basename(os.path.normpath(run))}"
    inbound = os.path.join(work, name + ".in.pcap")
    outbound = os.path.join(work, name + ".out.pcap")
    subprocess.run(["tcpdump", "-r", pcap, "-w", inbound, f"host {op} and host {hop}"],
                   check=True, capture_output=True)
    flows = " or ".join(f"(host {t['src']} and port {t['sport']} and host {t['dst']} and "
                        f"port {t['dport']})" for t in egress)
    subprocess.run(["tcpdump", "-r", pcap, "-w", outbound, flows], check=True, capture_output=True)
    return inbound, outbound


def merge(pcaps, merged):
    subprocess.run(["mergecap", "-w", merged] + pcaps, check=True)
    return merged


def stepping_stones(binary, merged, relay_keys=None):
    """The evidence of each stepping_stone alert on a merged capture."""
    events = quality_report.replay(binary, merged, False, relay_keys=relay_keys)
    return [e["evidence"] for e in events
            if e.get("event_type") == "alert" and e["alert"]["detector"] == "stepping_stone"]


def names(found):
    return ", ".join(e.get("correlation", "on_periods") for e in found)


class EachTest:
    """Which of the packet test's two chances would alert alone, in the window it chose."""

    def __init__(self, binary, max_p):
        self.binary = binary
        self.max_p = max_p
        self.counts = {}

    def add(self, kind, merged):
        found = stepping_stones(self.binary, merged, {"stepping_stone_max_p": 1})
        packets = [e for e in found if e.get("correlation") == "packets"]
        tally = self.counts.setdefault(kind, {"cases": 0, "binomial": 0, "gaps": 0, "both": 0})
        tally["cases"] += 1
        binomial = any(e["chance"] <= self.max_p for e in packets)
        gaps = any(e["gap_chance"] <= self.max_p for e in packets)
        tally["binomial"] += binomial
        tally["gaps"] += gaps
        tally["both"] += any(max(e["chance"], e["gap_chance"]) <= self.max_p for e in packets)

    def report(self):
        for kind, t in self.counts.items():
            print(f"each test alone, {kind}: binomial {t['binomial']}, gaps {t['gaps']}, "
                  f"both {t['both']} of {t['cases']} (p <= {self.max_p})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--relaywatch", required=True)
    ap.add_argument("--each-test", action="store_true")
    ap.add_argument("--max-p", type=float, default=0.001)
    ap.add_argument("runs", nargs="+")
    args = ap.parse_args()
    each = EachTest(args.relaywatch, args.max_p) if args.each_test else None
    with tempfile.TemporaryDirectory() as work:
        legs_of = {run: legs(run, work, n) for n, run in enumerate(args.runs)}
        seed_of = {run: json.load(open(os.path.join(run, "truth.json"))).get("seed")
                   for run in args.runs}
        merged = os.path.join(work, "merged.pcap")
        controls = 0
        for run in args.runs:
            found = stepping_stones(args.relaywatch, merge(list(legs_of[run]), merged))
            controls += bool(found)
            print(f"control {os.path.basename(os.path.normpath(run))}: "
                  f"{names(found) if found else 'NOT FOUND'}")
            if each:
                each.add("controls", merged)
        pairs = alerted = 0
        for a, b in itertools.permutations(args.runs, 2):
            if seed_of[a] == seed_of[b]:
                continue
            a_in, _ = legs_of[a]
            _, b_out = legs_of[b]
            shifted = os.path.join(work, "shifted.pcap")
            shift = first_packet(a_in) + 1.0 - first_packet(b_out)
            subprocess.run(["editcap", "-t", f"{shift:.6f}", b_out, shifted], check=True)
            found = stepping_stones(args.relaywatch, merge([a_in, shifted], merged))
            if each:
                each.add("independent pairs", merged)
            if found and os.environ.get("KEEP_FALSE"):
                kept = f"{os.path.basename(a)}+{os.path.basename(b)}.pcap"
                shutil.copyfile(merged, os.path.join(os.environ["KEEP_FALSE"], kept))
            pairs += 1
            if found:
                alerted += 1
                print(f"FALSE {os.path.basename(a)} inbound + {os.path.basename(b)} outbound: "
                      f"{names(found)}")
    if each:
        each.report()
    print(f"controls found: {controls} of {len(args.runs)}; "
          f"independent pairs alerted: {alerted} of {pairs}")
    return 0 if alerted == 0 and controls == len(args.runs) else 1


if __name__ == "__main__":
    sys.exit(main())
