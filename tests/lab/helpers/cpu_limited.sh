#!/usr/bin/env bash
# cpu_limited.sh PCT COMMAND...: runs COMMAND with PCT % of one CPU (a cgroup's CPU quota), as a
# slow or busy laptop runs its client: RWLAB_CLIENT_CPU_PCT in the lab's TLS scenarios.
# `ip netns exec` gives each command its own /sys, without the cgroup mounts, so the cpu
# hierarchy (cgroup v2, or v1's cpu controller) is mounted in this command's own mount
# namespace; the group rwlab-cpu<PCT> it makes stays for the next command. The quota is
# granted every 10 ms, so the client runs slower throughout rather than stalling for most of
# a longer period (100 ms periods at 25 % held answers up to 75 ms whatever their work).
set -euo pipefail
die() { echo "cpu_limited: $*" >&2; exit 2; }
(($# >= 2)) || die "usage: cpu_limited.sh PCT COMMAND..."
pct="$1"; shift
[[ $pct =~ ^[0-9]+$ ]] && ((pct >= 1 && pct <= 100)) || die "PCT must be 1..100, not $pct"

mnt="$(mktemp -d /tmp/rwlab-cgroup.XXXXXX)"
# Mount, join and exec in a private mount namespace, so nothing stays mounted.
exec unshare --mount --propagation private bash -c '
    set -euo pipefail
    mnt="$1" pct="$2"; shift 2
    if mount -t cgroup2 none "$mnt" 2>/dev/null && [[ -f $mnt/cgroup.controllers ]] &&
       grep -qw cpu "$mnt/cgroup.controllers"; then
        grep -qw cpu "$mnt/cgroup.subtree_control" || echo +cpu >"$mnt/cgroup.subtree_control"
        mkdir -p "$mnt/rwlab-cpu$pct"
        echo "$((pct * 100)) 10000" >"$mnt/rwlab-cpu$pct/cpu.max"
    else
        umount "$mnt" 2>/dev/null || true
        mount -t cgroup -o cpu none "$mnt" || { echo "cpu_limited: no cpu cgroup controller" >&2; exit 2; }
        mkdir -p "$mnt/rwlab-cpu$pct"
        echo "$((pct * 100))" >"$mnt/rwlab-cpu$pct/cpu.cfs_quota_us"
        echo 10000 >"$mnt/rwlab-cpu$pct/cpu.cfs_period_us"
    fi
    echo $$ >"$mnt/rwlab-cpu$pct/cgroup.procs"
    umount "$mnt"; rmdir "$mnt"
    exec "$@"
' cpu_limited "$mnt" "$pct" "$@"
