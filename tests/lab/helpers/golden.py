#!/usr/bin/env python3
"""Checks and README for relaywatch's golden captures (stdlib + tshark).

  golden.py check CASE_DIR [--cut W:B] [--summary OUT.json]
      CASE_DIR holds input.pcap (cut from a lab run) and truth.json (copied
      from that run). Checks, independently of the cut that was applied:
        * every flow of truth.json is in input.pcap with a full handshake
          (pcapflows.py) and input.pcap holds no TCP flow truth.json lacks;
        * tshark sees the application protocol of each flow:
            ssh    SSH-2.0 banner from both ends (inside tcp/8888's HTTP CONNECT, which
                   tshark does not follow: the CONNECT, its answer and "SSH-2.0-" both ways)
            tls    ClientHello from the client, ServerHello from the server
            socks5 SOCKS (tcp/1080 decoded as socks)
            http   a request from the client, a response from the server (tcp/8888
                   decoded as http: the lab's HTTP CONNECT proxy)
            vnc    "RFB 003.00x" version string from both ends
            rdp    X.224 Connection Request (client) and Confirm (server)
      Prints one line per flow; exit 1 on any failure. --summary writes the
      per-flow facts used by `readme`.

  golden.py readme --golden DIR --summaries DIR --seed N --op-delay-ms N
                   --jitter-ms N --near-delay-ms N --target B --hardcap B
      Writes DIR/README.md from the summaries written by `check`.
"""
import argparse
import glob
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pcapflows  # noqa: E402

DECODE = ["-d", "tcp.port==1080,socks", "-d", "tcp.port==5900,vnc", "-d", "tcp.port==8888,http"]


def tshark(pcap, fields, yfilter):
    cmd = ["tshark", "-n", "-r", pcap, "-T", "fields", "-E", "separator=\t"] + DECODE + ["-Y", yfilter]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError("tshark failed: %s" % out.stderr.strip())
    return [line.split("\t") for line in out.stdout.splitlines() if line]


def key_of(src, sport, dst, dport):
    """Direction-free connection key."""
    a, b = (src, int(sport)), (dst, int(dport))
    return (a, b) if a <= b else (b, a)


def evidence(pcap):
    """{conn_key: set of (what, sender_ip)} from tshark."""
    ev = {}

    def add(rows, what):
        for src, sp, dst, dp in rows:
            ev.setdefault(key_of(src, sp, dst, dp), set()).add((what, src))

    f4 = ["ip.src", "tcp.srcport", "ip.dst", "tcp.dstport"]
    add(tshark(pcap, f4, "ssh.protocol contains \"SSH-2.0\""), "ssh_banner")
    # TLS over TCP (tshark also shows QUIC's handshake as TLS, without TCP ports)
    add(tshark(pcap, f4, "tcp && tls.handshake.type == 1"), "tls_client_hello")
    add(tshark(pcap, f4, "tcp && tls.handshake.type == 2"), "tls_server_hello")
    add(tshark(pcap, f4, "socks"), "socks")
    add(tshark(pcap, f4, "http.request"), "http_request")
    add(tshark(pcap, f4, "http.response"), "http_response")
    # tshark does not dissect what an HTTP CONNECT tunnel carries: the identification's text
    add(tshark(pcap, f4, "tcp.payload contains \"SSH-2.0-\""), "ssh_id_text")
    add(tshark(pcap, f4, "tcp.payload contains \"RFB 003.00\""), "rfb_version")
    add(tshark(pcap, f4, "cotp.type == 0x0e"), "x224_connection_request")
    add(tshark(pcap, f4, "cotp.type == 0x0d"), "x224_connection_confirm")
    u4 = ["ip.src", "udp.srcport", "ip.dst", "udp.dstport"]
    add(tshark(pcap, u4, "quic.long.packet_type == 0"), "quic_initial")
    return ev


