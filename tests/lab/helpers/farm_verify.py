#!/usr/bin/env python3
"""Cross-check a farm.sh run with tshark (independent of farm_truth.py's parser).

For each run directory:
  * the set of TCP connections tshark finds (client SYNs) in entry.pcap and
    entry_tun.pcap equals the truth's flows, and nothing but TCP crosses the
    entry point (no UDP/ICMP);
  * every truth flow's SYN as decoded by tshark (TTL, window, MSS, window
    scale, option layout, timestamps on/off) equals the truth's expected SYN;
  * tshark recognises the application: TLS ClientHello (https), SSH banner
    (ssh), OpenVPN (tcp 1194);
  * devices per public IP in the truth agree with the flows' sources;
  * tunnels: the MSS tshark sees equals the expected tunnel MSS.
It prints a per-device SYN fingerprint table and, per device, the TCP
timestamp offsets (TSval - capture ms) and SYN IP-IDs of its connections:
the evidence of what separates identical laptops.

usage: farm_verify.py RUN_DIR [RUN_DIR...]     exit 1 on any failure
"""
import collections
import json
import os
import subprocess
import sys

KIND = {"0": "eol", "1": "nop", "2": "mss", "3": "ws", "4": "sok", "5": "sack", "8": "ts"}
FIELDS = ["frame.time_epoch", "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "ip.ttl", "ip.id",
          "tcp.window_size_value", "tcp.options.mss_val", "tcp.options.wscale.shift", "tcp.option_kind",
          "tcp.options.timestamp.tsval", "tcp.seq_raw"]


