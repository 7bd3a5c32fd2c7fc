#!/usr/bin/env python3
"""Why the typing baseline's shift is the mean of the 10th..50th percentile differences
(docs/detectors/relay.md), measured: for several reaction-time shapes, how many standard
errors an 80 ms relay (40 ms one way) moves each candidate statistic, one 270-reaction session
against a 600-reaction history. Higher is better; the typing baseline needs about 5 for 95 %
of sessions at p 0.001.

usage: shift_estimators.py [--trials N]   (stdlib only, seeded; about 20 s)

The shapes: reaction times of people are right-skewed with a long tail (ex-Gaussian,
log-normal: Ratcliff 1979, Luce 1986); the lab's typists (helpers/human.py) think for a
*bounded* uniform time, on which upper quantiles are tight and a mean does best.
"""
import argparse
import math
import random
import statistics

HISTORY, SESSION, RELAY_MS = 600, 270, 80.0


def nearest_rank(p, n):
    return max(0, min(n - 1, math.ceil(p * n) - 1))


def band(quantiles):
    def shift(history, recent):
        h, r = sorted(history), sorted(recent)
        return statistics.mean(r[nearest_rank(p, len(r))] - h[nearest_rank(p, len(h))]
                               for p in quantiles)
    return shift


STATISTICS = {
    "p10..p50 (relaywatch)": band([0.1, 0.2, 0.3, 0.4, 0.5]),
    "p10..p90": band([i / 10 for i in range(1, 10)]),
    "mean": lambda h, r: statistics.mean(r) - statistics.mean(h),
}


def shapes(rng):
    return {
        "ex-Gaussian (600, 80, tau 700)": lambda: rng.gauss(600, 80) + rng.expovariate(1 / 700),
        "log-normal (300 + 900 ms, sigma 0.5)": lambda: 300 + rng.lognormvariate(math.log(900), 0.5),
        "log-normal (300 + 900 ms, sigma 0.8)": lambda: 300 + rng.lognormvariate(math.log(900), 0.8),
        "lab steady (uniform 0.6-2 s thinking)": lambda: (
            min(600, max(250, rng.lognormvariate(math.log(360), 0.25))) + rng.uniform(600, 2000)
            + rng.uniform(80, 250)),
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
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