def app_ok(app, ev, client, server, proxied=False):
    """(ok, text) for one flow's application evidence; `proxied`: inside the lab's HTTP CONNECT."""
    if proxied and app == "ssh":
        need = [("http_request", client), ("http_response", server), ("ssh_id_text", client),
                ("ssh_id_text", server)]
    else:
        need = None
    need = need or {
        "ssh": [("ssh_banner", client), ("ssh_banner", server)],
        "tls": [("tls_client_hello", client), ("tls_server_hello", server)],
        "socks5": [("socks", client)],
        "http": [("http_request", client), ("http_response", server)],
        "vnc": [("rfb_version", server), ("rfb_version", client)],
        "rdp": [("x224_connection_request", client), ("x224_connection_confirm", server)],
        "quic": [("quic_initial", client), ("quic_initial", server)],
    }.get(app)
    if need is None:
        return True, "no check for app %s" % app
    missing = [w for w in need if w not in ev]
    seen = sorted({w for w, _ in ev})
    if missing:
        return False, "missing %s" % ", ".join("%s from %s" % m for m in missing)
    return True, "seen: %s" % ", ".join(seen)


def cmd_check(a):
    pcap = os.path.join(a.case_dir, "input.pcap")
    with open(os.path.join(a.case_dir, "truth.json")) as f:
        truth = json.load(f)
    lan = "10.77.1.0/24"
    flows = pcapflows.flows(pcap, lan)
    by_tuple = {(c["src"], c["sport"], c["dst"], c["dport"]): c for c in flows}
    ev = evidence(pcap)
    bad = 0
    rows = []
    case = os.path.basename(os.path.normpath(a.case_dir))
    npk = sum(1 for _ in pcapflows.read_packets(pcap))
    ts = [t for t, _, _ in pcapflows.read_packets(pcap)]
    print("== %s: %s, %d bytes, %d packets, %.1f s; truth status=%s" % (
        case, pcap, os.path.getsize(pcap), npk, (ts[-1] - ts[0]) if ts else 0, truth.get("status")))
    if truth.get("status") != "ok":
        bad += 1
    known = set()
    for fl in truth["flows"]:
        ft = fl["five_tuple"]
        k = (ft["src"], ft["sport"], ft["dst"], ft["dport"])
        known.add(k)
        c = by_tuple.get(k)
        row = {"five_tuple": ft, "role": fl["role"], "app": fl["app"], "relayed": fl["relayed"],
               "opened_from": fl["opened_from"], "src_host": fl["src_host"], "dst_host": fl["dst_host"],
               "expected_outer_rtt_ms": fl["expected_outer_rtt_ms"],
               "hidden_leg_rtt_ms": fl["hidden_leg_rtt_ms"]}
        if c is None:
            print("  FAIL %-15s %s:%s -> %s:%s not in input.pcap" % (fl["role"], *k))
            bad += 1
            row["present"] = False
            rows.append(row)
            continue
        if c["proto"] == "udp" and fl["app"] == "quic":
            # QUIC's opening: each side's Initial (the relay detector times it)
            hs = True
            ok_app, txt = app_ok("quic", ev.get(key_of(*k), set()), ft["src"], ft["dst"])
        elif c["proto"] == "udp":
            # No handshake: WebRTC's is ICE, its STUN checks answered both ways (through a
            # TURN server: the peer's, relayed).
            hs = True
            st = c.get("stun") or {}
            st = st.get("relayed") or st
            ok_app = bool(st.get("answered_requests_from_lan") and
                          st.get("answered_requests_from_outside"))
            txt = "stun checks answered: %s from the LAN, %s from outside" % (
                st.get("answered_requests_from_lan"), st.get("answered_requests_from_outside"))
        elif not any(fl.get("payload_bytes") or [1]):
            # Opened and abandoned without data in the full run (Chromium does so): nothing to
            # check but that it was opened (verify.py times it).
            hs = bool(c["syn_ts"] and c["synack_ts"])
            ok_app, txt = True, "no data in the full run (opened, then abandoned)"
        else:
            hs = bool(c["syn_ts"] and c["synack_ts"] and c["ack_ts"])
            ok_app, txt = app_ok(fl["app"], ev.get(key_of(*k), set()), ft["src"], ft["dst"],
                                 proxied=int(ft["dport"]) == 8888)
        good = hs and ok_app
        bad += not good
        row.update({"present": True, "handshake": hs, "app_ok": ok_app, "app_evidence": txt,
                    "pkts": [c["pkts_c2s"], c["pkts_s2c"]],
                    "payload_bytes": [c["bytes_c2s"], c["bytes_s2c"]],
                    "duration_s": c["duration_s"], "outer_rtt_ms": c["outer_rtt_ms"],
                    "full_run_pkts": fl["pkts"], "full_run_payload_bytes": fl["payload_bytes"]})
        rows.append(row)
        print("  %s %-15s %-6s %s:%s -> %s:%s  handshake=%s outer_rtt=%sms pkts=%s/%s (full run %s) %s" % (
            "ok  " if good else "FAIL", fl["role"], fl["app"], *k, "yes" if hs else "NO",
            c["outer_rtt_ms"], c["pkts_c2s"], c["pkts_s2c"], "/".join(map(str, fl["pkts"])), txt))
    extra = [c for c in flows if c["proto"] == "tcp" and (c["src"], c["sport"], c["dst"], c["dport"]) not in known]
    for c in extra:
        print("  FAIL flow not in truth.json: %s:%s -> %s:%s" % (c["src"], c["sport"], c["dst"], c["dport"]))
        bad += 1
    print("  summary: %d flows, %d problems" % (len(truth["flows"]), bad))
    if a.summary:
        with open(a.summary, "w") as f:
            json.dump({"case": case, "bytes": os.path.getsize(pcap), "packets": npk,
                       "first_ts": ts[0] if ts else None, "last_ts": ts[-1] if ts else None,
                       "cut": a.cut, "ok": bad == 0, "truth": {k: truth[k] for k in (
                           "scenario", "status", "op_delay_ms", "jitter_ms", "near_delay_ms", "seed",
                           "label", "hidden_leg_rtt_ms", "direct_rtt_ms", "note")},
                       "flows": rows}, f, indent=1)
    return 0 if bad == 0 else 1


