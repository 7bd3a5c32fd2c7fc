#!/usr/bin/env python3
"""Signalling server and page host of the WebRTC scenarios (stdlib only; runs on srv).

Serves helpers/webrtc_page.html to two headless Chromiums and relays one SDP offer and one
answer between them. Non-trickle: each page waits for ICE gathering to complete, posts its
full SDP (host candidates only, no STUN/TURN), and the other side polls for it.

  --mode session   a remote desktop (webrtc_session): the laptop's page /host draws a screen
                   on a canvas, streams it (canvas.captureStream(), a frame whenever it
                   changes) and creates the data channel; the far operator's page /viewer
                   receives the video and sends a person's input over the channel, the
                   seeded plan of this server's /config (make_plan). The host repaints on
                   every input.
  --mode call      a video call (webrtc_call): /caller (the laptop) and /callee (the far
                   person) both send getUserMedia video and audio (Chromium's fake devices)
                   for --budget seconds.

GET  /host /viewer /caller /callee   the page (its role is the path)
GET  /config                         {"mode", "seed", "budget_s", "plan", "rtc": {role: options}}
POST /offer, /answer                 an SDP ({"type", "sdp"}); GET returns it, 204 until then
POST /log                            a progress record of a page (JSON); kept in --log (JSON
                                     lines, with the server's receive time) and summed up
                                     in --status (JSON, rewritten on every record)
POST /events                         the viewer's input events; written to --events in the
                                     lab's event-file format ({"meta", "events"}, wall clock)

usage: webrtc_signal.py --bind IP --port N --mode session|call --seed N --budget S
                        --log FILE --status FILE [--events FILE]
                        [--turn URL [--turn-user U --turn-pass P] [--relay-roles host,...]]
       With --turn the listed roles gather only relayed candidates (iceTransportPolicy
       relay) from that TURN server; --check then also requires that their pair is relayed.
       webrtc_signal.py --check STATUS   (after a run: prints what each page reported and
                                          exits 1 unless the session or call really happened)
"""
import argparse
import http.server
import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import human  # noqa: E402

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "webrtc_page.html")
ROLES = {"session": ("host", "viewer"), "call": ("caller", "callee")}
WORDS = ["ls", "cd src", "make", "git status", "vim notes.txt", "top", "ssh build01", "cat log",
         "hello", "report", "invoice", "password", "exit", "kubectl get pods", "sudo -i"]
SCREEN_W, SCREEN_H = 1280, 720


def make_plan(seed, budget_s):
    """A person's input for a remote desktop, seeded: typing words at human.key_gap (80-250 ms
    a key, sometimes a hesitation), pointer moves and drags (6-14 moves 15-40 ms apart, then a
    click or a drag's release), pauses of 0.5-3 s between them. Each action has its offset
    "at" (s) from the start of input; the last one comes before budget_s."""
    rng = random.Random(seed)
    plan, t = [], 0.5
    x, y = SCREEN_W // 2, SCREEN_H // 2

    def add(dt, **kw):
        nonlocal t
        t += dt
        kw["at"] = round(t, 4)
        plan.append(kw)

    while True:
        seg = []   # (dt, action) of one gesture, kept only if it fits the budget
        if rng.random() < 0.55:
            word = rng.choice(WORDS)
            for ch in word:
                seg.append((human.key_gap(rng), {"k": "key", "ch": ch}))
            if rng.random() < 0.5:
                seg.append((human.key_gap(rng), {"k": "key", "ch": "Enter"}))
        else:
            nx, ny = rng.randint(40, SCREEN_W - 40), rng.randint(40, SCREEN_H - 40)
            drag = rng.random() < 0.4
            pts = human.pointer_path(rng, x, y, nx, ny, rng.randint(6, 14))
            if drag:
                seg.append((rng.uniform(0.05, 0.2), {"k": "down", "x": x, "y": y}))
            for px, py in pts:
                seg.append((rng.uniform(0.015, 0.040), {"k": "move", "x": px, "y": py}))
            if drag:
                seg.append((rng.uniform(0.05, 0.15), {"k": "up", "x": nx, "y": ny}))
            elif rng.random() < 0.5:
                seg.append((rng.uniform(0.08, 0.3), {"k": "down", "x": nx, "y": ny}))
                seg.append((rng.uniform(0.06, 0.12), {"k": "up", "x": nx, "y": ny}))
            x, y = nx, ny
        if t + sum(dt for dt, _ in seg) > budget_s:
            break
        for dt, act in seg:
            add(dt, **act)
        t += round(rng.uniform(0.5, 3.0), 3)
    return plan


