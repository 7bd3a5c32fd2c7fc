#!/usr/bin/env python3
"""Build truth.json for one farm.sh run (stdlib only).

Ground truth for "which device opened this flow" comes from the laptops
themselves: every laptop namespace records its own SYNs (laptops/NAME.syn.pcap,
all interfaces, tunnels included). NAT and the VPN servers rewrite addresses
and ports but never the initial sequence number, so a SYN seen at the entry
point belongs to the laptop that sent a SYN with the same ISN to the same
destination. Anything at the entry point that matches no laptop SYN is listed
in unexpected_flows.

Expected SYN fingerprints are derived from each laptop's read-back settings
(sysctls, route advmss, tunnel MTUs), independently of the capture, and
compared with what the entry point saw (checks). The "evidence" section
records, per device, the per-connection TCP timestamp offsets, timestamp
clock rates, IP-ID behaviour and NAT source ports: what does and does not tell
identical laptops apart on this kernel.

usage: farm_truth.py --scenario S --run-dir DIR --topology JSON ... (see farm.sh)
"""
import argparse
import collections
import glob
import ipaddress
import json
import math
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pcapflows  # noqa: E402

OPT_NAMES = {0: "eol", 1: "nop", 2: "mss", 3: "ws", 4: "sok", 5: "sack", 8: "ts"}
# OpenVPN 2.6 defaults used by the lab: mssfix 1492 ("mtu" semantics: the
# outer IPv4 packet), AES-256-GCM data channel (opcode/peer-id 4 + packet-id
# 4 + GCM tag 16 = 24 bytes), TCP transport adds a 2-byte length prefix.
OVPN_MSSFIX = 1492
OVPN_DATA_OVERHEAD = 24


def ovpn_mssfix_mss(transport):
    outer = 20 + (20 + 2 if transport == "tcp" else 8)
    return OVPN_MSSFIX - outer - OVPN_DATA_OVERHEAD - 40


def parse_l3(linktype, data):
    """(ip_header_bytes, l4_bytes) or None; Ethernet, SLL, SLL2, raw IP."""
    if linktype == 276:  # LINUX_SLL2: protocol(2) reserved(2) ifindex(4) ... 20 bytes
        if len(data) < 40 or struct.unpack("!H", data[0:2])[0] != 0x0800:
            return None
        off = 20
    elif linktype in (1, 113, 101):
        if linktype == 1:
            off = 12
            etype = struct.unpack("!H", data[off:off + 2])[0]
            off += 2
            while etype == 0x8100:
                etype = struct.unpack("!H", data[off + 2:off + 4])[0]
                off += 4
        elif linktype == 113:
            etype, off = struct.unpack("!H", data[14:16])[0], 16
        else:
            etype, off = 0x0800, 0
        if etype != 0x0800:
            return None
    else:
        return None
    if len(data) < off + 20 or data[off] >> 4 != 4:
        return None
    ihl = (data[off] & 0xF) * 4
    total = struct.unpack("!H", data[off + 2:off + 4])[0]
    return data[off:off + ihl], data[off + ihl:off + total]


def tcp_options(raw):
    opts, layout, i = {}, [], 0
    while i < len(raw):
        k = raw[i]
        if k == 0:
            layout.append("eol")
            break
        if k == 1:
            layout.append("nop")
            i += 1
            continue
        if i + 1 >= len(raw):
            break
        ln = raw[i + 1]
        if ln < 2:
            break
        body = raw[i + 2:i + ln]
        layout.append(OPT_NAMES.get(k, "opt%d" % k))
        if k == 2 and len(body) == 2:
            opts["mss"] = struct.unpack("!H", body)[0]
        elif k == 3 and len(body) == 1:
            opts["ws"] = body[0]
        elif k == 4:
            opts["sok"] = True
        elif k == 8 and len(body) == 8:
            opts["tsval"], opts["tsecr"] = struct.unpack("!II", body)
        i += ln
    opts["layout"] = ",".join(layout)
    return opts