DESCR = {
    "direct_tls": "Negative case. The user sits at the laptop and runs curl to https://srv.rwlab.test/ "
                  "(several connections of mixed size). Nothing is relayed.",
    "proxied_tls": "The far operator runs the same curls through the dante SOCKS5 proxy on the laptop. "
                   "TLS is end to end op<->srv, so the laptop->srv TLS handshake shows the hidden-leg "
                   "RTT as the client gap (ServerHello flight -> client Finished).",
    "direct_ssh_interactive": "Negative case for SSH. The user at the laptop types into `ssh -tt srv` "
                              "(seeded human key timing, ~20 s).",
    "jump_ssh_interactive": "The operator types into `ssh -J root@farm root@srv`; the laptop's sshd "
                            "forwards the inner SSH session (direct-tcpip) to srv.",
    "ssh_tunnel": "The operator runs `ssh -N -D 1081 root@farm` and curls bulk HTTPS from srv through "
                  "it; the laptop's sshd opens the TLS connections to srv. The SSH operator leg "
                  "carries every tunnelled byte, so a byte cut (B) ends it early in input.pcap, "
                  "while the egress TLS connections opened later still appear with their "
                  "handshakes and first bytes.",
    "vnc_session": "The operator's RFB client drives x11vnc on the laptop (Xvfb + xterm): key events, "
                   "pointer moves and clicks. Recorded with x11vnc -scale 1/2 and an 8 bpp client "
                   "pixel format (RWLAB_VNC_SCALE, RWLAB_VNC_PIXEL_FORMAT) to keep the raw "
                   "framebuffer traffic small.",
    "rdp_session": "The operator's xfreerdp (TLS security) drives xrdp on the laptop (libvnc backend "
                   "-> x11vnc on the laptop's Xvfb + xterm) with xdotool key presses, pointer moves "
                   "and clicks.",
    "scp_transfer": "Negative case for SSH bulk: the user at the laptop scp's a ~2 MB file to srv.",
    "ssh_local_forward": "The operator runs `ssh -N -L 8443:srv:443 root@farm` and curls through the "
                         "forward; the laptop's sshd opens the TLS connections to srv.",
    "proxied_rdp": "As rdp_session, but the operator's xfreerdp reaches xrdp through the dante SOCKS5 "
                   "proxy on the laptop (`/proxy:socks5://farm:1080`): RDP inside SOCKS.",
    "direct_browser": "Negative case with a real browser: the user at the laptop browses srv's seeded "
                      "site with Debian's chromium (headless) for 20 s: parallel connections, "
                      "reuse and session resumption in one browser process.",
    "proxied_browser": "The far operator's chromium browses the same site through the dante SOCKS5 "
                       "proxy on the laptop (Chromium sends the name, the laptop resolves it); "
                       "every laptop->srv TLS handshake waits on the far browser.",
    "proxied_ssh": "The operator types into `ssh root@srv` whose ProxyCommand is "
                   "`nc -X connect -x farm:8888`: SSH inside the HTTP CONNECT tunnel of tinyproxy "
                   "on the laptop, and from the laptop on to srv.",
}


