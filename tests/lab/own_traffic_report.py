#!/usr/bin/env python3
"""The laptop's own traffic beside the operator's: does `hidden_leg` still decide?

A lab run's laptop does nothing but relay; a real one also browses on its own. This lays
the flows of two direct runs (the laptop's own https fetches, near) over each relayed run
of a corpus, the first from the relayed run's start and the second 3 s later, with editcap
and mergecap, and replays the result egress-only. The laptop's own flows then outnumber
the operator's about two to one. Controls: the two direct runs merged alone must stay quiet.

usage: tests/lab/own_traffic_report.py --relaywatch BIN CORPUS [--delays "0 20 40 90 150"]
                                       [--own CORPUS_WITH_DIRECT_RUNS]
                                       [--own-scenario direct_tls|revocation_tls]
"""

import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quality_report  # noqa: E402  (replay, the operator's address)

RELAYED = ["proxied_tls", "ssh_tunnel", "ssh_local_forward", "jump_ssh_interactive"]


def first_packet(pcap):
    out = subprocess.run(["capinfos", "-a", "-S", "-T", "-r", pcap], capture_output=True,
                         text=True, check=True).stdout.split("\t")
    return float(out[-1])


def overlay(relayed, own, out, work):
    """Writes `relayed` with the flows of the `own` captures laid over it to `out`."""
    start = first_packet(relayed)
    parts = [relayed]
    for i, pcap in enumerate(own):
        shifted = os.path.join(work, f"own{i}.pcap")
        subprocess.run(["editcap", "-t", f"{start + 3 * i - first_packet(pcap):.6f}", pcap,
                        shifted], check=True, capture_output=True)
        parts.append(shifted)
    subprocess.run(["mergecap", "-w", out] + parts, check=True, capture_output=True)


def judge(binary, pcap):
    """The hidden_leg alerts' rules, and the flows' order as far (F) / near (n)."""
    events = quality_report.replay(binary, pcap, egress_only=True)
    order = "".join("F" if e["relay"]["hidden_leg_rtt_ms"] >= quality_report.LOCAL_RTT_MS
                    else "n" for e in events
                    if e["event_type"] == "relay" and "hidden_leg_rtt_ms" in e["relay"])
    rules = [e["evidence"].get("rule", "median_over_window") for e in events
             if e["event_type"] == "alert" and e["alert"]["detector"] == "hidden_leg"]
    return rules, order


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--relaywatch", required=True)
    parser.add_argument("--delays", default="0 20 40 90 150")
    parser.add_argument("--own-scenario", default="direct_tls",
                        help="the direct scenario whose runs are the laptop's own traffic "
                        "(revocation_tls: a client that checks certificates online)")
    parser.add_argument("--own", help="corpus whose --own-scenario runs are the laptop's own "
                        "browsing (default: CORPUS)")
    parser.add_argument("corpus")
    args = parser.parse_args()
    runs = sorted(os.listdir(args.corpus))
    own_corpus = args.own or args.corpus
    direct = [f"{own_corpus}/{r}/gw.pcap" for r in sorted(os.listdir(own_corpus))
              if r.startswith(f"{args.own_scenario}-")
              and os.path.exists(f"{own_corpus}/{r}/gw.pcap")]
    if len(direct) < 2:
        sys.exit(f"{own_corpus}: needs two {args.own_scenario} runs (the laptop's own traffic); "
                 "name a corpus that has them with --own")
    seeds = sorted({r.rsplit("-s", 1)[1] for r in runs if r.startswith(tuple(RELAYED))})
    print("| run | flows in order (F: hidden leg at least 60 ms) | hidden_leg alerts |")
    print("|---|---|---|")
    found = total = near_alerts = near = false = 0
    with tempfile.TemporaryDirectory() as work:
        merged = os.path.join(work, "merged.pcap")
        for seed in seeds:
            # The laptop's own browsing: two direct runs of the same seed, else the first two.
            own = [p for p in direct if p.endswith(f"-s{seed}/gw.pcap")]
            own = own[:2] if len(own) >= 2 else direct[:2]
            overlay(own[0], own[1:], merged, work)
            rules, order = judge(args.relaywatch, merged)
            false += bool(rules)
            print(f"| own traffic alone, seed {seed} | {order} | {', '.join(rules) or '-'} |")
            for scenario in RELAYED:
                for delay in args.delays.split():
                    run = next((r for r in runs if r.startswith(f"{scenario}-d{delay}-")
                                and r.endswith(f"-s{seed}")), None)
                    if run is None:
                        continue
                    overlay(f"{args.corpus}/{run}/gw.pcap", own, merged, work)
                    rules, order = judge(args.relaywatch, merged)
                    if 2 * float(delay) >= quality_report.LOCAL_RTT_MS:
                        total += 1
                        found += bool(rules)
                    else:
                        near += 1
                        near_alerts += bool(rules)
                    print(f"| {run} + own | {order} | {', '.join(rules) or '-'} |")
    print(f"\nWith the laptop's own traffic beside: far operators (round trip at least the "
          f"{quality_report.LOCAL_RTT_MS:g} ms budget) found {found} of {total}; near operators "
          f"alerted {near_alerts} of {near}; the laptop's own traffic alone alerted {false} of "
          f"{len(seeds)}.")


if __name__ == "__main__":
    main()