def packets(path):
    """Yield dicts for every IPv4 packet (TCP/UDP/other) in a pcap."""
    for ts, lt, data in pcapflows.read_packets(path):
        p = parse_l3(lt, data)
        if not p:
            continue
        ip, l4 = p
        d = {"ts": ts, "ttl": ip[8], "id": struct.unpack("!H", ip[4:6])[0],
             "df": bool(struct.unpack("!H", ip[6:8])[0] & 0x4000), "proto": ip[9],
             "src": str(ipaddress.ip_address(ip[12:16])), "dst": str(ipaddress.ip_address(ip[16:20]))}
        if d["proto"] == 6 and len(l4) >= 20:
            sport, dport, seq, ack, offflags, win = struct.unpack("!HHIIHH", l4[:16])
            doff = (offflags >> 12) * 4
            d.update(sport=sport, dport=dport, seq=seq, ack=ack, flags=offflags & 0x1FF, win=win,
                     plen=max(0, len(l4) - doff), opts=tcp_options(l4[20:doff]))
        elif d["proto"] == 17 and len(l4) >= 8:
            sport, dport = struct.unpack("!HH", l4[:4])
            d.update(sport=sport, dport=dport, plen=len(l4) - 8)
        yield d


def syn_fp(p):
    o = p["opts"]
    return {"ttl": p["ttl"], "df": p["df"], "ip_id": p["id"], "window": p["win"], "mss": o.get("mss"),
            "wscale": o.get("ws"), "sack_perm": bool(o.get("sok")), "timestamps": "tsval" in o,
            "tsval": o.get("tsval"), "options": o["layout"]}


def entry_connections(path):
    """TCP connections (oriented by the SYN) and other flows in one entry capture."""
    conns, order, other = {}, [], collections.OrderedDict()
    for p in packets(path):
        if p["proto"] != 6 or "seq" not in p:
            k = (p["proto"], p["src"], p.get("sport"), p["dst"], p.get("dport"))
            rk = (p["proto"], p["dst"], p.get("dport"), p["src"], p.get("sport"))
            if rk in other:
                k = rk
            o = other.setdefault(k, {"proto": {1: "icmp", 17: "udp"}.get(p["proto"], str(p["proto"])),
                                     "src": k[1], "sport": k[2], "dst": k[3], "dport": k[4],
                                     "first_ts": p["ts"], "pkts": 0})
            o["pkts"] += 1
            o["last_ts"] = p["ts"]
            continue
        k = (p["src"], p["sport"], p["dst"], p["dport"])
        rk = (p["dst"], p["dport"], p["src"], p["sport"])
        syn = p["flags"] & 0x02 and not p["flags"] & 0x10
        if k in conns:
            c, fwd = conns[k], True
        elif rk in conns:
            c, fwd = conns[rk], False
        else:
            if p["flags"] & 0x12 == 0x12:
                k, fwd = rk, False
            else:
                fwd = True
            c = {"key": k, "syn": None, "isn": None, "first_ts": p["ts"], "pkts": [0, 0], "bytes": [0, 0],
                 "c2s": [], "fin": False, "rst": False}
            conns[k] = c
            order.append(k)
        if syn and fwd and c["syn"] is None:
            c["syn"] = syn_fp(p)
            c["syn"]["ts"] = p["ts"]
            c["isn"] = p["seq"]
        i = 0 if fwd else 1
        c["pkts"][i] += 1
        c["bytes"][i] += p["plen"]
        c["last_ts"] = p["ts"]
        c["fin"] = c["fin"] or bool(p["flags"] & 1)
        c["rst"] = c["rst"] or bool(p["flags"] & 4)
        if fwd:
            c["c2s"].append((p["ts"], p["id"], p["opts"].get("tsval")))
    return [conns[k] for k in order], list(other.values())


def laptop_syns(run_dir):
    """ISN -> (device, laptop-side 5-tuple, laptop-side SYN fingerprint) from laptops/*.syn.pcap."""
    out = {}
    for f in sorted(glob.glob(os.path.join(run_dir, "laptops", "*.syn.pcap"))):
        dev = os.path.basename(f)[:-len(".syn.pcap")]
        for p in packets(f):
            if p["proto"] == 6 and "seq" in p and p["flags"] & 0x12 == 0x02:
                out.setdefault((p["seq"], p["dst"], p["dport"]), {
                    "device": dev, "src": p["src"], "sport": p["sport"], "dst": p["dst"], "dport": p["dport"],
                    "ts": p["ts"], "fp": syn_fp(p)})
    return out