def relay_roles(a):
    return [r for r in a.relay_roles.split(",") if r] if a.turn else []


def rtc_config(a):
    """Per role: the RTCPeerConnection options beyond the page's own (a TURN server, and
    relay-only ICE for the roles that must go through it)."""
    return {r: {"iceServers": [{"urls": a.turn, "username": a.turn_user, "credential": a.turn_pass}],
                "iceTransportPolicy": "relay"} for r in relay_roles(a)}


class State:
    def __init__(self, a):
        self.a = a
        self.lock = threading.Lock()
        self.sdp = {}
        self.plan = make_plan(a.seed, a.budget) if a.mode == "session" else []
        self.status = {"mode": a.mode, "seed": a.seed, "budget_s": a.budget,
                       "planned_inputs": len(self.plan), "offer": False, "answer": False,
                       "relay_roles": relay_roles(a),
                       "roles": {r: {} for r in ROLES[a.mode]}}
        self.write_status()

    def write_status(self):
        tmp = self.a.status + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.status, f, indent=1)
            f.write("\n")
        os.replace(tmp, self.a.status)

    def record(self, rec):
        with self.lock:
            rec["t_server"] = round(time.time(), 6)
            with open(self.a.log, "a") as f:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
            role = rec.get("role")
            if role in self.status["roles"]:
                st = self.status["roles"][role]
                ev = rec.get("ev", "?")
                st["last"] = ev
                st.setdefault("seen", [])
                if ev not in st["seen"]:
                    st["seen"].append(ev)
                if isinstance(rec.get("stats"), dict):
                    st["stats"] = rec["stats"]
                for k, v in rec.items():
                    if k not in ("role", "ev", "stats", "t_server"):
                        st[k] = v
            self.write_status()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "rwlab-signal/1"
    state = None  # set in main

    def log_message(self, fmt, *args):
        sys.stderr.write("%.3f %s %s\n" % (time.time(), self.client_address[0], fmt % args))

    def reply(self, code, body=b"", ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self):
        st, path = self.state, self.path.split("?")[0]
        if path.lstrip("/") in ROLES[st.a.mode]:
            with open(PAGE, "rb") as f:
                self.reply(200, f.read(), "text/html; charset=utf-8")
        elif path == "/config":
            self.reply(200, json.dumps({"mode": st.a.mode, "seed": st.a.seed, "budget_s": st.a.budget,
                                        "width": SCREEN_W, "height": SCREEN_H, "max_kbps": st.a.max_kbps,
                                        "rtc": rtc_config(st.a), "plan": st.plan}).encode())
        elif path in ("/offer", "/answer"):
            with st.lock:
                sdp = st.sdp.get(path[1:])
            if sdp is None:
                self.reply(204)
            else:
                self.reply(200, json.dumps(sdp).encode())
        elif path == "/favicon.ico":
            self.reply(404)
        else:
            self.reply(404)

    def do_POST(self):
        st, path = self.state, self.path.split("?")[0]
        n = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            self.reply(400)
            return
        if path in ("/offer", "/answer"):
            with st.lock:
                st.sdp[path[1:]] = body
                st.status[path[1:]] = True
                st.write_status()
            st.record({"role": "server", "ev": path[1:] + "_posted", "sdp": body.get("sdp", ""),
                       "candidates": [ln for ln in body.get("sdp", "").split("\r\n")
                                      if ln.startswith("a=candidate:")]})
            self.reply(204)
        elif path == "/log":
            st.record(body)
            self.reply(204)
        elif path == "/events":
            if st.a.events:
                meta = {"driver": "webrtc_viewer (helpers/webrtc_page.html)", "seed": st.a.seed,
                        "budget_s": st.a.budget, "planned_inputs": len(st.plan),
                        "clock": "wall clock of the operator's browser (performance.timeOrigin + now)"}
                meta.update(body.get("meta") or {})
                with open(st.a.events, "w") as f:
                    json.dump({"meta": meta, "events": body.get("events", [])}, f, indent=1)
                    f.write("\n")
            st.record({"role": body.get("role", "viewer"), "ev": "events_posted",
                       "events_written": len(body.get("events", []))})
            self.reply(204)
        else:
            self.reply(404)


