#!/usr/bin/env python3
"""human.reaction_lags: the lab typist's own lag beyond its plan, which typing_report.py uses
to reject runs that would measure the driver instead of the network."""
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import human  # noqa: E402


def drive(seed, person, lag_s, output_s=0.05, failed=()):
    """An event log of a driver that keeps the plan, answers each Enter after output_s and
    presses its first key after an output lag_s late; outputs numbered in `failed` never
    appear (ok false)."""
    meta = {"seed": seed, "budget_s": 40.0, "person": person}
    rrng = random.Random(seed + 3000)
    t, events, late, n_out = 1000.0, [], 0.0, 0
    for st in human.make_plan(seed, meta["budget_s"], who=person):
        if st["k"] == "think":
            t += st["secs"]
            continue
        t += st["gap"] + late
        late = 0.0
        events.append({"t": t, "kind": "key", "ch": st.get("ch", st["k"])})
        if st["k"] == "enter":
            ok = n_out not in failed
            react = human.reaction_time(rrng, person)
            t += output_s
            events.append({"t": t, "kind": "output_done", "ok": ok, "reaction_s": react})
            t += react
            late = lag_s
            n_out += 1
    return {"meta": meta, "events": events}, n_out


class ReactionLags(unittest.TestCase):
    def test_a_driver_keeping_its_plan_has_no_lag(self):
        log, outputs = drive(3, "quick", 0.0)
        lags = human.reaction_lags(log)
        self.assertEqual(len(lags), outputs - 1)  # the last output has no key after it
        self.assertLess(max(abs(x) for x in lags), 1e-9)

    def test_a_late_driver_shows_its_lag_after_every_output(self):
        log, outputs = drive(4, "steady", 0.030)
        lags = human.reaction_lags(log)
        self.assertEqual(len(lags), outputs - 1)
        for x in lags:
            self.assertAlmostEqual(x, 0.030, places=6)

    def test_outputs_never_seen_are_skipped_without_shifting_the_rest(self):
        log, outputs = drive(5, "quick", 0.012, failed=(0, 2))
        lags = human.reaction_lags(log)
        self.assertEqual(len(lags), outputs - 3)
        for x in lags:
            self.assertAlmostEqual(x, 0.012, places=6)


if __name__ == "__main__":
    unittest.main()
