#!/usr/bin/env python3
"""The typing baseline (docs/detectors/relay.md, alert 9100013) on real traffic.

Captured by tests/lab/typist_runs.sh (typist "steady"): a person types through VNC into an
xterm on the laptop 10.77.1.10 whose ssh runs to the lab server; only the laptop's ssh flow
is kept (the egress-only view: no handshake in it waits for the person). near_s2 and near_s3
are two of that person's sessions with the operator near (0 ms); they are laid down first as
the laptop's history. Then:

* near_s1: a third near session: no `keystrokes` alert, its windows judged `near`/`undecided`;
* far_s1: the same plan as near_s1 (same commands, thinking and reactions) typed from 150 ms
  one-way away: one `keystrokes` alert whose shift is at least the 60 ms local budget;
* the same, with relaywatch restarted between the history and far_s1 (scoring.state_file):
  the history survives and the alert still comes;
* the same with `keystrokes` left out of detectors.relay.methods: nothing.

Two recorded sessions (about 80 reactions) are less history than the defaults want (600
reactions, windows of 60 doubling up to 1920, p <= 0.001: days of terminal work), so this
replay sets 60, 30 and 0.01; docs/relay-quality.md measures the defaults on the longer typist corpus.

Prints what it found; exit 0/1.
"""
import argparse
import os
import sys
import tempfile

import replaylib

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "typing_baseline")
LAPTOP = "10.77.1.10"
HOUR_US = 3600 * 1_000_000
START_US = 1_764_000_000 * 1_000_000


def laid(work, name, parts, first_hour=0):
    """Writes the named captures one hour apart (from first_hour) into work/name.pcap."""
    path = os.path.join(work, name + ".pcap")
    replaylib.lay_down(path, [os.path.join(HERE, part + ".pcap") for part in parts],
                       START_US + first_hour * HOUR_US, HOUR_US)
    return path


SETTINGS = ("    typing_baseline_samples: 60\n    typing_window_samples: 30\n"
            "    typing_max_p: 0.01\n")


def run(binary, work, pcap, extra="", methods=""):
    config = ("outputs:\n  jsonl:\n    events: [alert, typing]\n" + extra +
              "detectors:\n  relay:\n" + SETTINGS + methods)
    events = replaylib.replay(binary, work, config, pcap)
    alerts = [e for e in events
              if e["event_type"] == "alert" and e["alert"]["detector"] == "keystrokes"]
    windows = [e for e in events if e["event_type"] == "typing"]
    return alerts, windows


def describe(name, alerts, windows):
    print(f"{name}: {len(windows)} window(s) judged, {len(alerts)} keystrokes alert(s)")
    for w in windows:
        t = w["typing"]
        print(f"  {w['timestamp']} shift {t['reaction_shift_ms']:+.1f} ms p {t['p_value']} "
              f"{t['verdict']} (baseline {t['baseline_samples']}, window {t['window_samples']})")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--relaywatch", required=True)
    args = parser.parse_args()
    problems = []
    with tempfile.TemporaryDirectory() as work:
        history = ["near_s2", "near_s3"]
        alerts, windows = run(args.relaywatch, work, laid(work, "near", history + ["near_s1"]))
        describe("history + near session", alerts, windows)
        test_start = START_US + 2 * HOUR_US
        in_test = [w for w in windows if replaylib.timestamp_us(w["timestamp"]) >= test_start]
        if alerts:
            problems.append(f"{len(alerts)} keystrokes alert(s) for a near session")
        if not in_test:
            problems.append("the near session was never judged")
        if any(w["typing"]["verdict"] == "far" for w in windows):
            problems.append("a window of near sessions judged far")

        alerts, windows = run(args.relaywatch, work, laid(work, "far", history + ["far_s1"]))
        describe("history + far session", alerts, windows)
        if len(alerts) != 1:
            problems.append(f"{len(alerts)} keystrokes alerts for the far session, want 1")
        for a in alerts:
            ev = a["evidence"]
            if a["host_ip"] != LAPTOP:
                problems.append(f"alert names {a['host_ip']}, not the laptop")
            if ev["reaction_shift_ms"] < ev["local_rtt_ms"] or ev["p_value"] > 0.01:
                problems.append(f"alert with shift {ev['reaction_shift_ms']} p {ev['p_value']}")
            if replaylib.timestamp_us(a["timestamp"]) < test_start:
                problems.append("alert before the far session")

        state = os.path.join(work, "scores.json")
        keep = f"scoring:\n  state_file: {state}\n"
        first, _ = run(args.relaywatch, work, laid(work, "history", history), keep)
        second, windows = run(args.relaywatch, work, laid(work, "later", ["far_s1"], 2), keep)
        describe("restart, then the far session", second, windows)
        if first or len(second) != 1:
            problems.append(f"across a restart: {len(first)} alert(s) in the history, "
                            f"{len(second)} for the far session (want 0 and 1)")

        off = "    methods: [hidden_leg, controller_rtt, stepping_stone]\n"
        alerts, windows = run(args.relaywatch, work, laid(work, "off", history + ["far_s1"]),
                              methods=off)
        print(f"keystrokes off: {len(windows)} window(s), {len(alerts)} alert(s)")
        if alerts or windows:
            problems.append("keystrokes switched off still judged or alerted")
    return replaylib.finish(problems)


if __name__ == "__main__":
    sys.exit(main())
