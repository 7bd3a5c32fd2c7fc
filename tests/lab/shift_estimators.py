#!/usr/bin/env python3
"""Why the typing baseline's shift is the Ogawa-weighted mean of the 5th..50th percentile
differences (docs/detectors/relay.md, detectors/relay/timing.cc CompareReactions), measured
for several reaction-time shapes, one 270-reaction session against a 600-reaction history.

usage: shift_estimators.py [--trials N]   (stdlib only, seeded; about 3 min)

First table: how many standard errors (of the statistic without a relay) an 80 ms relay (40
ms one way) moves each candidate; the typing baseline needs about 5 for 95 % of sessions at
p 0.001. Its last column is the ceiling: the Cramer-Rao bound, what the best unbiased
estimate could reach if it knew the person's shape exactly. Where it is below 5, no
statistic of one session's reactions finds a 40 ms relay in 95 % of sessions; only typing
time does. Second table: the decision as the daemon takes it (significant and at least the
60 ms budget), for an 80 ms relay and for the 45 ms a 20 ms one-way operator adds (under the
budget, so an alert there is false), with the estimate's error at 80 ms. The second table
decides: a statistic whose weights are read off the pooled delays spreads wider and falls
short under a shift, which standard errors without a shift do not show.

The shapes: reaction times of people are right-skewed with a long tail (ex-Gaussian,
log-normal: Ratcliff 1979, Luce 1986); the lab's typists (helpers/human.py) think for a
*bounded* uniform time, on which upper quantiles are tight and a mean does well. The
weighted statistics read the density off the pooled delays, so they adapt to either shape
while leaving the upper half (long pauses, which vary from day to day) out.
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


def quantile_grid(before, after):
    """The 5th..50th percentiles the weighted statistics use (timing.cc PooledSplit): a
    quantile counts only with 5 of the smaller group at or below it. Returns (q, density f
    read off the pooled delays over +-max(0.04, 10 / n) in probability, up to a common
    factor, after's quantile minus before's) for each."""
    b, a = sorted(before), sorted(after)
    pooled = sorted(before + after)
    n, smaller = len(pooled), min(len(b), len(a))
    h = max(0.04, 10 / n)
    grid = []
    for i in range(1, 11):
        q = i / 20
        if q * smaller < 5 and i < 10:
            continue
        span = max(1.0, pooled[nearest_rank(q + h, n)] - pooled[nearest_rank(q - h, n)])
        grid.append((q, 1 / span, a[nearest_rank(q, len(a))] - b[nearest_rank(q, len(b))]))
    return grid


def precision_shift(before, after):
    """relaywatch's statistic of 2026-12-01 afternoon: each quantile difference weighted by
    its own precision, f(Q(q))^2 / (q (1 - q))."""
    weights = [(f * f / (q * (1 - q)), d) for q, f, d in quantile_grid(before, after)]
    return sum(w * d for w, d in weights) / sum(w for w, _ in weights)


def weighted_shift(before, after):
    """relaywatch's statistic (timing.cc PooledSplit): the quantile differences combined by
    Ogawa's (1951) asymptotically best linear unbiased estimate of location from selected
    sample quantiles, which accounts for neighbouring quantiles moving together: weights
    f_i ((f_i - f_i-1) / (u_i - u_i-1) - (f_i+1 - f_i) / (u_i+1 - u_i)), f = 0 at u = 0 and
    1. An exponential tail gets weight 0, the leading edge nearly all."""
    grid = quantile_grid(before, after)
    us = [0.0] + [q for q, _, _ in grid] + [1.0]
    fs = [0.0] + [f for _, f, _ in grid] + [0.0]
    slope = [(fs[j] - fs[j - 1]) / (us[j] - us[j - 1]) for j in range(1, len(us))]
    weights = [fs[j] * (slope[j - 1] - slope[j]) for j in range(1, len(us) - 1)]
    return sum(w * d for w, (_, _, d) in zip(weights, grid)) / sum(weights)


# The decision as the daemon takes it, for the second table: significant (here: beyond
# Z_ALERT standard deviations of the statistic's own null spread, about p 0.0002, the
# threshold after the windows' correction) and at least the 60 ms budget. GREY_MS is what
# a 20 ms one-way operator adds on the wire (+42..+52 ms in the lab), under the budget.
Z_ALERT, BUDGET_MS, GREY_MS = 3.5, 60.0, 45.0
DECISION_STATISTICS = {
    "Ogawa-weighted (relaywatch)": weighted_shift,
    "precision-weighted (2026-12-01 afternoon)": precision_shift,
    "p10..p50 (before 2026-12-01)": lambda h, r: band_shift(h, r, LOWER_HALF),
}


def decisions(draw, stat, trials):
    """(share of 80 ms sessions alerted, share of GREY_MS sessions alerted, mean error of
    the 80 ms estimate): the same sessions shifted by 0, GREY_MS and RELAY_MS."""
    null, grey, relayed = [], [], []
    for _ in range(trials):
        history = [draw() for _ in range(HISTORY)]
        session = [draw() for _ in range(SESSION)]
        null.append(stat(history, session))
        grey.append(stat(history, [x + GREY_MS for x in session]))
        relayed.append(stat(history, [x + RELAY_MS for x in session]))
    bar = max(BUDGET_MS, statistics.mean(null) + Z_ALERT * statistics.pstdev(null))
    return (sum(x >= bar for x in relayed) / trials, sum(x >= bar for x in grey) / trials,
            statistics.mean(relayed) - RELAY_MS)


STATISTICS = {
    "Ogawa-weighted p5..p50 (relaywatch)": weighted_shift,
    "precision-weighted p5..p50 (2026-12-01 afternoon)": precision_shift,
    "p10..p50 (before 2026-12-01)": lambda h, r: band_shift(h, r, LOWER_HALF),
    "p10..p90": lambda h, r: band_shift(h, r, [i / 10 for i in range(1, 10)]),
    "mean": lambda h, r: statistics.mean(r) - statistics.mean(h),
}


def shapes(rng):
    """name -> (draw one reaction, (d/dx log f, the density f) where known in closed form,
    else None: the lab's shapes have hard edges)."""
    return {
        "ex-Gaussian (600, 80, tau 700)": (
            lambda: rng.gauss(600, 80) + rng.expovariate(1 / 700), ex_gaussian(600, 80, 700)),
        "log-normal (300 + 900 ms, sigma 0.5)": (
            lambda: 300 + rng.lognormvariate(math.log(900), 0.5), log_normal(300, 900, 0.5)),
        "log-normal (300 + 900 ms, sigma 0.8)": (
            lambda: 300 + rng.lognormvariate(math.log(900), 0.8), log_normal(300, 900, 0.8)),
        "lab steady (uniform 0.6-2 s thinking)": (lambda: (
            min(600, max(250, rng.lognormvariate(math.log(360), 0.25))) + rng.uniform(600, 2000)
            + rng.uniform(80, 250)), None),
        "lab quick (uniform 0.3-1.2 s thinking)": (lambda: (
            min(450, max(180, rng.lognormvariate(math.log(270), 0.2))) + rng.uniform(300, 1200)
            + rng.uniform(60, 170)), None),
        # A person whose quickest reactions vary little: the leading edge is sharp.
        "ex-Gaussian (600, 40, tau 700)": (
            lambda: rng.gauss(600, 40) + rng.expovariate(1 / 700), ex_gaussian(600, 40, 700)),
    }


def ex_gaussian(mu, sigma, tau):
    """(score, density) of N(mu, sigma) + Exp(tau): f = lam e^(lam (mu - x) + (lam sigma)^2 / 2)
    Phi(z), z = (x - mu) / sigma - lam sigma, so d/dx log f = -lam + phi(z) / (sigma Phi(z)).
    Far left of the bulk Phi underflows: its logarithm and phi / Phi take the asymptotic
    series there (Mills' ratio)."""
    lam = 1 / tau

    def log_cdf(z):
        if z > -30:
            return math.log(0.5 * math.erfc(-z / math.sqrt(2)))
        return -z * z / 2 - math.log(-z) - 0.5 * math.log(2 * math.pi) + math.log1p(-1 / z ** 2)

    def z_of(x):
        return (x - mu) / sigma - lam * sigma

    def score(x):
        z = z_of(x)
        log_pdf = -z * z / 2 - 0.5 * math.log(2 * math.pi)
        return -lam + math.exp(log_pdf - log_cdf(z)) / sigma

    def density(x):
        return math.exp(math.log(lam) + lam * (mu - x) + (lam * sigma) ** 2 / 2 + log_cdf(z_of(x)))
    return score, density


def log_normal(offset, median, sigma):
    """(score, density) of offset + LogNormal(log median, sigma)."""
    def density(x):
        y = x - offset
        if y <= 0:
            return 0.0
        u = math.log(y / median) / sigma
        return math.exp(-u * u / 2) / (y * sigma * math.sqrt(2 * math.pi))
    return (lambda x: -(1 + math.log((x - offset) / median) / sigma ** 2) / (x - offset)), density


def best_possible(known):
    """The Cramer-Rao bound in the table's units: no unbiased estimate of a shift between a
    SESSION and a HISTORY of a known shape has a smaller variance than (1/n + 1/m) / I, with I
    the Fisher information for location, E[(d/dx log f)^2], integrated on a 0.25 ms grid
    over 0-30 s."""
    score, density = known
    step, info = 0.25, 0.0
    for i in range(int(30000 / step)):
        f = density(i * step)
        if f > 0:
            info += score(i * step) ** 2 * f * step
    return RELAY_MS / math.sqrt((1 / SESSION + 1 / HISTORY) / info)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=1000)
    a = ap.parse_args()
    rng = random.Random(20261201)
    print("| reaction times | " + " | ".join(STATISTICS) + " | best possible (Cramer-Rao) |")
    print("|---" * (len(STATISTICS) + 2) + "|")
    for name, (draw, known) in shapes(rng).items():
        cells = []
        for stat in STATISTICS.values():
            null, relayed = [], []
            for _ in range(a.trials):
                history = [draw() for _ in range(HISTORY)]
                null.append(stat(history, [draw() for _ in range(SESSION)]))
                relayed.append(stat(history, [draw() + RELAY_MS for _ in range(SESSION)]))
            cells.append(f"{statistics.mean(relayed) / statistics.pstdev(null):.2f}")
        # A shape with hard edges (the lab's uniform thinking) has no finite bound: an edge
        # is located to 1/n, not 1/sqrt(n). People's reaction times have no such edges.
        cells.append(f"{best_possible(known):.2f}" if known else "none (hard edges)")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    # Standard errors judge a statistic whose spread and centre a shift leaves alone. Weights
    # read off the pooled delays fall short of that (under a shift the Ogawa weights' spread
    # grows and their estimate falls short), so the decision itself is counted.
    rng = random.Random(20261202)
    print("\n| reaction times | " + " | ".join(
        f"{k}: 80 ms found / 45 ms alerted / error at 80 ms" for k in DECISION_STATISTICS) + " |")
    print("|---" * (len(DECISION_STATISTICS) + 1) + "|")
    for name, (draw, _) in shapes(rng).items():
        cells = [decisions(draw, stat, a.trials) for stat in DECISION_STATISTICS.values()]
        print(f"| {name} | " + " | ".join(
            f"{100 * found:.0f} % / {100 * grey:.0f} % / {error:+.0f} ms"
            for found, grey, error in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