def check(path):
    """What the pages reported (--status), and whether the run did what it should: the
    session's data channel opened on both ends, every planned input was sent and received and
    repainted, video frames went out and were decoded; the call's media flowed both ways."""
    with open(path) as f:
        st = json.load(f)
    problems, roles = [], st["roles"]

    def rtp(role, key):
        return ((roles.get(role) or {}).get("stats") or {}).get(key) or {}

    for role, r in roles.items():
        if "final" not in r.get("seen", []):
            problems.append("%s never reported its end (seen: %s)" % (role, r.get("seen")))
        if "error" in r.get("seen", []):
            problems.append("%s reported an error: %s" % (role, r.get("msg")))
        pair = (r.get("stats") or {}).get("pair") or {}
        print("webrtc %s: pair %s -> %s, rtt %s s, consent requests sent %s, requests received %s" % (
            role, pair.get("local"), pair.get("remote"), pair.get("rtt_s"),
            pair.get("consent_requests_sent"), pair.get("requests_received")))
        for key in sorted((r.get("stats") or {})):
            if key.endswith(("_video", "_audio")):
                print("webrtc %s: %s %s" % (role, key, json.dumps(r["stats"][key], sort_keys=True)))
    for role in st.get("relay_roles", []):
        local = ((roles.get(role, {}).get("stats") or {}).get("pair") or {}).get("local") or ""
        if not local.endswith(" relay"):
            problems.append("%s: its pair's local candidate is %r, not the TURN server's relayed one" % (role, local))
    if st["mode"] == "session":
        h, v = roles["host"], roles["viewer"]
        print("webrtc session: planned %s inputs, viewer sent %s (late median %s ms, max %s ms), "
              "host received %s %s, host repaints %s (%s idle cursor blinks), viewer frames shown %s" % (
                  st["planned_inputs"], v.get("inputs_sent"), v.get("late_ms_median"),
                  v.get("late_ms_max"), h.get("inputs_received"), h.get("by_kind"), h.get("repaints"),
                  h.get("idle_repaints"), v.get("frames_shown")))
        for role in ("host", "viewer"):
            if "dc_open" not in roles[role].get("seen", []):
                problems.append("%s: the data channel never opened" % role)
        if not st["planned_inputs"] or v.get("inputs_sent") != st["planned_inputs"]:
            problems.append("viewer sent %s of %s planned inputs" % (v.get("inputs_sent"), st["planned_inputs"]))
        if h.get("inputs_received") != v.get("inputs_sent"):
            problems.append("host received %s inputs, viewer sent %s" % (h.get("inputs_received"), v.get("inputs_sent")))
        if (h.get("repaints") or 0) < (h.get("inputs_received") or 0):
            problems.append("fewer repaints than inputs")
        if not rtp("host", "outbound-rtp_video").get("frames_encoded"):
            problems.append("the host encoded no video frames")
        if not rtp("viewer", "inbound-rtp_video").get("frames_decoded"):
            problems.append("the viewer decoded no video frames")
    else:
        for role in roles:
            for kind in ("video", "audio"):
                if not rtp(role, "outbound-rtp_" + kind).get("packets"):
                    problems.append("%s sent no %s" % (role, kind))
                if not rtp(role, "inbound-rtp_" + kind).get("packets"):
                    problems.append("%s received no %s" % (role, kind))
            if not rtp(role, "inbound-rtp_video").get("frames_decoded"):
                problems.append("%s decoded no video frames" % role)
    for p in problems:
        print("webrtc FAILED: %s" % p)
    if not problems:
        print("webrtc %s: ok" % st["mode"])
    return 1 if problems else 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        return check(sys.argv[2])
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=sorted(ROLES), required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--budget", type=float, default=40.0, help="seconds of input (session) or call")
    ap.add_argument("--max-kbps", type=int, default=0,
                    help="session: cap the screen video's bitrate (kbit/s; 0: the browser's own)")
    ap.add_argument("--turn", default="", help="a TURN server's URL (turn:IP:PORT?transport=udp)")
    ap.add_argument("--turn-user", default="rwlab")
    ap.add_argument("--turn-pass", default="rwlab")
    ap.add_argument("--relay-roles", default="host",
                    help="with --turn: the roles (comma-separated) that may only use relayed candidates")
    ap.add_argument("--log", required=True)
    ap.add_argument("--status", required=True)
    ap.add_argument("--events", default="")
    ap.add_argument("--print-plan", action="store_true", help="print the plan and exit")
    a = ap.parse_args()
    if a.print_plan:
        json.dump(make_plan(a.seed, a.budget), sys.stdout, indent=1)
        print()
        return 0
    open(a.log, "w").close()
    Handler.state = State(a)
    srv = http.server.ThreadingHTTPServer((a.bind, a.port), Handler)
    srv.daemon_threads = True
    sys.stderr.write("webrtc_signal: %s mode on %s:%d, %d planned inputs\n" % (
        a.mode, a.bind, a.port, len(Handler.state.plan)))
    sys.stderr.flush()
    srv.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