def tshark(pcap, yfilter, fields):
    cmd = ["tshark", "-n", "-r", pcap, "-Y", yfilter, "-T", "fields", "-E", "separator=\t",
           "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError("tshark failed on %s: %s" % (pcap, out.stderr.strip()[:300]))
    return [line.split("\t") for line in out.stdout.splitlines() if line.strip()]


def syns(pcap):
    res = {}
    for r in tshark(pcap, "tcp.flags.syn == 1 && tcp.flags.ack == 0", FIELDS):
        r += [""] * (len(FIELDS) - len(r))
        key = (r[1], int(r[2]), r[3], int(r[4]))
        if key in res:
            continue  # retransmitted SYN
        res[key] = {"t": float(r[0]), "ttl": int(r[5]), "ip_id": int(r[6], 16) if r[6].startswith("0x") else int(r[6] or 0),
                    "window": int(r[7]), "mss": int(r[8]) if r[8] else None, "wscale": int(r[9]) if r[9] else None,
                    "options": ",".join(KIND.get(k, "opt" + k) for k in r[10].split(",") if k),
                    "timestamps": bool(r[11]), "tsval": int(r[11]) if r[11] else None, "isn": int(r[12])}
    return res


def app_flows(pcap, yfilter):
    out = set()
    for r in tshark(pcap, yfilter, ["ip.src", "tcp.srcport", "ip.dst", "tcp.dstport"]):
        out.add((r[0], int(r[1]), r[2], int(r[3])))
        out.add((r[2], int(r[3]), r[0], int(r[1])))
    return out


def verify(rd):
    with open(os.path.join(rd, "truth.json")) as f:
        truth = json.load(f)
    ok_n = bad_n = 0

    def res(ok, msg):
        nonlocal ok_n, bad_n
        print("  %s %s" % ("ok  " if ok else "FAIL", msg))
        if ok:
            ok_n += 1
        else:
            bad_n += 1

    print("%s: scenario %s, status %s" % (rd, truth["scenario"], truth["status"]))
    res(truth["status"] == "ok", "run status %s" % truth["status"])
    tflows = collections.defaultdict(dict)
    for fl in truth["flows"]:
        ft = fl["five_tuple"]
        tflows[fl["capture"]][(ft["src"], ft["sport"], ft["dst"], ft["dport"])] = fl
    seen = {}
    for cap in ("entry.pcap", "entry_tun.pcap"):
        path = os.path.join(rd, cap)
        if not os.path.exists(path):
            res(cap == "entry_tun.pcap", "%s present" % cap)
            continue
        s = syns(path)
        seen[cap] = s
        want = set(tflows[cap])
        res(set(s) == want, "%s: tshark finds %d connections, truth has %d%s" % (
            cap, len(s), len(want), "" if set(s) == want else
            " (only in pcap: %s; only in truth: %s)" % (sorted(set(s) - want)[:3], sorted(want - set(s))[:3])))
        non_tcp = tshark(path, "ip && !tcp", ["ip.src", "ip.dst", "ip.proto"])
        res(not non_tcp, "%s: no non-TCP IPv4 traffic (%d packets)" % (cap, len(non_tcp)))
        tls = app_flows(path, "tls.handshake.type == 1")
        ssh = app_flows(path, "ssh.protocol")
        ovpn = app_flows(path, "openvpn")
        miss = []
        bad = []
        for k, fl in tflows[cap].items():
            t = s.get(k)
            if not t:
                miss.append(k)
                continue
            e = fl["syn_expected"]
            diff = [(f, t[f], e[f]) for f in ("ttl", "window", "mss", "wscale", "options", "timestamps") if t[f] != e[f]]
            if t["isn"] != fl["isn"]:
                diff.append(("isn", t["isn"], fl["isn"]))
            if diff:
                bad.append((k, fl["device"], diff))
            appset = {"https": tls, "ssh": ssh, "openvpn": ovpn}[fl["app"]]
            if k not in appset:
                bad.append((k, fl["device"], [("app", "not recognised", fl["app"])]))
        res(not miss and not bad, "%s: every truth flow's SYN (TTL, window, MSS, wscale, options, TS) and app as expected%s"
            % (cap, "" if not (miss or bad) else " missing %s bad %s" % (miss[:3], bad[:3])))

    # per public IP: device counts
    for ip_, e in truth["public_ips"].items():
        devs = sorted({fl["device"] for fl in truth["flows"] if fl["capture"] == "entry.pcap"
                       and fl["five_tuple"]["src"] == ip_})
        res(devs == sorted(e["devices"]) and e["true_device_count"] == len(e["devices"]),
            "public IP %s: %d device(s) %s, flows from it belong to %s" % (ip_, e["true_device_count"], e["devices"], devs))

    # tunnels: MSS as tshark sees it
    for t in truth["tunnels"]:
        dev = t["device"]
        if t["role"] == "consumer_vpn":
            ms = sorted({seen["entry.pcap"][k]["mss"] for k, fl in tflows["entry.pcap"].items() if fl["device"] == dev})
            res(ms == [t["expected_inner_mss"]], "consumer VPN (%s): SYN MSS at entry %s, expected %s (MTU %s)" % (
                dev, ms, t["expected_inner_mss"], t["expected_mtu_from_mss"]))
        else:
            ms = sorted({seen["entry.pcap"][k]["mss"] for k, fl in tflows["entry.pcap"].items()
                         if fl["device"] == dev and fl["role"] == "corp_vpn_outer"})
            res(ms == [t["expected_outer_syn_mss"]], "corporate VPN (%s%s): outer SYN MSS %s, expected %s" % (
                dev, ", inside the consumer VPN" if t["nested"] else "", ms, t["expected_outer_syn_mss"]))
            if "entry_tun.pcap" in seen and any(fl["device"] == dev for fl in tflows["entry_tun.pcap"].values()):
                ms = sorted({seen["entry_tun.pcap"][k]["mss"] for k, fl in tflows["entry_tun.pcap"].items()
                             if fl["device"] == dev})
                res(ms == [t["expected_inner_mss"]], "corporate VPN (%s): inner SYN MSS %s, expected %s" % (
                    dev, ms, t["expected_inner_mss"]))

    # fingerprint table and identical-laptop evidence, from tshark's fields
    print("  per device, SYNs as tshark sees them (capture: TTL/window/MSS/wscale/TS/options x count):")
    for dev in truth["devices"]:
        fps = collections.Counter()
        offs, ids, ports = [], [], []
        for cap, fl_by in tflows.items():
            for k, fl in sorted(fl_by.items(), key=lambda x: x[1]["first_ts"]):
                if fl["device"] != dev or k not in seen.get(cap, {}):
                    continue
                t = seen[cap][k]
                fps["%s: %d/%d/%s/%s/%s/%s" % (cap.split(".")[0], t["ttl"], t["window"], t["mss"], t["wscale"],
                                                "ts" if t["timestamps"] else "nots", t["options"])] += 1
                if cap == "entry.pcap":
                    if t["tsval"] is not None:
                        offs.append((t["tsval"] - int(round(t["t"] * 1000))) & 0xFFFFFFFF)
                    ids.append(t["ip_id"])
                    ports.append("%d>%d" % (k[1], k[3]))
        d = truth["devices"][dev]
        print("    %s (%s, %s, public %s):" % (dev, d["profile"], d["private_ip"], d["public_ip"]))
        for fp, n in fps.items():
            print("      %s x%d" % (fp, n))
        if offs:
            print("      TS offsets (TSval - capture ms) of its %d connections: %s" % (
                len(offs), " ".join(str(o) for o in offs[:8]) + (" ..." if len(offs) > 8 else "")))
        print("      SYN IP-IDs: %s" % " ".join(str(i) for i in ids[:8]))
        print("      source ports (sport>dport, time order): %s" % " ".join(ports[:12]))
    return ok_n, bad_n


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    tot_ok = tot_bad = 0
    for rd in sys.argv[1:]:
        try:
            o, b = verify(rd)
        except (OSError, RuntimeError, KeyError, ValueError) as e:
            print("%s: FAIL %s" % (rd, e))
            o, b = 0, 1
        tot_ok += o
        tot_bad += b
    print("%d passed, %d failed" % (tot_ok, tot_bad))
    return 1 if tot_bad else 0


if __name__ == "__main__":
    sys.exit(main())
