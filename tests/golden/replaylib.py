"""Shared by the context replays (work_hours_replay.py, geo_replay.py): run relaywatch on a
capture with a config written into a work directory, and report the outcome."""
import json
import os
import subprocess


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