def controlled_text(t):
    lab = t["label"]
    if lab.get("controlled"):
        return "%s (10.77.1.10) is remote-controlled; the human is at %s (198.18.9.50)" % (
            lab["controlled"], lab["human_at"])
    if lab["relayed"]:
        return "farm (10.77.1.10) is the relay; the human is at %s (198.18.9.50)" % lab["human_at"]
    return "none: the human is at the laptop (farm 10.77.1.10)"


def cmd_readme(a):
    sums = []
    for p in sorted(glob.glob(os.path.join(a.summaries, "*.json"))):
        with open(p) as f:
            sums.append(json.load(f))
    order = ["rdp_session", "vnc_session", "direct_ssh_interactive", "jump_ssh_interactive",
             "ssh_tunnel", "direct_tls", "proxied_tls", "scp_transfer", "ssh_local_forward",
             "proxied_rdp", "proxied_ssh", "direct_browser", "proxied_browser"]
    sums.sort(key=lambda s: order.index(s["case"]) if s["case"] in order else 99)
    L = []
    w = L.append
    w("# Golden captures")
    w("")
    w("Small pcaps of **real** traffic, recorded in relaywatch's network-namespace lab")
    w("(`tests/lab/`), each with the lab's ground truth. Every case directory holds:")
    w("")
    w("* `input.pcap`: classic pcap (Ethernet, microsecond timestamps) of the gateway's LAN")
    w("  interface (`lan0`, faces the laptop `farm`), cut down from the full run (see below).")
    w("* `truth.json`: the lab's ground truth for the run, copied unchanged. Its flow 5-tuples,")
    w("  labels, roles, configured RTTs and handshake RTTs hold for `input.pcap` too. Its")
    w("  `pkts`, `payload_bytes` and `last_ts` count the **full** run, not the cut.")
    w("")
    w("## How they were made")
    w("")
    w("```")
    w("sudo tests/lab/record_golden.sh      # all cases below; lab up -> runs -> cut -> check -> lab down")
    w("```")
    w("")
    w("which runs, for each case (`--out` is a scratch directory, not kept):")
    w("")
    w("```")
    w("tests/lab/lab.sh run CASE --op-delay-ms %s --seed %s --out WORK/CASE" % (
        int(float(a.op_delay_ms)), a.seed))
    w("```")
    w("")
    w("with `RWLAB_NEAR_DELAY_MS=%s` (RTT gw<->srv %s ms), jitter %s ms, RTT gw<->op %s ms" % (
        a.near_delay_ms, 2 * float(a.near_delay_ms), a.jitter_ms, 2 * float(a.op_delay_ms)))
    w("(the hidden leg for relayed cases). `vnc_session` also gets `RWLAB_VNC_SCALE=1/2")
    w("RWLAB_VNC_PIXEL_FORMAT=bgr233`. record_golden.sh uses its own namespace prefix")
    w("(`rwgold-`) and X displays (87-89) so it does not collide with another lab, runs the")
    w("lab at nice -10 and the delay lines SCHED_FIFO, so that other load on the machine does")
    w("not distort the timing. A run is kept only if `verify.py` passes on the full capture")
    w("(handshake RTTs within 3 ms + 10 %, TLS client gap as expected); otherwise it is rerun.")
    w("")
    w("**The cut.** Each run's `gw.pcap` is cut per TCP connection, so every connection")
    w("keeps its handshake and the start of its session; what is dropped is the tail of")
    w("long or bulky connections. The filter (tshark, relative sequence numbers) is")
    w("")
    w("```")
    w("!tcp || tcp.flags.syn == 1 || (tcp.time_relative <= W && tcp.seq <= B && tcp.ack <= B)")
    w("```")
    w("")
    w("i.e. keep a connection's first W seconds and stop once either side has sent B bytes")
    w("(W or B = 0: no limit; `0:0` = the whole run). A kept connection is therefore a clean")
    w("prefix: no holes, but long connections end without FIN. record_golden.sh tries")
    w("W:B pairs from generous to tight and keeps the first that gives a file under %d bytes" % a.target)
    w("(hard cap %d). After the cut `tests/lab/helpers/golden.py check` confirms every truth flow is" % a.hardcap)
    w("present with its full handshake and that tshark sees the application protocol")
    w("(SSH-2.0 banners from both ends, TLS ClientHello/ServerHello, SOCKS, `RFB 003.00x`")
    w("from both ends, X.224 Connection Request/Confirm), and `tests/lab/helpers/verify.py` re-checks")
    w("the handshake RTTs and the TLS client gap on the cut file.")
    w("")
    w("Addresses: farm (laptop) 10.77.1.10, srv 198.18.2.10, op (far operator) 198.18.9.50.")
    w("`opened_from: outside` means the connection was opened from op into the laptop (as a")
    w("port forward or reverse tunnel would deliver it).")
    w("")
    w("## Cases")
    w("")
    w("| case | label (relayed, app, relay_kind) | controlled side | size | packets | span | cut W:B |")
    w("| --- | --- | --- | --- | --- | --- | --- |")
    for s in sums:
        t = s["truth"]
        lab = t["label"]
        span = (s["last_ts"] - s["first_ts"]) if s["first_ts"] else 0
        w("| `%s` | %s, %s, %s | %s | %d B | %d | %.1f s | %s |" % (
            s["case"], "relayed" if lab["relayed"] else "not relayed", lab["app"], lab["relay_kind"] or "-",
            lab["controlled"] or ("relay: farm" if lab["relayed"] else "-"),
            s["bytes"], s["packets"], span, s["cut"] or "?"))
    for s in sums:
        t = s["truth"]
        w("")
        w("### %s" % s["case"])
        w("")
        w(DESCR.get(s["case"], t.get("note", "")))
        w("")
        w("* label: `%s`" % json.dumps(t["label"], sort_keys=True))
        w("* controlled side: %s" % controlled_text(t))
        hid = t["hidden_leg_rtt_ms"]
        w("* hidden-leg RTT: %s" % ("none (not relayed)" if not hid else
                                    "%s ms configured, %s ms measured by ping before the capture" % (
                                        hid["configured"], hid["measured_ping_median_ms"])))
        w("* input.pcap: %d bytes, %d packets, cut `%s`" % (s["bytes"], s["packets"], s["cut"]))
        w("* command: `tests/lab/lab.sh run %s --op-delay-ms %s --seed %s`%s, then the cut" % (
            s["case"], int(float(t["op_delay_ms"])), t["seed"],
            " with `RWLAB_VNC_SCALE=1/2 RWLAB_VNC_PIXEL_FORMAT=bgr233`" if s["case"] == "vnc_session" else ""))
        w("")
        w("| 5-tuple (client -> server) | app | role | opened from | relayed | pkts c2s/s2c in cut (full run) | outer RTT ms |")
        w("| --- | --- | --- | --- | --- | --- | --- |")
        for r in s["flows"]:
            ft = r["five_tuple"]
            w("| %s %s:%s (%s) -> %s:%s (%s) | %s | %s | %s | %s | %s (%s) | %s |" % (
                ft.get("proto", "tcp"), ft["src"], ft["sport"], r["src_host"], ft["dst"], ft["dport"], r["dst_host"], r["app"],
                r["role"], r["opened_from"], "yes" if r["relayed"] else "no",
                "/".join(map(str, r.get("pkts", ["-", "-"]))),
                "/".join(map(str, r.get("full_run_pkts", ["-", "-"]))), r.get("outer_rtt_ms")))
    w("")
    w("## Regenerating")
    w("")
    w("Needs root, `ip netns`, and the packages of `tests/lab/lab.sh deps`. Ephemeral ports,")
    w("timestamps and key material change on every run; key timing, commands, URLs and pauses")
    w("are fixed by the seed. Rerunning rewrites `input.pcap`, `truth.json` and this README.")
    w("")
    with open(os.path.join(a.golden, "README.md"), "w") as f:
        f.write("\n".join(L))
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("case_dir")
    c.add_argument("--cut", default="")
    c.add_argument("--summary", default="")
    r = sub.add_parser("readme")
    r.add_argument("--golden", required=True)
    r.add_argument("--summaries", required=True)
    r.add_argument("--seed", required=True)
    r.add_argument("--op-delay-ms", required=True)
    r.add_argument("--jitter-ms", default="0")
    r.add_argument("--near-delay-ms", default="5")
    r.add_argument("--target", type=int, default=200000)
    r.add_argument("--hardcap", type=int, default=400000)
    a = ap.parse_args()
    return cmd_check(a) if a.cmd == "check" else cmd_readme(a)


if __name__ == "__main__":
    sys.exit(main())
