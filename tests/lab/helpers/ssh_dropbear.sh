#!/usr/bin/env bash
# Dropbear's dbclient behind the ssh command line the lab's scenarios use, for
# RWLAB_SSH_CLIENT=tests/lab/helpers/ssh_dropbear.sh: another SSH client implementation (its own
# key exchange order and packet sizes; it sends its KEXINIT without waiting for the server's).
# Takes: -F CONFIG (its IdentityFile is converted once to dropbear's format), -t/-tt, -N,
# -p PORT, -J USER@HOST (a jump: dbclient -B through it), -o ProxyCommand=CMD (%h %p filled),
# -L SPEC, then USER@HOST [COMMAND...]. Anything else is an error: the scenario must not run
# with options silently dropped.
set -euo pipefail
die() { echo "ssh_dropbear: $*" >&2; exit 255; }
command -v dbclient >/dev/null || die "dbclient missing: apt-get install dropbear-bin"

config="" port=22 jump="" proxy="" opts=()
while (($#)); do
    case "$1" in
        -V) echo "Dropbear dbclient (ssh_dropbear.sh)" >&2; exit 0 ;;
        -F) config="$2"; shift 2 ;;
        -t|-tt) opts+=(-t); shift ;;
        -N) opts+=(-N); shift ;;
        -p) port="$2"; shift 2 ;;
        -J) jump="$2"; shift 2 ;;
        -L) opts+=(-L "$2"); shift 2 ;;
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

key=""
if [[ -n $config ]]; then
    openssh_key="$(awk '$1 == "IdentityFile" {print $2; exit}' "$config")"
    if [[ -n $openssh_key ]]; then
        key="$openssh_key.dropbear"
        [[ -s $key ]] || dropbearconvert openssh dropbear "$openssh_key" "$key" >/dev/null 2>&1 ||
            die "cannot convert $openssh_key"
    fi
fi
common=(-y -y -q ${key:+-i "$key"})
if [[ -n $jump ]]; then
    proxy="dbclient ${common[*]} -B $host:$port $jump"
elif [[ -n $proxy ]]; then
    proxy="${proxy//%h/$host}"
    proxy="${proxy//%p/$port}"
fi
exec dbclient "${common[@]}" "${opts[@]}" -p "$port" ${proxy:+-J "$proxy"} "$dest" "$@"
