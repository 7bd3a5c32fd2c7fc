#!/usr/bin/env python3
"""Interop check: relaywatch's JA4 against the JA4 reference outputs in ../shared/pcaps.

For every expected/ja4/<pcap>.ja4.json (FoxIO's reference output for that capture), replays
the capture with only `tls` events enabled and checks each expected ClientHello's JA4,
JA4_r, JA4_o and JA4_ro against the `tls` event of the same flow (5-tuple in either
direction, transport from the fingerprint's first letter) and the same position in the flow
(reference "JA4.N" = relaywatch client_hello_index N-1).

Known deviations: the reference output predates a JA4 specification fix. Such entries
must match the corrected value given below and are reported apart, not as failures.

Prints a per-file table, the total matched, and a closing "N passed, M failed" line (one
check per expected ClientHello). Exit 0 when nothing failed, 77 when the corpus is absent
(ctest reports a skip), 1 otherwise.
"""
import argparse
import collections
import glob
import json
import os
import subprocess
import sys
import tempfile

FORMS = ("JA4", "JA4_r", "JA4_o", "JA4_ro")
FIELD = {"JA4": "ja4", "JA4_r": "ja4_r", "JA4_o": "ja4_o", "JA4_ro": "ja4_ro"}

# (pcap, stream, N) -> (why, {reference value: corrected value}) applied to every form.
# JA4.md "ALPN Extension Value": when the first or last byte of the first ALPN value is not
# alphanumeric, JA4 uses the first and last characters of the value's hex form. The
# reference Python implementation prints "99" instead (FoxIO-LLC/ja4 issues #178 and #326;
# the maintainer confirmed the documented method is the correct one). The first ALPN value
# in this capture is 0xba 0xad, hence "bd".
KNOWN_DEVIATIONS = {
    ("ja4__tls-non-ascii-alpn.pcapng", 0, 1): (
        "ALPN 0xbaad: spec gives 'bd', reference implementation prints '99'",
        ("t13d151699_", "t13d1516bd_")),
}

CONFIG = """\
outputs:
  jsonl:
    events: [tls]
  prometheus:
    enabled: false
"""


def run_relaywatch(binary, pcap, workdir):
    out = os.path.join(workdir, "events.jsonl")
    config = os.path.join(workdir, "relaywatch.yaml")
    with open(config, "w", encoding="utf-8") as f:
        f.write(CONFIG)
    cmd = [binary, "-r", pcap, "--jsonl", out, "-c", config, "--workers", "1"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=600)
    events = []
    if os.path.exists(out):
        with open(out, encoding="utf-8") as f:
            events = [json.loads(line) for line in f if line.strip()]
        os.unlink(out)
    return proc.returncode, proc.stderr, events


def endpoint_key(a_ip, a_port, b_ip, b_port, proto):
    return (proto, frozenset([(a_ip, int(a_port)), (b_ip, int(b_port))]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relaywatch", required=True)
    parser.add_argument("--pcaps", default=os.environ.get("RELAYWATCH_SHARED_PCAPS"))
    parser.add_argument("-v", "--verbose", action="store_true", help="print every mismatch")
    args = parser.parse_args()
    if not args.pcaps:
        args.pcaps = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                  "shared", "pcaps")
    manifest = os.path.join(args.pcaps, "MANIFEST.tsv")
    expected_files = sorted(glob.glob(os.path.join(args.pcaps, "expected", "ja4", "*.ja4.json")))
    if not os.path.exists(manifest) or not expected_files:
        print(f"SKIP: JA4 reference outputs not present ({args.pcaps})")
        return 77
    with open(manifest, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        rows = [dict(zip(header, line.rstrip("\n").split("\t"))) for line in f if line.strip()]
    by_name = {os.path.basename(r["file"]): r["file"] for r in rows}

    passed = 0
    failures = []
    deviations = []
    table = []
    total_expected = 0
    with tempfile.TemporaryDirectory() as work:
        for path in expected_files:
            name = os.path.basename(path)[:-len(".ja4.json")]
            with open(path, encoding="utf-8") as f:
                expected = json.load(f)
            hellos = []  # (entry, N)
            for entry in expected:
                for key in entry:
                    if key.startswith("JA4."):
                        hellos.append((entry, int(key.split(".", 1)[1])))
            total_expected += len(hellos)
            if name not in by_name:
                failures.append(f"{name}: capture not in MANIFEST.tsv")
                table.append((name, len(hellos), 0, 0, len(hellos)))
                continue
            rc, stderr, events = run_relaywatch(args.relaywatch,
                                                os.path.join(args.pcaps, by_name[name]), work)
            if rc != 0:
                failures.append(f"{name}: relaywatch exited {rc}: {stderr.strip()[-300:]}")
                table.append((name, len(hellos), 0, 0, len(hellos)))
                continue
            # flow key -> client_hello_index -> [tls bodies, in output order]
            found = collections.defaultdict(lambda: collections.defaultdict(list))
            for e in events:
                if e.get("event_type") != "tls":
                    continue
                key = endpoint_key(e["src_ip"], e["src_port"], e["dest_ip"], e["dest_port"],
                                   e["proto"])
                found[key][e["tls"]["client_hello_index"]].append(e["tls"])
            used = collections.Counter()
            ok = dev = bad = 0
            for entry, n in hellos:
                want = {form: entry[f"{form}.{n}"] for form in FORMS}
                proto = "UDP" if want["JA4"][0] in "qd" else "TCP"
                key = endpoint_key(entry["src"], entry["srcport"], entry["dst"], entry["dstport"],
                                   proto)
                candidates = found.get(key, {}).get(n - 1, [])
                # The same 5-tuple can be reused by a later connection: take them in order.
                slot = (key, n)
                got = candidates[used[slot]] if used[slot] < len(candidates) else None
                used[slot] += 1
                where = (f"{name} stream {entry.get('stream')} "
                         f"{entry['src']}:{entry['srcport']} -> {entry['dst']}:{entry['dstport']} "
                         f"JA4.{n}")
                deviation = KNOWN_DEVIATIONS.get((name, entry.get("stream"), n))
                if deviation:
                    old, new = deviation[1]
                    want = {form: value.replace(old, new) for form, value in want.items()}
                if got is None:
                    bad += 1
                    failures.append(f"{where}: no tls event")
                    continue
                wrong = [form for form in FORMS if got.get(FIELD[form]) != want[form]]
                if wrong:
                    bad += 1
                    failures.append(f"{where}: {', '.join(wrong)} differ")
                    if args.verbose:
                        for form in wrong:
                            print(f"  {where} {form}\n    want {want[form]}\n"
                                  f"    got  {got.get(FIELD[form])}")
                elif deviation:
                    dev += 1
                    deviations.append(f"{where}: {deviation[0]}")
                else:
                    ok += 1
            passed += ok + dev
            table.append((name, len(hellos), ok, dev, bad))

    print("JA4 reference values (FoxIO) reproduced by relaywatch, per capture:")
    print(f"  {'capture':<52} {'hellos':>6} {'match':>6} {'dev':>4} {'fail':>5}")
    for name, total, ok, dev, bad in table:
        print(f"  {name:<52} {total:>6} {ok:>6} {dev:>4} {bad:>5}")
    matched = sum(t[2] for t in table)
    print(f"Total: {matched} of {total_expected} ClientHellos matched on all of "
          f"{', '.join(FORMS)}; {len(deviations)} known deviation(s)")
    for line in deviations:
        print("  deviation: " + line)
    for line in failures:
        print("FAIL: " + line)
    print(f"{passed} passed, {len(failures)} failed")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