def linux_expected(dev, kernel_mss):
    """Expected SYN of a Linux stack with this device's sysctls, given the MSS the kernel picks."""
    sc = dev["sysctl"]
    ts_on = sc["net.ipv4.tcp_timestamps"] != "0"
    sack = sc["net.ipv4.tcp_sack"] != "0"
    ws_on = sc["net.ipv4.tcp_window_scaling"] != "0"
    rmem_max = int(sc["net.ipv4.tcp_rmem"].split()[2])
    space = max(rmem_max, int(sc["net.core.rmem_max"]))
    # tcp_select_initial_window(): rcv_wscale = clamp(ilog2(space) - 15, 0, 14)
    ws = max(0, min(14, int(math.log2(space)) - 15)) if ws_on else None
    # tcp_options_write() order: MSS, then SACK_PERM+TS / TS / SACK_PERM, then WS
    lay = ["mss"]
    if ts_on and sack:
        lay += ["sok", "ts"]
    elif ts_on:
        lay += ["nop", "nop", "ts"]
    elif sack:
        lay += ["nop", "nop", "sok"]
    if ws_on:
        lay += ["nop", "ws"]
    # SYN window: initial receive space rounded down to a multiple of the MSS,
    # never above 65535 in a SYN (tcp_rmem[1] 131072 gives more than that)
    win = (65535 // kernel_mss) * kernel_mss
    return {"initial_ttl": int(sc["net.ipv4.ip_default_ttl"]), "window": win, "wscale": ws,
            "sack_perm": sack, "timestamps": ts_on, "options": ",".join(lay)}


def fit_rate(samples):
    """Least-squares slope of TSval (wrapped) vs capture time in Hz, and max residual ms."""
    pts = [(t, v) for t, _, v in samples if v is not None]
    if len(pts) < 10 or pts[-1][0] - pts[0][0] < 10:
        return None
    t0, v0 = pts[0]
    xs = [t - t0 for t, _ in pts]
    ys = [((v - v0) & 0xFFFFFFFF) for _, v in pts]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    k = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    b = my - k * mx
    res = max(abs(y - (k * x + b)) for x, y in zip(xs, ys))
    return {"hz": round(k, 3), "samples": n, "span_s": round(xs[-1], 1), "max_residual_ticks": round(res, 2)}


def ipid_behaviour(samples):
    """IP-ID pattern of one direction of a connection. Linux gives each
    connected TCP socket its own counter (random start, +1 per packet); the
    ACK a TIME_WAIT socket sends has IP-ID 0, so zeros are left out."""
    ids = [i for _, i, _ in samples]
    nz = [i for i in ids if i != 0]
    if len(nz) < 3:
        return {"first": ids[0] if ids else None, "packets": len(ids), "pattern": "too few packets"}
    steps = [(b - a) & 0xFFFF for a, b in zip(nz, nz[1:])]
    inc1 = sum(1 for s in steps if s == 1) / len(steps)
    pat = ("per-connection counter (+1 per packet)" if inc1 > 0.95 else
           "small increments" if max(steps) < 64 else "random/mixed")
    return {"first": ids[0], "packets": len(ids), "zero_ids": len(ids) - len(nz), "frac_plus1": round(inc1, 3),
            "pattern": pat}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--duration", type=float, default=0)
    ap.add_argument("--status", default="ok")
    ap.add_argument("--note", default="")
    ap.add_argument("--started", type=float, default=0)
    ap.add_argument("--ended", type=float, default=0)
    ap.add_argument("--topology", required=True)
    a = ap.parse_args()
    rd = a.run_dir
    topo = json.loads(a.topology)
    entry_ip = topo["entry"]["address"]
    corp_gw = topo["entry"]["corp_vpn_gw"]
    vpn_ip = topo["vpn"]["public_ip"]
    cvpn_mtu = topo["vpn"]["tun_mtu"]
    corp_mtu = topo["entry"]["corp_tun_mtu"]
    home_pub = {"homea": topo["homea"]["public_ip"], "homeb": topo["homeb"]["public_ip"]}

    devices = collections.OrderedDict()
    with open(os.path.join(rd, "laptops.jsonl")) as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                devices[d["name"]] = d
    for d in devices.values():
        d["public_ip"] = vpn_ip if d["consumer_vpn"] else home_pub[d["home"]]
        d["route_mss"] = d["advmss"] or d["eth0_mtu"] - 40

    lsyn = laptop_syns(rd)
    captures = [("entry.pcap", "eth0"), ("entry_tun.pcap", "corp0")]
    flows, unexpected, checks = [], [], []
    conns_by_dev = collections.defaultdict(list)

    def check(name, ok, detail=""):
        checks.append({"check": name, "ok": bool(ok), "detail": detail})

    matched_isn = set()
    for cap, ifc in captures:
        path = os.path.join(rd, cap)
        if not os.path.exists(path):
            continue
        conns, other = entry_connections(path)
        for o in other:
            o["capture"] = cap
            o["first_ts"] = round(o["first_ts"], 6)
            o["last_ts"] = round(o["last_ts"], 6)
            unexpected.append(o)
        for c in conns:
            src, sport, dst, dport = c["key"]
            ls = lsyn.get((c["isn"], dst, dport)) if c["syn"] else None
            ft = {"proto": "tcp", "src": src, "sport": sport, "dst": dst, "dport": dport}
            if not ls:
                unexpected.append(dict(ft, capture=cap, first_ts=round(c["first_ts"], 6),
                                       pkts=c["pkts"], note="no SYN seen" if not c["syn"] else "ISN matches no laptop SYN"))
                continue
            matched_isn.add((c["isn"], dst, dport))
            dev = devices[ls["device"]]
            if cap == "entry_tun.pcap":
                path_ = ["consumer_vpn", "corp_vpn"] if dev["consumer_vpn"] else ["corp_vpn"]
            else:
                path_ = ["consumer_vpn"] if dev["consumer_vpn"] else []
            if dport == 1194:
                app, role = "openvpn", "corp_vpn_outer"
            elif dport == 22:
                app, role = "ssh", "ssh_session"
            elif dst == corp_gw:
                app, role = "https", "intranet"
            else:
                app, role = "https", "portal"
            # expected SYN as the entry point sees it
            if "corp_vpn" in path_:          # inner flow, corporate tunnel: kernel MSS from corp0 (tun-mtu), OpenVPN clamps
                kmss = corp_mtu - 40
                exp_mss = min(kmss, ovpn_mssfix_mss("tcp"))
                hops = 0                     # captured as it leaves the concentrator's tun, before forwarding
            elif "consumer_vpn" in path_:    # routed into cvpn0 (tun-mtu), consumer OpenVPN mssfix (udp)
                kmss = cvpn_mtu - 40
                exp_mss = min(kmss, ovpn_mssfix_mss("udp"))
                hops = 2                     # vpn exit + inet
            else:
                kmss = dev["route_mss"]
                exp_mss = kmss
                hops = 2                     # home router + inet
            exp = linux_expected(dev, kmss)
            exp.update(mss=exp_mss, ttl=exp["initial_ttl"] - hops, hops=hops)
            obs = {k: v for k, v in c["syn"].items() if k != "ts"}
            mism = [k for k in ("ttl", "window", "mss", "wscale", "sack_perm", "timestamps", "options")
                    if obs.get(k) != exp.get(k)]
            fl = {
                "five_tuple": ft, "capture": cap, "device": ls["device"], "public_ip": src if cap == "entry.pcap" else None,
                "private_five_tuple": {"proto": "tcp", "src": ls["src"], "sport": ls["sport"], "dst": ls["dst"],
                                       "dport": ls["dport"]},
                "app": app, "role": role, "tunnel_path": path_, "isn": c["isn"],
                "syn_at_entry": obs, "syn_expected": exp, "syn_mismatch": mism,
                "syn_at_laptop": {k: v for k, v in ls["fp"].items() if k not in ("ip_id",)},
                "first_ts": round(c["first_ts"], 6), "last_ts": round(c["last_ts"], 6),
                "duration_s": round(c["last_ts"] - c["first_ts"], 3),
                "pkts": c["pkts"], "payload_bytes": c["bytes"], "fin": c["fin"], "rst": c["rst"],
            }
            flows.append(fl)
            conns_by_dev[ls["device"]].append((fl, c))

    # laptop SYNs that should have reached a capture but did not
    missing = [v for k, v in lsyn.items() if k not in matched_isn and v["dst"] in (entry_ip, corp_gw)]
    check("every laptop SYN toward the entry point is in a capture", not missing,
          "; ".join("%s %s:%s->%s:%s" % (m["device"], m["src"], m["sport"], m["dst"], m["dport"]) for m in missing))
    check("no unexpected flows", not unexpected, "%d unexpected" % len(unexpected))
    bad = [f for f in flows if f["syn_mismatch"]]
    check("every SYN at the entry point matches the expected fingerprint", not bad,
          "; ".join("%s %s:%s %s" % (f["device"], f["five_tuple"]["src"], f["five_tuple"]["sport"],
                                      ",".join("%s=%s(exp %s)" % (k, f["syn_at_entry"].get(k), f["syn_expected"].get(k))
                                               for k in f["syn_mismatch"])) for f in bad))
    for n, d in devices.items():
        outer = [f for f, _ in conns_by_dev[n] if f["capture"] == "entry.pcap"]
        check("device %s has flows at the entry point" % n, outer, "%d flows" % len(outer))
        apps = {f["role"] for f in outer}
        want = {"portal", "ssh_session"} | ({"corp_vpn_outer"} if d["corp_vpn"] else set())
        check("device %s: portal, ssh%s flows present" % (n, ", corporate VPN" if d["corp_vpn"] else ""),
              want <= apps, "roles %s" % sorted(apps))
        if d["corp_vpn"] and d["n_inner"]:
            inner = [f for f, _ in conns_by_dev[n] if f["capture"] == "entry_tun.pcap"]
            check("device %s: intranet flows inside the corporate VPN" % n, inner, "%d flows" % len(inner))

    # per public IP: true device count (configuration) and what the capture shows
    pub = collections.OrderedDict()
    for n, d in devices.items():
        e = pub.setdefault(d["public_ip"], {"site": "consumer VPN exit" if d["public_ip"] == vpn_ip else
                                            ("home A" if d["public_ip"] == home_pub["homea"] else "home B"),
                                            "nat": "nftables masquerade", "devices": [], "identities": []})
        e["devices"].append(n)
        if d["corp_vpn"]:
            e["identities"].append(d["identity"])
    for ip_, e in pub.items():
        e["true_device_count"] = len(e["devices"])
        seen = sorted({f["device"] for f in flows if f["public_ip"] == ip_})
        e["devices_seen_in_capture"] = seen
        e["flows"] = sum(1 for f in flows if f["public_ip"] == ip_)
        fps = sorted({"%s/%s/%s/%s/%s" % (f["syn_at_entry"]["ttl"], f["syn_at_entry"]["window"],
                                          f["syn_at_entry"]["mss"], f["syn_at_entry"]["wscale"],
                                          f["syn_at_entry"]["options"])
                      for f in flows if f["public_ip"] == ip_})
        e["distinct_syn_fingerprints"] = fps
        e["corp_vpn_identities"] = len(set(e["identities"]))
        check("public IP %s: all %d devices seen" % (ip_, e["true_device_count"]), seen == sorted(e["devices"]),
              "seen %s" % seen)
    for f in flows:
        if f["capture"] == "entry.pcap" and f["public_ip"] != devices[f["device"]]["public_ip"]:
            check("flow source is the device's public IP", False, "%s from %s" % (f["device"], f["public_ip"]))

    # evidence: what tells devices apart (per device, flows in time order)
    evidence = collections.OrderedDict()
    for n in devices:
        rows = []
        for f, c in sorted(conns_by_dev[n], key=lambda x: x[0]["first_ts"]):
            s = f["syn_at_entry"]
            off = None
            if s["tsval"] is not None:
                off = (s["tsval"] - int(round(c["syn"]["ts"] * 1000))) & 0xFFFFFFFF
            rows.append({"capture": f["capture"], "dport": f["five_tuple"]["dport"], "dst": f["five_tuple"]["dst"],
                         "public_sport": f["five_tuple"]["sport"], "private_sport": f["private_five_tuple"]["sport"],
                         "t": f["first_ts"], "ts_offset_ms": off, "ts_rate": fit_rate(c["c2s"]),
                         "ip_id": ipid_behaviour(c["c2s"])})
        offs = [r["ts_offset_ms"] for r in rows if r["ts_offset_ms"] is not None]
        rates = [r["ts_rate"]["hz"] for r in rows if r["ts_rate"]]
        by_dst = collections.defaultdict(list)
        for r in rows:
            if r["capture"] == "entry.pcap":
                by_dst[(r["dst"], r["dport"])].append(r["public_sport"])
        evidence[n] = {
            "flows": rows,
            "ts_offsets_distinct": len(set(o // 10 for o in offs)),
            "ts_offsets_total": len(offs),
            "ts_rates_hz": rates,
            "nat_kept_source_port": all(r["public_sport"] == r["private_sport"] for r in rows if r["capture"] == "entry.pcap"),
            "source_ports_by_destination": {"%s:%s" % k: v for k, v in by_dst.items()},
            "ip_id_first_values": [r["ip_id"]["first"] for r in rows],
            "ip_id_patterns": sorted({r["ip_id"]["pattern"] for r in rows}),
        }
    # source-port runs: consecutive portal connections (< 10 s apart) from one public IP
    same, cross = [], []
    for ip_ in {d["public_ip"] for d in devices.values()}:
        seq = sorted((f["first_ts"], f["five_tuple"]["sport"], f["device"]) for f in flows
                     if f["capture"] == "entry.pcap" and f["public_ip"] == ip_ and f["role"] == "portal")
        for (t1, p1, d1), (t2, p2, d2) in zip(seq, seq[1:]):
            if t2 - t1 < 10:
                (same if d1 == d2 else cross).append(0 < p2 - p1 <= 64)
    all_offs = [(n, r["ts_offset_ms"]) for n, e in evidence.items() for r in e["flows"] if r["ts_offset_ms"] is not None]
    summary = {
        "tcp_timestamp_offset": (
            "per connection: %d distinct offsets over %d connections with timestamps (offset = TSval - capture ms); "
            "connections of one laptop do not share an offset, so offsets neither link nor separate devices"
            % (len(set(o // 10 for _, o in all_offs)), len(all_offs))) if all_offs else "no timestamps",
        "tcp_timestamp_rate_hz": sorted({round(r) for e in evidence.values() for r in e["ts_rates_hz"]}),
        "tcp_timestamp_clock": "all namespaces share one kernel clock: same rate (1000 Hz) and same skew; skew "
                               "clustering cannot separate lab laptops (it would need VMs or rewritten TSvals)",
        "ip_id": "SYN IP-IDs: %s; within a connection: %s (a TIME_WAIT ACK carries IP-ID 0)" % (
            "random per connection" if len({v for e in evidence.values() for v in e["ip_id_first_values"]}) > 1 else "constant",
            ", ".join(sorted({p for e in evidence.values() for p in e["ip_id_patterns"]}))),
        "source_ports": "NAT kept the laptop's source port: %s; per laptop and destination, consecutive "
                        "connections a few seconds apart usually take nearby even ports, with occasional jumps "
                        "(Linux's perturbed ephemeral port choice, RFC 6056 algorithm 4, keyed per source "
                        "address), so short bursts form per-device port runs" % (
                            all(e["nat_kept_source_port"] for e in evidence.values())),
        "source_port_runs": {
            "same_device_consecutive_pairs": len(same), "same_device_step_1_to_64": sum(same),
            "different_device_consecutive_pairs": len(cross), "different_device_step_1_to_64": sum(cross),
            "note": "consecutive portal connections less than 10 s apart at one public IP; a step of 1..64 "
                    "means the next port continues the previous connection's run"},
        "syn_fingerprints_per_public_ip": {ip_: len(e["distinct_syn_fingerprints"]) for ip_, e in pub.items()},
        "identical_stacks": len({json.dumps(d["sysctl"], sort_keys=True) + str(d["route_mss"])
                                 for d in devices.values()}) == 1 and len(devices) > 1,
    }

    # tunnels
    tunnels = []
    for n, d in devices.items():
        if d["consumer_vpn"]:
            inner = [f for f in flows if f["device"] == n and f["capture"] == "entry.pcap"]
            tunnels.append({
                "kind": "openvpn", "role": "consumer_vpn", "device": n, "transport": "udp",
                "server": "%s:1194" % vpn_ip, "client_tun_ip": d["consumer_vpn_ip"], "tun_mtu": cvpn_mtu,
                "mssfix": "%d mtu (OpenVPN 2.6 default)" % OVPN_MSSFIX,
                "expected_inner_mss": min(cvpn_mtu - 40, ovpn_mssfix_mss("udp")),
                "expected_mtu_from_mss": min(cvpn_mtu - 40, ovpn_mssfix_mss("udp")) + 40,
                "observed_inner_mss": sorted({f["syn_at_entry"]["mss"] for f in inner}),
                "tunnel_kind_expected": "vpn",
                "sensor_sees": "the laptop's flows arrive from the VPN exit %s with SYN MSS %d (MTU %d); the UDP "
                               "tunnel itself (home A -> %s:1194) never crosses the entry point" % (
                                   vpn_ip, cvpn_mtu - 40, cvpn_mtu, vpn_ip),
            })
        if d["corp_vpn"]:
            outer = [f for f in flows if f["device"] == n and f["role"] == "corp_vpn_outer"]
            inner = [f for f in flows if f["device"] == n and f["capture"] == "entry_tun.pcap"]
            tunnels.append({
                "kind": "openvpn", "role": "corporate_vpn", "device": n, "identity": d["identity"], "transport": "tcp",
                "server": "%s:1194" % entry_ip, "client_tun_ip": d["corp_vpn_ip"], "tun_mtu": corp_mtu,
                "inside": "consumer_vpn" if d["consumer_vpn"] else None,
                "outer_flows": [f["five_tuple"] for f in outer],
                "expected_outer_syn_mss": (cvpn_mtu - 40) if d["consumer_vpn"] else d["route_mss"],
                "observed_outer_syn_mss": sorted({f["syn_at_entry"]["mss"] for f in outer}),
                "mssfix": "%d mtu (OpenVPN 2.6 default; tcp transport)" % OVPN_MSSFIX,
                "expected_inner_mss": min(corp_mtu - 40, ovpn_mssfix_mss("tcp")),
                "observed_inner_mss": sorted({f["syn_at_entry"]["mss"] for f in inner}),
                "tunnel_kind_expected": "vpn",
                "nested": bool(d["consumer_vpn"]),
                "sensor_sees": ("entry.pcap: the corporate OpenVPN TCP session comes from the consumer VPN exit %s and its "
                                "SYN carries MSS %d (the consumer tunnel's MTU %d), not the laptop's %d; entry_tun.pcap "
                                "(decrypted, at the concentrator): inner SYNs with MSS %d from OpenVPN's mssfix, the same "
                                "as without the consumer tunnel" % (vpn_ip, cvpn_mtu - 40, cvpn_mtu, d["route_mss"],
                                                                     min(corp_mtu - 40, ovpn_mssfix_mss("tcp"))))
                if d["consumer_vpn"] else
                ("entry.pcap: the OpenVPN TCP session from %s with the laptop's own SYN (MSS %d); entry_tun.pcap: inner "
                 "SYNs from %s with MSS %d (OpenVPN mssfix)" % (d["public_ip"], d["route_mss"], d["corp_vpn_ip"],
                                                               min(corp_mtu - 40, ovpn_mssfix_mss("tcp")))),
            })
    for t in tunnels:
        if t["role"] == "consumer_vpn":
            check("consumer VPN inner MSS %s as expected" % t["observed_inner_mss"],
                  t["observed_inner_mss"] == [t["expected_inner_mss"]])
        else:
            if t["observed_outer_syn_mss"]:
                check("corporate VPN (%s) outer SYN MSS %s as expected" % (t["device"], t["observed_outer_syn_mss"]),
                      t["observed_outer_syn_mss"] == [t["expected_outer_syn_mss"]])
            if t["observed_inner_mss"]:
                check("corporate VPN (%s) inner MSS %s as expected" % (t["device"], t["observed_inner_mss"]),
                      t["observed_inner_mss"] == [t["expected_inner_mss"]])

    # what a detector should conclude
    expected = {"device_count_by_public_ip": {ip_: e["true_device_count"] for ip_, e in pub.items()},
                "alerts": []}
    for ip_, e in pub.items():
        expected["alerts"].append({
            "public_ip": ip_, "alert": "many_devices_behind_one_ip (D10)", "fire": e["true_device_count"] >= 3,
            "why": "%d devices behind %s (%s); fire at >= 3, a single device must count as one" % (
                e["true_device_count"], ip_, e["site"])})
        if e["identities"]:
            expected["alerts"].append({
                "public_ip": ip_, "alert": "vpn_identities_from_one_ip (D9)", "fire": e["corp_vpn_identities"] >= 3,
                "why": "%d corporate VPN identities (%s) from %s; fire at >= 3" % (
                    e["corp_vpn_identities"], ",".join(e["identities"]), ip_)})
    for t in tunnels:
        if t["role"] == "consumer_vpn":
            expected["alerts"].append({"public_ip": vpn_ip, "alert": "tunnel (kind vpn/openvpn)", "fire": True,
                                       "why": "device %s behind an OpenVPN exit: SYN MSS %d -> MTU %d" % (
                                           t["device"], t["expected_inner_mss"], t["expected_mtu_from_mss"])})
        if t.get("nested"):
            expected["alerts"].append({"public_ip": vpn_ip, "alert": "nested_tunnel (D10)", "fire": True,
                                       "why": "corporate VPN session runs inside a consumer VPN: its outer SYN MSS %d "
                                              "< the laptop's %d" % (t["expected_outer_syn_mss"], devices[t["device"]]["route_mss"])})

    # per-device summary
    dev_out = collections.OrderedDict()
    for n, d in devices.items():
        fl = [f for f in flows if f["device"] == n]
        fps = collections.Counter()
        for f in fl:
            s = f["syn_at_entry"]
            fps["%s ttl=%s win=%s mss=%s ws=%s ts=%s opts=%s" % (f["capture"], s["ttl"], s["window"], s["mss"],
                                                                s["wscale"], "on" if s["timestamps"] else "off",
                                                                s["options"])] += 1
        dev_out[n] = {
            "namespace": d["namespace"], "home": d["home"], "private_ip": d["private_ip"], "public_ip": d["public_ip"],
            "profile": d["profile"], "identity": d["identity"], "corp_vpn": d["corp_vpn"],
            "corp_vpn_ip": d["corp_vpn_ip"] or None, "consumer_vpn": d["consumer_vpn"],
            "consumer_vpn_ip": d["consumer_vpn_ip"] or None, "start_offset_s": d["start_offset_s"],
            "stack": {"sysctl": d["sysctl"], "eth0_mtu": d["eth0_mtu"], "route_advmss": d["advmss"],
                      "route_mss": d["route_mss"]},
            "expected_direct_syn": dict(linux_expected(d, d["route_mss"]), mss=d["route_mss"]),
            "syn_fingerprints_at_entry": dict(fps),
            "flows": len(fl),
        }

    status = a.status
    failed = [c for c in checks if not c["ok"]]
    truth = {
        "scenario": a.scenario, "status": status, "checks_passed": not failed, "seed": a.seed,
        "duration_s": a.duration, "started_at": a.started, "ended_at": a.ended, "note": a.note,
        "capture": {"file": "entry.pcap", "namespace": topo["entry"]["namespace"], "iface": "eth0",
                    "address": entry_ip, "view": "company entry point (VPN concentrator, SSO portal, sshd): outer headers"},
        "inner_capture": {"file": "entry_tun.pcap", "iface": "corp0",
                          "view": "decrypted traffic inside the corporate OpenVPN at the concentrator (raw IP)"},
        "topology": topo,
        "public_ips": pub,
        "devices": dev_out,
        "tunnels": tunnels,
        "expected": expected,
        "distinguishing_evidence": {"summary": summary, "per_device": evidence},
        "flows": flows,
        "unexpected_flows": unexpected,
        "checks": checks,
    }
    with open(os.path.join(rd, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
    for c in checks:
        print("%s %s %s" % ("ok  " if c["ok"] else "FAIL", c["check"], c["detail"]))
    print("truth: %s: %s; %d flows, %d unexpected, checks %s" % (
        a.scenario, ", ".join("%s=%d" % (k, v) for k, v in expected["device_count_by_public_ip"].items()),
        len(flows), len(unexpected), "passed" if not failed else "FAILED (%d)" % len(failed)))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
