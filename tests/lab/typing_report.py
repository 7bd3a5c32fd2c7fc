#!/usr/bin/env python3
"""Typing-baseline quality (issue 5, vantage b): a far operator types through VNC into the
laptop's own ssh session; does relaywatch see the person react to the screen later than
their own history?

usage: typing_report.py --relaywatch BIN CORPUS [--baseline-samples N] [--window-samples N]
                        [--max-p P]

CORPUS is what tests/lab/typist_runs.sh recorded: CORPUS/<person>/vnc_typed_ssh-d<D>-j<J>-s<S>/.
For each typist and each test run, the typist's *other* near sessions (operator delay 0, the
other seeds) are laid down first, an hour apart, as the laptop's history; the test session
follows. A far run with seed s has the plan (commands, thinking, reactions) of the near run
with seed s, which is held out of its history: the test differs from a near
session of the same person only by the screen's round trip. Each case is replayed as
captured and egress-only (the operator's address filtered out), with the default config.

Counted: `keystrokes` alerts (9100013) after the test session starts. A near test (delay 0),
or a 20 ms one-way operator (40 ms round trip, below the 60 ms local budget), that alerts is
a false alert; at 40 ms one-way and more an alert is wanted. Alerts during the history are
false too. The last table checks the lab itself: how much later than its plan the typist
pressed its first key after each output (a lag that differs near and far would be measured
as a shift); a run lagging more than MAX_TYPIST_LAG_MS fails the report, like a false alert.
"""
import argparse
import glob
import json
import os
import re
import statistics
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
sys.path.insert(0, os.path.join(HERE, "helpers"))
import human  # noqa: E402
import replaylib  # noqa: E402
from shift_estimators import LOWER_HALF, band_shift  # noqa: E402

OPERATOR = "198.18.9.50"
LOCAL_RTT_MS = 60.0
# The typist's own lag beyond its plan (helpers/human.py reaction_lags) above which a run
# measures the driver, not the network: a person has none, and 5 ms is a tenth of the
# smallest shift the report must tell apart (20 ms one way quiet, 40 ms alerted).
MAX_TYPIST_LAG_MS = 5.0
HOUR_US = 3600 * 1_000_000
RUN = re.compile(r"vnc_typed_ssh-d(\d+)-j\d+-s(\d+)$")


def runs_of(person_dir):
    """{(delay, seed): gw.pcap} of the runs whose truth says ok."""
    runs = {}
    for d in sorted(glob.glob(os.path.join(person_dir, "vnc_typed_ssh-*"))):
        m = RUN.search(d)
        pcap = os.path.join(d, "gw.pcap")
        truth = os.path.join(d, "truth.json")
        if m and os.path.exists(pcap) and os.path.exists(truth):
            if '"status": "ok"' in open(truth).read():
                runs[(int(m.group(1)), int(m.group(2)))] = pcap
    return runs


