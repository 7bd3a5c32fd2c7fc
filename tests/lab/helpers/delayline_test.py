#!/usr/bin/env python3
"""delayline.Ctl: what the lab's delay line does to each packet (hold, loss, reordering).
The lossy runs of docs/relay-quality.md rest on it; runs without loss must stay as before."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import delayline  # noqa: E402


def ctl_with(**settings):
    fd, path = tempfile.mkstemp(suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(settings, f)
    try:
        return delayline.Ctl(path)
    finally:
        os.unlink(path)


class CtlTest(unittest.TestCase):
    def test_no_loss_draws_nothing_and_keeps_the_jitter_sequence(self):
        plain = ctl_with(delay_ms=40, jitter_ms=5, seed=7)
        lossy = ctl_with(delay_ms=40, jitter_ms=5, seed=7, loss_pct=5, reorder_pct=5)
        held_plain, held_lossy = [], []
        for _ in range(2000):
            self.assertEqual(plain.fate(0), 0.0)
            held_plain.append(plain.hold(0))
            lossy.fate(0)   # loss and reordering draw from generators of their own
            held_lossy.append(lossy.hold(0))
        self.assertEqual(held_plain, held_lossy)
        self.assertAlmostEqual(sum(held_plain) / len(held_plain), 0.040, delta=0.001)

    def test_loses_and_reorders_the_share_asked_for(self):
        ctl = ctl_with(delay_ms=40, seed=3, loss_pct=2, reorder_pct=10)
        n = 50000
        fates = [ctl.fate(1) for _ in range(n)]
        lost = sum(f is None for f in fates)
        extra = [f for f in fates if f]
        self.assertAlmostEqual(lost / n, 0.02, delta=0.003)
        self.assertAlmostEqual(len(extra) / (n - lost), 0.10, delta=0.01)
        self.assertTrue(all(0.001 <= f <= 0.010 for f in extra))

    def test_seeded_per_direction(self):
        a = ctl_with(seed=5, loss_pct=30)
        b = ctl_with(seed=5, loss_pct=30)
        seq_a0 = [a.fate(0) is None for _ in range(200)]
        self.assertEqual(seq_a0, [b.fate(0) is None for _ in range(200)])
        self.assertNotEqual(seq_a0, [a.fate(1) is None for _ in range(200)])

    def test_kept_order_never_releases_before_the_packet_ahead(self):
        ctl = ctl_with(delay_ms=40, jitter_ms=10, seed=4)
        last, released = 0.0, []
        for i in range(2000):   # back to back, 0.1 ms apart: jitter far above the spacing
            t, last = ctl.due(0, 10.0 + i * 0.0001, 0.0, last)
            released.append(t)
        self.assertEqual(released, sorted(released))

    def test_free_order_lets_packets_overtake_as_netem_does(self):
        kept = ctl_with(delay_ms=40, jitter_ms=10, seed=4)
        free = ctl_with(delay_ms=40, jitter_ms=10, seed=4, jitter_order="free")
        last_k = last_f = 0.0
        holds_k, holds_f = [], []
        for i in range(2000):
            sent = 10.0 + i * 0.0001
            t, last_k = kept.due(0, sent, 0.0, last_k)
            holds_k.append(t - sent)
            t, last_f = free.due(0, sent, 0.0, last_f)
            holds_f.append(t - sent)
        released = [10.0 + i * 0.0001 + h for i, h in enumerate(holds_f)]
        overtaken = sum(1 for a, b in zip(released, released[1:]) if b < a)
        self.assertGreater(overtaken, 500)   # about half of the neighbours swap
        # the same draws: each packet's own hold is the gaussian one, unclamped by order
        self.assertAlmostEqual(sum(holds_f) / len(holds_f), 0.040, delta=0.001)
        self.assertGreater(sum(holds_k) / len(holds_k), 0.045)   # order adds delay

    def test_unknown_jitter_order_is_refused(self):
        with self.assertRaises(ValueError):
            ctl_with(delay_ms=40, jitter_order="sometimes")

    def test_no_bottleneck_sends_at_once(self):
        ctl = ctl_with(delay_ms=40, seed=1)
        self.assertEqual([ctl.depart(0, 10.0, 1500) for _ in range(3)], [10.0] * 3)

    def test_bottleneck_serialises_and_drops_when_the_buffer_is_full(self):
        # 1200 kbit/s: a 1500-byte packet takes 10 ms; the buffer holds 25 ms of sending.
        ctl = ctl_with(delay_ms=5, seed=1, rate_kbit=1200, queue_ms=25)
        left = [ctl.depart(0, 1.0, 1500) for _ in range(4)]
        self.assertAlmostEqual(left[0], 1.010)
        self.assertAlmostEqual(left[1], 1.020)   # found 10 ms queued
        self.assertAlmostEqual(left[2], 1.030)   # found 20 ms
        self.assertIsNone(left[3])               # found 30 ms: over the 25 ms buffer
        self.assertAlmostEqual(ctl.depart(0, 1.006, 1500), 1.040)   # 24 ms: fits
        # The other direction has a bottleneck of its own; an idle one sends at once.
        self.assertAlmostEqual(ctl.depart(1, 1.0, 1500), 1.010)
        self.assertAlmostEqual(ctl.depart(0, 2.0, 1500), 2.010)



@unittest.skipUnless(os.geteuid() == 0 and shutil.which("ip") and shutil.which("ping"),
                     "needs root, ip and ping (network namespaces)")
class TapLineTest(unittest.TestCase):
    """The LAN delay line (lab.sh RWLAB_LAN_DELAY_LINE=1): TAP devices, so Ethernet and
    ARP cross it, in two namespaces of this test's own."""

    def setUp(self):
        self.ns = ["rwdltest-a-%d" % os.getpid(), "rwdltest-b-%d" % os.getpid()]
        self.dir = tempfile.mkdtemp()
        self.proc = None
        for ns in self.ns:
            subprocess.run(["ip", "netns", "add", ns], check=True)

    def tearDown(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        for ns in self.ns:
            subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(self.dir)

    def test_carries_ethernet_with_the_delay_asked_for(self):
        ctl = os.path.join(self.dir, "ctl.json")
        ready = os.path.join(self.dir, "ready")
        with open(ctl, "w") as f:
            json.dump({"delay_ms": 15, "jitter_ms": 0, "seed": 1}, f)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[0], sys.executable,
             os.path.join(os.path.dirname(os.path.abspath(__file__)), "delayline.py"),
             "--a-dev", "lan0", "--b-ns", self.ns[1], "--b-dev", "eth0", "--ctl", ctl,
             "--ready", ready, "--tap"], stderr=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists(ready):
                break
            time.sleep(0.05)
        self.assertTrue(os.path.exists(ready), "the delay line did not start")
        for ns, dev, addr in ((self.ns[0], "lan0", "10.88.0.1/24"),
                              (self.ns[1], "eth0", "10.88.0.2/24")):
            subprocess.run(["ip", "-n", ns, "addr", "add", addr, "dev", dev], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        link = subprocess.run(["ip", "-n", self.ns[0], "-d", "link", "show", "lan0"],
                              capture_output=True, text=True, check=True).stdout
        self.assertIn("link/ether", link)
        self.assertIn("tap", link)
        out = subprocess.run(["ip", "netns", "exec", self.ns[1], "ping", "-c", "4", "-i", "0.2",
                              "-W", "2", "10.88.0.1"], capture_output=True, text=True).stdout
        # The first ping waits on ARP, which crossed the line too; 15 ms each way.
        m = re.search(r"= ([0-9.]+)/([0-9.]+)/([0-9.]+)/", out)
        self.assertIsNotNone(m, out)
        self.assertGreaterEqual(float(m.group(1)), 29.0, out)
        self.assertLess(float(m.group(1)), 60.0, out)


if __name__ == "__main__":
    unittest.main()
