#!/usr/bin/env python3
"""Tiny RFB (VNC) client that behaves like a remote operator (stdlib only).

Connects (RFB 3.8, security None or VNC auth), asks for framebuffer
updates continuously (like a viewer), and replays a seeded human plan
(human.make_plan) as KeyEvents plus occasional pointer moves and clicks
(PointerEvents). Supports Raw and CopyRect encodings, which every server
must implement. Event send times go to --events (JSON).

With --pixel-format bgr233 it first sends SetPixelFormat (8 bpp true
colour, a standard RFB message every server must honour), which makes Raw
updates 4x smaller than the server's native 32 bpp.

usage: rfb_client.py --host H --port P --seed N --budget S [--events FILE]
                     [--pixel-format native|bgr233]
"""
import argparse
import os
import random
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import human  # noqa: E402

KS_RETURN, KS_BACKSPACE = 0xFF0D, 0xFF08


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("server closed")
        buf.extend(chunk)
    return bytes(buf)


class Client:
    def __init__(self, host, port, password=None, pixel_format="native"):
        self.sock = socket.create_connection((host, port), timeout=15)
        self.lock = threading.Lock()
        self.updates = 0
        self.bytes_in = 0
        self.alive = True
        ver = recv_exact(self.sock, 12)
        if not ver.startswith(b"RFB "):
            raise ConnectionError("not an RFB server: %r" % ver)
        self.sock.sendall(b"RFB 003.008\n")
        n = recv_exact(self.sock, 1)[0]
        if n == 0:
            ln = struct.unpack("!I", recv_exact(self.sock, 4))[0]
            raise ConnectionError("refused: %s" % recv_exact(self.sock, ln))
        types = recv_exact(self.sock, n)
        if 1 in types:
            self.sock.sendall(b"\x01")
        elif 2 in types and password is not None:
            raise ConnectionError("VNC auth not implemented in this client")
        else:
            raise ConnectionError("no supported security type in %r" % list(types))
        res = struct.unpack("!I", recv_exact(self.sock, 4))[0]
        if res != 0:
            raise ConnectionError("security handshake failed")
        self.sock.sendall(b"\x01")  # ClientInit: shared
        w, h = struct.unpack("!HH", recv_exact(self.sock, 4))
        pf = recv_exact(self.sock, 16)
        ln = struct.unpack("!I", recv_exact(self.sock, 4))[0]
        self.name = recv_exact(self.sock, ln).decode(errors="replace")
        self.w, self.h = w, h
        self.bpp = pf[0]
        if pixel_format == "bgr233":
            # SetPixelFormat: 8 bpp, depth 8, little endian, true colour,
            # red/green/blue max 7/7/3, shifts 0/3/6
            self.send(struct.pack("!BxxxBBBBHHHBBBxxx", 0, 8, 8, 0, 1, 7, 7, 3, 0, 3, 6))
            self.bpp = 8
        # encodings: Raw, CopyRect
        self.send(struct.pack("!BBHii", 2, 0, 2, 0, 1))
        self.request(incremental=0)
        self.sock.settimeout(None)

    def send(self, data):
        with self.lock:
            self.sock.sendall(data)

    def request(self, incremental=1):
        self.send(struct.pack("!BBHHHH", 3, incremental, 0, 0, self.w, self.h))

    def key(self, keysym, down):
        self.send(struct.pack("!BBxxI", 4, 1 if down else 0, keysym))

    def pointer(self, x, y, mask=0):
        self.send(struct.pack("!BBHH", 5, mask, x, y))

    def reader(self):
        """Consume server messages; re-request after each framebuffer update."""
        s = self.sock
        bpp_bytes = self.bpp // 8
        try:
            while self.alive:
                t = recv_exact(s, 1)[0]
                if t == 0:
                    nrect = struct.unpack("!xH", recv_exact(s, 3))[0]
                    for _ in range(nrect):
                        x, y, w, h, enc = struct.unpack("!HHHHi", recv_exact(s, 12))
                        if enc == 0:
                            n = w * h * bpp_bytes
                            while n > 0:
                                chunk = s.recv(min(n, 1 << 20))
                                if not chunk:
                                    raise ConnectionError("closed")
                                n -= len(chunk)
                                self.bytes_in += len(chunk)
                        elif enc == 1:
                            recv_exact(s, 4)
                        else:
                            raise ConnectionError("unexpected encoding %d" % enc)
                    self.updates += 1
                    self.request(incremental=1)
                elif t == 1:
                    _first, n = struct.unpack("!xHH", recv_exact(s, 5))
                    recv_exact(s, 6 * n)
                elif t == 2:
                    pass
                elif t == 3:
                    ln = struct.unpack("!xxxI", recv_exact(s, 7))[0]
                    recv_exact(s, ln)
                else:
                    raise ConnectionError("unknown server message %d" % t)
        except (ConnectionError, OSError) as e:
            if self.alive:
                sys.stderr.write("rfb reader: %s\n" % e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=5900)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--budget", type=float, default=20.0)
    ap.add_argument("--events", default="")
    ap.add_argument("--pixel-format", default="native", choices=["native", "bgr233"])
    a = ap.parse_args()

    plan = human.make_plan(a.seed, a.budget)
    prng = random.Random(a.seed + 1000)
    log = human.EventLog(a.events, {"driver": "rfb_client", "seed": a.seed, "budget_s": a.budget,
                                    "server": "%s:%d" % (a.host, a.port),
                                    "pixel_format": a.pixel_format})
    t_start = time.time()
    c = Client(a.host, a.port, pixel_format=a.pixel_format)
    log.add("connected", name=c.name, width=c.w, height=c.h, bpp=c.bpp)
    rd = threading.Thread(target=c.reader, daemon=True)
    rd.start()
    deadline = time.time() + a.budget + 15
    px, py = c.w // 2, c.h // 2
    # put the pointer over the terminal window so it has keyboard focus
    for x, y in human.pointer_path(prng, 5, 5, px, py):
        c.pointer(x, y)
        time.sleep(0.03)
    log.add("pointer", x=px, y=py)

    def tap(keysym, label):
        c.key(keysym, True)
        log.add("key", ch=label)
        time.sleep(prng.uniform(0.03, 0.09))
        c.key(keysym, False)

    for st in plan:
        if time.time() > deadline:
            break
        k = st["k"]
        if k == "think":
            secs = st["secs"]
            if prng.random() < 0.5:   # wander with the mouse while thinking
                nx, ny = prng.randint(40, c.w - 40), prng.randint(40, c.h - 40)
                for x, y in human.pointer_path(prng, px, py, nx, ny):
                    c.pointer(x, y)
                    time.sleep(0.025)
                    secs -= 0.025
                px, py = nx, ny
                log.add("pointer", x=px, y=py)
                if prng.random() < 0.3:
                    c.pointer(px, py, 1)
                    time.sleep(0.08)
                    c.pointer(px, py, 0)
                    log.add("click", x=px, y=py)
            time.sleep(max(0.0, secs))
            continue
        time.sleep(st["gap"])
        if k == "char":
            tap(ord(st["ch"]), st["ch"])
        elif k == "backspace":
            tap(KS_BACKSPACE, "BackSpace")
        elif k == "enter":
            tap(KS_RETURN, "Return")
    time.sleep(1.0)
    c.alive = False
    try:
        c.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    c.sock.close()
    log.meta.update({"fb_updates": c.updates, "fb_bytes": c.bytes_in,
                     "duration_s": round(time.time() - t_start, 3)})
    log.write()
    print("rfb_client: %s %dx%d bpp=%d updates=%d fb_bytes=%d keys=%d" % (
        c.name, c.w, c.h, c.bpp, c.updates, c.bytes_in,
        sum(1 for e in log.events if e["kind"] == "key")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
