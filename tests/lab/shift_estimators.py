#!/usr/bin/env python3
"""Why the typing baseline's shift is the precision-weighted mean of the 5th..50th percentile
differences (docs/detectors/relay.md, detectors/relay/timing.cc CompareReactions), measured:
for several reaction-time shapes, how many standard errors an 80 ms relay (40 ms one way)
moves each candidate statistic, one 270-reaction session against a 600-reaction history.
Higher is better; the typing baseline needs about 5 for 95 % of sessions at p 0.001.

usage: shift_estimators.py [--trials N]   (stdlib only, seeded; about 50 s)

The shapes: reaction times of people are right-skewed with a long tail (ex-Gaussian,
log-normal: Ratcliff 1979, Luce 1986); the lab's typists (helpers/human.py) think for a
*bounded* uniform time, on which upper quantiles are tight and a mean does well. The
weighted statistic reads each quantile's precision off the pooled delays, so it adapts to
either shape while leaving the upper half (long pauses, which vary from day to day) out.
typing_report.py imports band_shift and LOWER_HALF for its paired table.
"""
import argparse
import math
import random
import statistics

HISTORY, SESSION, RELAY_MS = 600, 270, 80.0
# The typing baseline's band before 2026-12-01, and typing_report's paired table's.
LOWER_HALF = [0.1, 0.2, 0.3, 0.4, 0.5]


def nearest_rank(p, n):
    """0-based index of the p-quantile of n sorted values (nearest rank, as timing.cc)."""
    return max(0, min(n - 1, math.ceil(p * n) - 1))


def band_shift(before, after, quantiles):
    """Mean over `quantiles` of after's quantile minus before's (ms)."""
    b, a = sorted(before), sorted(after)
    return statistics.mean(a[nearest_rank(p, len(a))] - b[nearest_rank(p, len(b))]
                           for p in quantiles)


def weighted_shift(before, after):
    """relaywatch's statistic (timing.cc PooledSplit): the 5th..50th percentile differences,
    each weighted by f(Q(q))^2 / (q (1 - q)), f read off the pooled delays over +-max(0.04,
    10 / n) in probability; a quantile counts only with 5 of the smaller group at or below."""
    b, a = sorted(before), sorted(after)
    pooled = sorted(before + after)
    n, smaller = len(pooled), min(len(b), len(a))
    h = max(0.04, 10 / n)
    total = shift = 0.0
    for i in range(1, 11):
        q = i / 20
        if q * smaller < 5 and i < 10:
            continue
        span = max(1.0, pooled[nearest_rank(q + h, n)] - pooled[nearest_rank(q - h, n)])
        w = 1 / (span * span * q * (1 - q))
        total += w
        shift += w * (a[nearest_rank(q, len(a))] - b[nearest_rank(q, len(b))])
    return shift / total


STATISTICS = {
    "weighted p5..p50 (relaywatch)": weighted_shift,
    "p10..p50 (before 2026-12-01)": lambda h, r: band_shift(h, r, LOWER_HALF),
    "p10..p90": lambda h, r: band_shift(h, r, [i / 10 for i in range(1, 10)]),
    "mean": lambda h, r: statistics.mean(r) - statistics.mean(h),
}


def shapes(rng):
    return {
        "ex-Gaussian (600, 80, tau 700)": lambda: rng.gauss(600, 80) + rng.expovariate(1 / 700),
        "log-normal (300 + 900 ms, sigma 0.5)": lambda: (
            300 + rng.lognormvariate(math.log(900), 0.5)),
        "log-normal (300 + 900 ms, sigma 0.8)": lambda: (
            300 + rng.lognormvariate(math.log(900), 0.8)),
        "lab steady (uniform 0.6-2 s thinking)": lambda: (
            min(600, max(250, rng.lognormvariate(math.log(360), 0.25))) + rng.uniform(600, 2000)
            + rng.uniform(80, 250)),
        "lab quick (uniform 0.3-1.2 s thinking)": lambda: (
            min(450, max(180, rng.lognormvariate(math.log(270), 0.2))) + rng.uniform(300, 1200)
            + rng.uniform(60, 170)),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=1000)
    a = ap.parse_args()
    rng = random.Random(20261201)
    print("| reaction times | " + " | ".join(STATISTICS) + " |")
    print("|---" * (len(STATISTICS) + 1) + "|")
    for name, draw in shapes(rng).items():
        cells = []
        for stat in STATISTICS.values():
            null, relayed = [], []
            for _ in range(a.trials):
                history = [draw() for _ in range(HISTORY)]
                null.append(stat(history, [draw() for _ in range(SESSION)]))
                relayed.append(stat(history, [draw() + RELAY_MS for _ in range(SESSION)]))
            cells.append(f"{statistics.mean(relayed) / statistics.pstdev(null):.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
