#!/usr/bin/env python3
"""typing_report.cases: which sessions are judged together and against which history. A test
must never find its own plan (the near session with its seed) in its history, and a group
must be judged only when the other near sessions fill the history."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import typing_report  # noqa: E402


def corpus(near, far):
    return {**{(0, s): f"n{s}" for s in near}, **{(40, s): f"f{s}" for s in far}}


class Cases(unittest.TestCase):
    def test_sessions_alone_and_in_consecutive_groups(self):
        runs = corpus(near=range(21, 31), far=range(21, 31))
        got = typing_report.cases(runs, lambda h: len(h) >= 2)
        groups = {(d, seeds) for d, seeds, _ in got if len(seeds) > 1}
        self.assertEqual(len([c for c in got if len(c[1]) == 1]), 20)
        # Pairs and fours of consecutive seeds, far and near alike; a tail too short for a
        # group is left out (29, 30 make no four).
        for d in (0, 40):
            for i in range(21, 31, 2):
                self.assertIn((d, (i, i + 1)), groups)
            self.assertIn((d, (21, 22, 23, 24)), groups)
            self.assertIn((d, (25, 26, 27, 28)), groups)
        self.assertEqual(len(groups), 14)
        for delay, seeds, history in got:
            self.assertFalse(set(seeds) & set(history), (delay, seeds, history))
            self.assertEqual(sorted(history), [s for s in range(21, 31) if s not in seeds])

    def test_a_history_too_small_is_not_judged(self):
        runs = corpus(near=range(21, 25), far=range(21, 25))
        got = typing_report.cases(runs, lambda h: len(h) >= 2)
        # Four near sessions leave none for the history of a group of four.
        self.assertNotIn((40, (21, 22, 23, 24)), {(d, s) for d, s, _ in got})
        self.assertIn((40, (21, 22)), {(d, s) for d, s, _ in got})

    def test_near_groups_only_where_every_plan_was_typed_near(self):
        runs = corpus(near=[21, 22, 25, 26, 27], far=[21, 22, 23, 24])
        groups = {(d, s) for d, s, _ in typing_report.cases(runs, lambda h: len(h) >= 2)
                  if len(s) > 1}
        self.assertEqual(groups, {(40, (21, 22)), (0, (21, 22)), (40, (23, 24)),
                                  (40, (21, 22, 23, 24))})


if __name__ == "__main__":
    unittest.main()
