#!/usr/bin/env bash
# PuTTY's plink behind the ssh command line the lab's scenarios use, for
# RWLAB_SSH_CLIENT=tests/lab/helpers/ssh_plink.sh: the SSH client most Windows laptops carry
# (its own implementation of the transport, its own packet sizes and key exchange order).
# Takes: -F CONFIG (its IdentityFile is converted once to PuTTY's .ppk; the host key is pinned
# from host_ed25519.pub beside the config, as the lab writes it), -t/-tt, -N, -p PORT,
# -J USER@HOST (a jump: plink -nc through it), -o ProxyCommand=CMD (%h %p filled), then
# USER@HOST [COMMAND...]. Anything else is an error: the scenario must not run
# with options silently dropped.
set -euo pipefail
die() { echo "ssh_plink: $*" >&2; exit 255; }
command -v plink >/dev/null || die "plink missing: apt-get install putty-tools"

config="" port=22 jump="" proxy="" opts=()
while (($#)); do
    case "$1" in
        -V) plink -V 2>&1 | head -n 1 >&2; exit 0 ;;
        -F) config="$2"; shift 2 ;;
        -t|-tt) opts+=(-t); shift ;;
        -N) opts+=(-N); shift ;;
        -p) port="$2"; shift 2 ;;
        -J) jump="$2"; shift 2 ;;
        # plink 0.78 cannot listen in the lab's namespaces: with IPv6 off its forwarding
        # listener fails (EADDRNOTAVAIL), -4 or not, so ssh_tunnel and ssh_local_forward fail.
        -L|-D) die "$1: plink's listener fails where IPv6 is off (the lab's namespaces)" ;;
        -o) case "$2" in
                ProxyCommand=*) proxy="${2#ProxyCommand=}" ;;
                *) die "unsupported option -o $2" ;;
            esac
            shift 2 ;;
        -*) die "unsupported option $1" ;;
        *) break ;;
    esac
done
(($#)) || die "no destination"
dest="$1"; shift
host="${dest#*@}"

common=(-ssh -batch -noagent -noshare -no-antispoof)
if [[ -n $config ]]; then
    openssh_key="$(awk '$1 == "IdentityFile" {print $2; exit}' "$config")"
    if [[ -n $openssh_key ]]; then
        key="$openssh_key.ppk"
        [[ -s $key ]] || puttygen "$openssh_key" -O private -o "$key" >/dev/null 2>&1 ||
            die "cannot convert $openssh_key"
        common+=(-i "$key")
    fi
    hostkey_pub="$(dirname "$config")/host_ed25519.pub"
    [[ -s $hostkey_pub ]] || die "no $hostkey_pub to pin the host key (plink -batch asks otherwise)"
    common+=(-hostkey "$(ssh-keygen -lf "$hostkey_pub" -E sha256 | awk '{print $2}')")
fi
if [[ -n $jump ]]; then
    proxy="plink ${common[*]} -nc $host:$port $jump"
elif [[ -n $proxy ]]; then
    proxy="${proxy//%h/$host}"
    proxy="${proxy//%p/$port}"
fi
exec plink "${common[@]}" "${opts[@]}" -P "$port" ${proxy:+-proxycmd "$proxy"} "$dest" "$@"
