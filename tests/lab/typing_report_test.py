#!/usr/bin/env python3
"""typing_report.cases: which sessions are judged together and against which history. A test
must never find its own plan (the near session with its seed) in its history, and a group
must be judged only when the other near sessions fill the history. And wire_reactions, the
report's reading of reactions off a capture by relaywatch's rules."""
import math
import os
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import typing_report  # noqa: E402
import shift_estimators  # noqa: E402
import replaylib  # noqa: E402  (typing_report put it on the path)


def corpus(near, far):
    return {**{(0, s): f"n{s}" for s in near}, **{(40, s): f"f{s}" for s in far}}


class Cases(unittest.TestCase):
    def test_sessions_alone_and_in_consecutive_groups(self):
        runs = corpus(near=range(21, 31), far=range(21, 31))
        got = typing_report.cases(runs, lambda h: len(h) >= 2)
        groups = {(d, seeds) for d, seeds, _ in got if len(seeds) > 1}
        self.assertEqual(len([c for c in got if len(c[1]) == 1]), 20)
        # Pairs, fours and eights of consecutive seeds, far and near alike; a tail too short
        # for a group is left out (29, 30 make no four, 29, 30 no eight).
        for d in (0, 40):
            for i in range(21, 31, 2):
                self.assertIn((d, (i, i + 1)), groups)
            self.assertIn((d, (21, 22, 23, 24)), groups)
            self.assertIn((d, (25, 26, 27, 28)), groups)
            self.assertIn((d, tuple(range(21, 29))), groups)
        self.assertEqual(len(groups), 16)
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


def segment(ts_us, to_server, length):
    """An Ethernet/IPv4/TCP frame of the laptop's ssh flow carrying `length` payload bytes."""
    ports = struct.pack(">HH", 40000, 22) if to_server else struct.pack(">HH", 22, 40000)
    tcp = ports + bytes(8) + bytes([5 << 4]) + bytes(7)
    ip = bytes([0x45, 0]) + struct.pack(">H", 20 + len(tcp) + length) + bytes(5) + bytes([6]) \
        + bytes(10)
    frame = bytes(12) + b"\x08\x00" + ip + tcp + bytes(length)
    return ts_us, frame, len(frame)


class WireReactions(unittest.TestCase):
    """The capture's own reading of output -> next key, by relaywatch's rules."""

    def test_output_to_next_key(self):
        s = 1_000_000
        packets = [
            segment(0, True, 36), segment(int(0.05 * s), False, 36),          # key, its echo
            segment(int(0.2 * s), False, 400),                                 # output
            segment(int(0.25 * s), True, 36),        # 50 ms: the client's own answer, not a key
            segment(int(1.0 * s), False, 400), segment(int(1.7 * s), True, 36),  # 700 ms
            segment(int(2.0 * s), False, 400), segment(int(2.1 * s), True, 900),  # a paste
            segment(int(2.5 * s), True, 36),         # after the paste: no output to react to
            segment(int(3.0 * s), False, 40), segment(int(3.9 * s), True, 36),  # an echo only
        ]
        with tempfile.TemporaryDirectory() as work:
            pcap = os.path.join(work, "gw.pcap")
            header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
            replaylib.write_copies(pcap, header, [(packets, 1_000_000_000)])
            self.assertEqual(typing_report.wire_reactions(pcap), [700.0])

    def test_shift_statistics(self):
        near = list(range(1000, 2000, 10))
        far = [x + 80 for x in near]
        band = shift_estimators.LOWER_HALF
        self.assertAlmostEqual(shift_estimators.band_shift(near, far, band), 80)
        self.assertAlmostEqual(shift_estimators.band_shift(near, near, band), 0)
        self.assertAlmostEqual(shift_estimators.weighted_shift(near, far), 80)
        self.assertAlmostEqual(shift_estimators.weighted_shift(near, near), 0)
        # The upper half (long pauses) does not count; a change of the lower half does.
        slower_pauses = [x + (500 if x >= 1600 else 0) for x in near]
        self.assertAlmostEqual(shift_estimators.weighted_shift(near, slower_pauses), 0)
        faster_edge = [x + 50 if x < 1200 else x for x in near]
        self.assertGreater(shift_estimators.weighted_shift(near, faster_edge), 10)

    def test_best_possible_shift(self):
        # The closed-form scores are the log-densities' derivatives.
        for score, density in (shift_estimators.ex_gaussian(600, 80, 700),
                               shift_estimators.log_normal(300, 900, 0.5)):
            for x in (450.0, 700.0, 1500.0, 4000.0):
                numeric = (math.log(density(x + 0.01)) - math.log(density(x - 0.01))) / 0.02
                self.assertAlmostEqual(score(x), numeric, places=5)
        # An ex-Gaussian with a 1 ms tail is a normal: Fisher information 1 / sigma^2, so the
        # bound is 80 ms over sigma * sqrt(1/270 + 1/600) standard errors.
        bound = shift_estimators.best_possible(shift_estimators.ex_gaussian(600, 80, 1))
        self.assertAlmostEqual(bound, 80 / (80 * math.sqrt(1 / 270 + 1 / 600)), places=2)
        # A long tail carries little information: the bound falls.
        self.assertLess(shift_estimators.best_possible(
            shift_estimators.ex_gaussian(600, 80, 700)), bound * 0.6)


if __name__ == "__main__":
    unittest.main()
