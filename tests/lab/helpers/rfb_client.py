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

With --react-to-screen (the vnc_typed_ssh scenario: the operator types into
a terminal on the remote desktop) the client keeps a copy of the remote
framebuffer and behaves like a human watching the screen: after pressing
Enter it waits until a FramebufferUpdate shows the screen changed across
more than one text line (the command's output and the next prompt, not
just the echo of a key), records "output_done", waits a seeded reaction
time (human.reaction_time), and then goes on with the plan (think, next
command); at the end it types `exit`. There is no pointer wandering in this
mode, and every FramebufferUpdate is logged ("fb_update") with its arrival
time. --font-px and --desktop-height give the text line height (xterm's
default font is 13 px; a scaled server framebuffer scales it).

usage: rfb_client.py --host H --port P --seed N --budget S [--events FILE]
                     [--pixel-format native|bgr233] [--react-to-screen
                     [--font-px 13] [--desktop-height 600]]
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
    def __init__(self, host, port, password=None, pixel_format="native", on_update=None):
        self.sock = socket.create_connection((host, port), timeout=15)
        # like real viewers: input events go out at once, not held by Nagle
        # behind an unacknowledged FramebufferUpdateRequest (one RTT late)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.lock = threading.Lock()
        self.updates = 0
        self.bytes_in = 0
        self.alive = True
        self.on_update = on_update      # called (nrect, raw_bytes) after each update
        self.fb_lock = threading.Lock()
        self.first_update = threading.Event()
        self.watch = None               # change watch armed by arm_watch()
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
        self.fb = bytearray(self.w * self.h * (self.bpp // 8))   # our copy of the screen
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

    # -- watching the screen ------------------------------------------------
    def arm_watch(self, min_rows):
        """Snapshot the screen now; wait_watch() then returns once the screen
        differs from the snapshot over a vertical extent of >= min_rows."""
        with self.fb_lock:
            self.watch = {"snap": bytes(self.fb), "lo": None, "hi": None,
                          "min_rows": min_rows, "hit": threading.Event(), "t_hit": None}

    def wait_watch(self, timeout):
        w = self.watch
        ok = w["hit"].wait(timeout)
        return ok, w["t_hit"], (None if w["lo"] is None else w["hi"] - w["lo"] + 1)

    def _diff_rows(self, x, y, w, h):
        """Fold rows of rect (x,y,w,h) that differ from the snapshot into the watch (fb_lock held)."""
        wt = self.watch
        if wt is None or wt["hit"].is_set():
            return
        bpp, stride = self.bpp // 8, self.w * (self.bpp // 8)
        snap, fb = wt["snap"], self.fb
        for row in range(y, y + h):
            a = row * stride + x * bpp
            b = a + w * bpp
            if fb[a:b] != snap[a:b]:
                wt["lo"] = row if wt["lo"] is None else min(wt["lo"], row)
                wt["hi"] = row if wt["hi"] is None else max(wt["hi"], row)

    def reader(self):
        """Consume server messages; keep the framebuffer copy; re-request after each update."""
        s = self.sock
        bpp = self.bpp // 8
        stride = self.w * bpp
        try:
            while self.alive:
                t = recv_exact(s, 1)[0]
                if t == 0:
                    nrect = struct.unpack("!xH", recv_exact(s, 3))[0]
                    nbytes = 0
                    for _ in range(nrect):
                        x, y, w, h, enc = struct.unpack("!HHHHi", recv_exact(s, 12))
                        if x + w > self.w or y + h > self.h:
                            raise ConnectionError("rect %dx%d+%d+%d outside the screen" % (w, h, x, y))
                        if enc == 0:
                            data = recv_exact(s, w * h * bpp)
                            nbytes += len(data)
                            self.bytes_in += len(data)
                            with self.fb_lock:
                                rl = w * bpp
                                for r in range(h):
                                    a = (y + r) * stride + x * bpp
                                    self.fb[a:a + rl] = data[r * rl:(r + 1) * rl]
                                self._diff_rows(x, y, w, h)
                        elif enc == 1:
                            sx, sy = struct.unpack("!HH", recv_exact(s, 4))
                            with self.fb_lock:
                                rl = w * bpp
                                rows = [bytes(self.fb[(sy + r) * stride + sx * bpp:(sy + r) * stride + sx * bpp + rl])
                                        for r in range(h)]
                                for r in range(h):
                                    a = (y + r) * stride + x * bpp
                                    self.fb[a:a + rl] = rows[r]
                                self._diff_rows(x, y, w, h)
                        else:
                            raise ConnectionError("unexpected encoding %d" % enc)
                    self.updates += 1
                    now = time.time()
                    with self.fb_lock:
                        wt = self.watch
                        if (wt is not None and not wt["hit"].is_set() and wt["lo"] is not None
                                and wt["hi"] - wt["lo"] + 1 >= wt["min_rows"]):
                            wt["t_hit"] = now
                            wt["hit"].set()
                    self.first_update.set()
                    if self.on_update:
                        self.on_update(nrect, nbytes)
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
    ap.add_argument("--person", default=human.DEFAULT_PERSON, choices=sorted(human.PERSONS),
                    help="the typist's habits (human.PERSONS)")
    ap.add_argument("--events", default="")
    ap.add_argument("--pixel-format", default="native", choices=["native", "bgr233"])
    ap.add_argument("--react-to-screen", action="store_true",
                    help="type into a terminal: after Enter wait for the output on screen, then react")
    ap.add_argument("--font-px", type=float, default=13.0, help="text line height on the desktop")
    ap.add_argument("--desktop-height", type=int, default=600, help="desktop height before server scaling")
    ap.add_argument("--output-timeout", type=float, default=10.0)
    a = ap.parse_args()

    plan = human.make_plan(a.seed, a.budget, who=a.person)
    prng = random.Random(a.seed + 1000)
    rrng = random.Random(a.seed + 3000)   # reaction times (same stream as typist.py)
    log = human.EventLog(a.events, {"driver": "rfb_client", "seed": a.seed, "budget_s": a.budget, "person": a.person,
                                    "server": "%s:%d" % (a.host, a.port),
                                    "pixel_format": a.pixel_format,
                                    "mode": "react_to_screen" if a.react_to_screen else "free"})
    t_start = time.time()
    on_update = None
    if a.react_to_screen:
        def on_update(nrect, nbytes):
            log.add("fb_update", rects=nrect, bytes=nbytes)
    c = Client(a.host, a.port, pixel_format=a.pixel_format, on_update=on_update)
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
    # more than one text line must change before "the output is on screen"
    min_rows = max(2, int(round(1.5 * a.font_px * c.h / a.desktop_height)))
    if a.react_to_screen:
        log.meta["min_changed_rows"] = min_rows
        if not c.first_update.wait(15):
            sys.stderr.write("rfb_client: no framebuffer update within 15 s\n")
    outputs = []

    def tap(keysym, label):
        c.key(keysym, True)
        log.add("key", ch=label)
        time.sleep(prng.uniform(0.03, 0.09))
        c.key(keysym, False)

    def enter_and_watch():
        """Press Enter, wait for the output on screen, then a reaction time counted from the
        moment the output appeared. A near screen often shows it while Enter is still held
        (tap() sleeps 30-90 ms before the release), so sleeping `react` from the return of
        wait_watch() made near reactions 0-60 ms longer than far ones: a lab bias against
        the typing baseline, not a trait of people."""
        c.arm_watch(min_rows)
        t0 = time.time()
        tap(KS_RETURN, "Return")
        ok, t_hit, rows = c.wait_watch(max(0.0, t0 + a.output_timeout - time.time()))
        react = human.reaction_time(rrng, a.person)
        log.add("output_done", ok=ok, changed_rows=rows, reaction_s=react,
                **({"t": round(t_hit, 6)} if t_hit else {}))
        outputs.append(ok)
        time.sleep(max(0.0, (t_hit if ok and t_hit else time.time()) + react - time.time()))

    for st in plan:
        if time.time() > deadline:
            break
        k = st["k"]
        if k == "think":
            secs = st["secs"]
            if not a.react_to_screen and prng.random() < 0.5:   # wander with the mouse while thinking
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
            if a.react_to_screen:
                enter_and_watch()
            else:
                tap(KS_RETURN, "Return")
    if a.react_to_screen:
        # leave the shell (and with it ssh and the xterm), as typist.py does
        rng_exit = random.Random(a.seed + 7)
        for ch in "exit":
            time.sleep(human.key_gap(rng_exit, a.person))
            tap(ord(ch), ch)
        time.sleep(0.15)
        enter_and_watch()
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
    print("rfb_client: %s %dx%d bpp=%d updates=%d fb_bytes=%d keys=%d%s" % (
        c.name, c.w, c.h, c.bpp, c.updates, c.bytes_in,
        sum(1 for e in log.events if e["kind"] == "key"),
        " outputs_seen=%d/%d" % (sum(outputs), len(outputs)) if a.react_to_screen else ""))
    if a.react_to_screen and (not outputs or not all(outputs)):
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main())
