#!/usr/bin/env bash
# Builds OpenSSH newer than Debian 12's 9.2 from Debian's own source archive, for lab runs
# with keystroke timing obfuscation (ObscureKeystrokeTiming, on by default since 9.5):
#   sudo tests/lab/build_openssh.sh [PREFIX]      (default /opt/rwlab-openssh)
#   RWLAB_SSH_CLIENT=PREFIX/bin/ssh [RWLAB_SSHD=PREFIX/sbin/sshd] \
#       sudo tests/lab/lab.sh run direct_ssh_interactive ...
# The client quantises keys to its ~20 ms clock; it sends chaff between them only when the
# server is >= 9.5 too (SSH2_MSG_PING), hence RWLAB_SSHD. The source is the one Debian 13
# (trixie) ships; its checksum is taken from the suite's Sources index. About 4 minutes on 2
# cores. Prints the installed client's path.
set -euo pipefail

PREFIX="${1:-/opt/rwlab-openssh}"
MIRROR="${RWLAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="${RWLAB_OPENSSH_SUITE:-trixie}"

die() { echo "build_openssh: $*" >&2; exit 1; }

if [[ -x $PREFIX/bin/ssh && -x $PREFIX/sbin/sshd ]]; then
    echo "$PREFIX/bin/ssh"
    exit 0
fi
missing=()
for p in curl xz-utils build-essential libssl-dev zlib1g-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
curl -fsS -m 120 -o "$work/Sources.xz" "$MIRROR/dists/$SUITE/main/source/Sources.xz" ||
    die "cannot fetch the $SUITE Sources index from $MIRROR"
# The openssh paragraph: its directory and the orig tarball's sha256.
read -r dir sha file < <(xz -dc "$work/Sources.xz" | awk '
    /^Package: / { p = ($2 == "openssh") }
    p && /^Directory: / { dir = $2 }
    p && /^Checksums-Sha256:/ { c = 1; next }
    p && c && /^ / { if ($3 ~ /\.orig\.tar\.gz$/) { sha = $1; file = $3 } next }
    p && c { c = 0 }
    /^$/ { if (p && file != "") { print dir, sha, file; exit } p = 0 }') ||
    die "no openssh source in the $SUITE Sources index"
[[ -n ${file:-} ]] || die "no openssh orig tarball in the $SUITE Sources index"
curl -fsS -m 300 -o "$work/$file" "$MIRROR/$dir/$file" || die "cannot fetch $MIRROR/$dir/$file"
echo "$sha  $work/$file" | sha256sum -c --quiet - || die "$file does not match the Sources index"

tar -C "$work" -xzf "$work/$file"
src="$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'openssh-*' | head -n 1)"
[[ -n $src ]] || die "$file holds no openssh-* directory"
# /run/sshd: the privilege separation directory the lab (and Debian's sshd) already use.
(cd "$src" && ./configure --prefix="$PREFIX" --with-privsep-path=/run/sshd >"$work/configure.log" 2>&1 &&
    make -j"$(nproc)" >"$work/make.log" 2>&1 && make install-nokeys >"$work/install.log" 2>&1) ||
    { tail -n 20 "$work"/*.log >&2; die "the build failed"; }
"$PREFIX/bin/ssh" -V >&2
echo "$PREFIX/bin/ssh"