def typist_lag(pcap):
    """(reactions logged, median and 90th percentile ms of the typist's lag) of a run."""
    events = os.path.join(os.path.dirname(pcap), "vnc_events.json")
    lags = sorted(1000 * x for x in human.reaction_lags(json.load(open(events))))
    if not lags:
        return 0, float("nan"), float("nan")
    return len(lags), statistics.median(lags), lags[(9 * len(lags)) // 10]


def wire_reactions(pcap):
    """The output -> next key delays (ms) of a run's ssh traffic, read from the capture by
    relaywatch's rules (detectors/relay/timing.cc KeystrokeTiming): a key is client data of
    at most 128 bytes, output is server data at least 16 bytes longer than the last key, a
    reaction at least 100 ms. Independent of the detector: it measures what the wire adds."""
    _, packets = replaylib.read_pcap(pcap)
    delays, last_output, key = [], None, 0
    for ts, frame, _ in packets:
        if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            continue  # IPv4 TCP over Ethernet only (the lab's)
        ihl = (frame[14] & 0x0F) * 4
        tcp = 14 + ihl
        sport, dport = struct.unpack(">HH", frame[tcp:tcp + 4])
        length = struct.unpack(">H", frame[16:18])[0] - ihl - (frame[tcp + 12] >> 4) * 4
        if length <= 0:
            continue
        if sport == 22:
            if length >= key + 16:
                last_output = ts
        elif dport == 22:
            if length > 128:
                last_output = None  # a paste or a file, not a key
                continue
            if last_output is not None and ts - last_output >= 100_000:
                delays.append((ts - last_output) / 1000)
            last_output, key = None, length
    return delays


def judge(binary, work, history, tests, egress_only, typing=""):
    """Lays the history pcaps, then the test pcaps, down an hour apart; returns (alerts in
    the history, alerts in the tests, the tests' judged windows)."""
    laid = os.path.join(work, "laid.pcap")
    starts = replaylib.lay_down(laid, history + tests, 1_764_000_000 * 1_000_000, HOUR_US)
    test_start = starts[len(history)]
    bpf = f"not host {OPERATOR}" if egress_only else ""
    config = (f'capture:\n  bpf: "{bpf}"\n'
              "outputs:\n  jsonl:\n    events: [alert, typing]\n" + typing)
    events = replaylib.replay(binary, work, config, laid)
    before, after, judged = [], [], []
    for e in events:
        in_test = replaylib.timestamp_us(e["timestamp"]) >= test_start
        if e.get("event_type") == "alert" and e["alert"]["detector"] == "keystrokes":
            (after if in_test else before).append(e)
        elif e.get("event_type") == "typing" and in_test:
            judged.append(e["typing"])
    return before, after, judged


# Sessions judged together: a person at a far screen types for hours, and the shift of a
# 40 ms relay is a fraction of one person's spread, so recall is measured by typing time:
# 30 min, 1 h and 2 h.
GROUP_SIZES = (2, 4, 8)


def cases(runs, enough):
    """(delay, seeds of the test, history seeds) to judge: every session alone against the
    typist's other near sessions; and the sessions at each delay in consecutive groups of
    GROUP_SIZES (and the near ones with the same plans, where all exist) against the near
    sessions with other seeds. enough(history seeds) says whether they fill the history
    (else the test's first reactions would: it is not judged)."""
    near = sorted(s for (d, s) in runs if d == 0)
    out = []
    for (delay, seed) in sorted(runs):
        history = [s for s in near if s != seed]
        if enough(history):
            out.append((delay, (seed,), history))
    groups = set()
    for k in GROUP_SIZES:
        for delay in sorted({d for (d, _) in runs if d > 0}):
            seeds = sorted(s for (d, s) in runs if d == delay)
            for i in range(0, len(seeds) - k + 1, k):
                group = tuple(seeds[i:i + k])
                groups.add((delay, group))
                if all((0, s) in runs for s in group):
                    groups.add((0, group))
    for delay, group in sorted(groups, key=lambda g: (len(g[1]), g)):
        history = [s for s in near if s not in group]
        if enough(history):
            out.append((delay, group, history))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--relaywatch", required=True)
    ap.add_argument("corpus")
    ap.add_argument("--baseline-samples", type=int, help="detectors.relay.typing_baseline_samples")
    ap.add_argument("--window-samples", type=int, help="detectors.relay.typing_window_samples")
    ap.add_argument("--max-p", type=float, help="detectors.relay.typing_max_p")
    a = ap.parse_args()
    typing = ""
    for key, value in (("typing_baseline_samples", a.baseline_samples),
                       ("typing_window_samples", a.window_samples), ("typing_max_p", a.max_p)):
        if value is not None:
            typing += f"    {key}: {value}\n"
    settings = "the defaults" if not typing else typing.strip().replace("\n   ", ",")
    half = (a.window_samples or 60) // 2
    if typing:
        typing = "detectors:\n  relay:\n" + typing
    persons = sorted(p for p in os.listdir(a.corpus) if os.path.isdir(os.path.join(a.corpus, p)))
    rows = []
    paired, spread = {}, {}  # (person, delay) -> [(seed, ms)]; person -> SD range
    need = a.baseline_samples or 600  # reactions a test's history must hold
    lag_of = {}  # (person, delay, seed) -> typist_lag(), read once: the cases and the last table
    with tempfile.TemporaryDirectory() as work:
        for person in persons:
            runs = runs_of(os.path.join(a.corpus, person))
            lag_of.update({(person, d, s): typist_lag(pcap) for (d, s), pcap in runs.items()})
            # Reactions each near session adds to the history (the typist's log counts them).
            logged = {s: lag_of[(person, 0, s)][0] for (d, s) in runs if d == 0}
            wire = {k: wire_reactions(pcap) for k, pcap in runs.items()}
            for (d, s) in sorted(runs):
                if d > 0 and (0, s) in wire:
                    paired.setdefault((person, d), []).append(
                        (s, band_shift(wire[(0, s)], wire[(d, s)], LOWER_HALF)))
            near_sd = [statistics.pstdev(r) for (d, _), r in wire.items() if d == 0 and len(r) > 1]
            if near_sd:
                spread[person] = (min(near_sd), max(near_sd))
            for delay, seeds, history in cases(
                    runs, lambda h: len(h) >= 2 and sum(logged[x] for x in h) >= need):
                for egress in (False, True):
                    before, after, judged = judge(a.relaywatch, work,
                                                  [runs[(0, s)] for s in history],
                                                  [runs[(delay, s)] for s in seeds], egress,
                                                  typing)
                    # The evidence of the first alert, else the tests' last judged window.
                    ev = after[0]["evidence"] if after else (judged[-1] if judged else {})
                    # Judged every half window: the reactions of the test until the first
                    # alert (the first record that decided far), else all judged.
                    decided = next((i for i, j in enumerate(judged) if j["verdict"] == "far"),
                                   len(judged) - 1)
                    rows.append({"person": person, "delay": delay, "seeds": seeds,
                                 "view": "egress-only" if egress else "captured",
                                 "history": len(history), "before": len(before),
                                 "alerts": len(after), "windows": len(judged), "evidence": ev,
                                 "reactions": half * (decided + 2) if judged else 0})
    want = lambda r: 2 * r["delay"] >= LOCAL_RTT_MS  # noqa: E731
    out = [f"Settings: {settings}.\n"]
    for k in (1,) + GROUP_SIZES:
        title = "one session" if k == 1 else f"{k} sessions at a delay together"
        sel_rows = [r for r in rows if len(r["seeds"]) == k]
        if not sel_rows:
            continue
        out += [f"### Recall, far operator, tests of {title}\n",
                "| view | " + " | ".join(f"{d} ms" for d in (0, 20, 40, 90, 150)) + " |",
                "|---|---|---|---|---|---|"]
        for view in ("captured", "egress-only"):
            cells = []
            for d in (0, 20, 40, 90, 150):
                sel = [r for r in sel_rows if r["view"] == view and r["delay"] == d]
                hit = sum(1 for r in sel if r["alerts"])
                cells.append(f"{100 * hit // len(sel)}% ({hit}/{len(sel)})" if sel else "-")
            out.append(f"| {view} | " + " | ".join(cells) + " |")
        false_near = sum(1 for r in sel_rows if not want(r) and r["alerts"])
        near_n = sum(1 for r in sel_rows if not want(r))
        out.append(f"\nFalse alerts: {false_near} of {near_n} near tests (0 and 20 ms one-way); "
                   f"{sum(r['before'] for r in sel_rows)} during the {len(sel_rows)} histories.\n")
    out.append("### What the wire adds, paired by plan\n")
    out.append("A far session's reactions minus the near session's with the same seed, mean of the "
               "10th..50th percentile differences (ms), read from the captures (`wire_reactions`). "
               "SD: the standard deviation of one reaction in the typist's near sessions.\n")
    out.append("| typist | delay | shift per seed (ms) | near SD (ms) |")
    out.append("|---|---|---|---|")
    for (person, delay), shifts in sorted(paired.items()):
        lo, hi = spread.get(person, (float("nan"), float("nan")))
        cells = ", ".join(f"{v:+.0f} (s{seed})" for seed, v in shifts)
        out.append(f"| {person} | {delay} ms | {cells} | {lo:.0f}-{hi:.0f} |")
    out.append("")
    out.append("### The typists, near (history of their held-out near sessions)\n")
    out.append("| typist | history p10 (ms) | history median (ms) |")
    out.append("|---|---|---|")
    for person in persons:
        ev = [r["evidence"] for r in rows
              if r["person"] == person and r["delay"] == 0 and r["evidence"]]
        if ev:
            p10 = sorted(e["baseline_p10_ms"] for e in ev)[len(ev) // 2]
            p50 = sorted(e["baseline_p50_ms"] for e in ev)[len(ev) // 2]
            out.append(f"| {person} | {p10:.0f} | {p50:.0f} |")
    out.append("")
    out.append("### Cases\n")
    out.append("Shift and p: the first alert's, else the tests' last judged window.\n")
    out.append("Reactions: of the test, until the first alert, else all judged (about).\n")
    out.append("| typist | delay | test seeds | view | history sessions | windows judged | alerts | "
               "reactions | shift (ms) | p | baseline p10/p50 (ms) | recent p10/p50 (ms) |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ev = r["evidence"]
        shift = f"{ev['reaction_shift_ms']:+.0f}" if ev else "-"
        p = f"{ev['p_value']:.4f}" if ev else "-"
        base = f"{ev['baseline_p10_ms']:.0f}/{ev['baseline_p50_ms']:.0f}" if ev else "-"
        rec = f"{ev['recent_p10_ms']:.0f}/{ev['recent_p50_ms']:.0f}" if ev else "-"
        seeds = "+".join(str(x) for x in r["seeds"])
        out.append(f"| {r['person']} | {r['delay']} ms | {seeds} | {r['view']} | "
                   f"{r['history']} | {r['windows']} | {r['alerts']} | {r['reactions']} | {shift} | {p} | "
                   f"{base} | "
                   f"{rec} |")
    out.append("")
    out.append("### The lab's typist: its own lag beyond the plan\n")
    out.append(f"Median and 90th percentile, ms; a run above {MAX_TYPIST_LAG_MS:.0f} ms "
               "measures the driver, not the network, and fails the report.\n")
    out.append("| typist | run | reactions logged | lag median | lag p90 |")
    out.append("|---|---|---|---|---|")
    lagging = 0
    for (person, delay, seed), (n, med, p90) in sorted(lag_of.items()):
        lagging += not med <= MAX_TYPIST_LAG_MS
        out.append(f"| {person} | {delay} ms, seed {seed} | {n} | {med:.1f} | {p90:.1f} |")
    print("\n".join(out))
    false_alerts = sum(1 for r in rows if not want(r) and r["alerts"]) + sum(r["before"] for r in rows)
    if lagging:
        print(f"\ntyping_report: {lagging} run(s) with the typist lagging its plan", file=sys.stderr)
    if not rows:
        print("\ntyping_report: no case judged: a test needs near sessions of two other seeds "
              f"of its typist holding at least {need} reactions as its history", file=sys.stderr)
    if false_alerts:
        print(f"\ntyping_report: {false_alerts} false alert(s) (near tests or histories)",
              file=sys.stderr)
    return 0 if rows and false_alerts == 0 and lagging == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
