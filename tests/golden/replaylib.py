"""Shared by the replays of recorded traffic (work_hours_replay.py, geo_replay.py,
typing_replay.py, tests/lab/typing_report.py): lay recorded captures down at chosen times,
run relaywatch on them with a config written into a work directory, report the outcome."""
import datetime
import json
import os
import struct
import subprocess


def timestamp_us(text):
    """Microseconds since the epoch of an event's `timestamp` (2026-11-30T13:26:27.239908Z)."""
    t = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return int(t.replace(tzinfo=datetime.timezone.utc).timestamp()) * 1_000_000 + t.microsecond


def read_pcap(path):
    """(header, [(timestamp_us, frame, original_length)]) of a classic microsecond pcap."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24 or struct.unpack("<I", data[:4])[0] != 0xA1B2C3D4:
        raise SystemExit(f"{path}: not a little-endian microsecond pcap")
    header, packets, i = data[:24], [], 24
    while i + 16 <= len(data):
        sec, usec, incl, orig = struct.unpack("<IIII", data[i:i + 16])
        packets.append((sec * 1_000_000 + usec, data[i + 16:i + 16 + incl], orig))
        i += 16 + incl
    return header, packets


def readdress(frame, old, new):
    """The Ethernet/IPv4 frame with the 4-byte address `old` replaced by `new` as its source
    and destination; checksums are not recomputed (relaywatch does not check them)."""
    f = bytearray(frame)
    for off in (26, 30):  # IPv4 source and destination behind 14 bytes of Ethernet
        if f[off:off + 4] == old:
            f[off:off + 4] = new
    return bytes(f)


def lay_down(path, pcaps, start_us, step_us):
    """Writes the captures `pcaps` into `path` one after another, the i-th starting at
    start_us + i * step_us (each keeps its own timing); returns those start times."""
    header, copies = None, []
    for i, pcap in enumerate(pcaps):
        header, packets = read_pcap(pcap)
        copies.append((packets, start_us + i * step_us))
    write_copies(path, header, copies)
    return [start for _, start in copies]


def write_copies(path, header, copies):
    """Writes each (packets, start_us) in turn, its first packet moved to start_us and the
    rest keeping their own timing; starts must increase and copies must not overlap."""
    with open(path, "wb") as f:
        f.write(header)
        for packets, start in copies:
            first = packets[0][0]
            for ts, frame, orig in packets:
                t = start + ts - first
                f.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), orig))
                f.write(frame)


def replay(binary, work, config_text, pcap):
    """Writes `config_text` as work/relaywatch.yaml (its relative paths are relative to
    `work`), replays `pcap` and returns the events written."""
    config = os.path.join(work, "relaywatch.yaml")
    with open(config, "w") as f:
        f.write(config_text)
    proc = subprocess.run([binary, "-c", config, "-r", pcap, "--jsonl", "-"],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"relaywatch exited {proc.returncode}: {proc.stderr}")
    return [json.loads(l) for l in proc.stdout.splitlines() if l.strip()]


def finish(problems):
    """Prints the problems and PASS or FAILED; the exit status."""
    for p in problems:
        print(f"FAIL: {p}")
    print("PASS" if not problems else "FAILED")
    return 1 if problems else 0
