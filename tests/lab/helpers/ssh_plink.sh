#!/usr/bin/env bash
# PuTTY's plink behind the ssh command line the lab's scenarios use, for
# RWLAB_SSH_CLIENT=tests/lab/helpers/ssh_plink.sh: the SSH client most Windows laptops carry
# (its own implementation of the transport, its own packet sizes and key exchange order).
# Takes: -F CONFIG (its IdentityFile is converted once to PuTTY's .ppk; the host key is pinned
# from host_ed25519.pub beside the config, as the lab writes it), -t/-tt, -N, -p PORT,
# -J USER@HOST (a jump: plink -nc through it), -o ProxyCommand=CMD (%h %p filled), then
# USER@HOST [COMMAND...]. Anything else is an error (helpers/ssh_args.sh). No -L or -D:
# plink 0.78's forwarding listener fails where IPv6 is off, as in the lab's namespaces
# (EADDRNOTAVAIL, -4 or not), so ssh_tunnel and ssh_local_forward fail with it.
set -euo pipefail
die() { echo "ssh_plink: $*" >&2; exit 255; }
version() { plink -V 2>&1 | head -n 1 >&2; }
command -v plink >/dev/null || die "plink missing: apt-get install putty-tools"
source "$(dirname "$0")/ssh_args.sh"

ssh_args_parse "$@"
convert() { puttygen "$1" -O private -o "$2"; }
key="$(ssh_args_key ppk convert)"
common=(-ssh -batch -noagent -noshare -no-antispoof ${key:+-i "$key"})
if [[ -n $config ]]; then
    hostkey_pub="$(dirname "$config")/host_ed25519.pub"
    [[ -s $hostkey_pub ]] || die "no $hostkey_pub to pin the host key (plink -batch asks otherwise)"
    common+=(-hostkey "$(ssh-keygen -lf "$hostkey_pub" -E sha256 | awk '{print $2}')")
fi
[[ -z $jump ]] || proxy="plink ${common[*]} -nc $host:$port $jump"
exec plink "${common[@]}" "${opts[@]}" -P "$port" ${proxy:+-proxycmd "$proxy"} "$dest" "${args[@]}"
