#!/usr/bin/env bash
# Dropbear's dbclient behind the ssh command line the lab's scenarios use, for
# RWLAB_SSH_CLIENT=tests/lab/helpers/ssh_dropbear.sh: another SSH client implementation (its own
# key exchange order and packet sizes; it sends its KEXINIT without waiting for the server's).
# Takes: -F CONFIG (its IdentityFile is converted once to dropbear's format), -t/-tt, -N,
# -p PORT, -J USER@HOST (a jump: dbclient -B through it), -o ProxyCommand=CMD (%h %p filled),
# -L SPEC, then USER@HOST [COMMAND...]. Anything else is an error (helpers/ssh_args.sh).
set -euo pipefail
die() { echo "ssh_dropbear: $*" >&2; exit 255; }
version() { echo "Dropbear dbclient (ssh_dropbear.sh)" >&2; }
command -v dbclient >/dev/null || die "dbclient missing: apt-get install dropbear-bin"
source "$(dirname "$0")/ssh_args.sh"

SSH_ARGS_LOCAL_FORWARD=1 ssh_args_parse "$@"
convert() { dropbearconvert openssh dropbear "$1" "$2"; }
key="$(ssh_args_key dropbear convert)"
common=(-y -y -q ${key:+-i "$key"})
[[ -z $jump ]] || proxy="dbclient ${common[*]} -B $host:$port $jump"
exec dbclient "${common[@]}" "${opts[@]}" -p "$port" ${proxy:+-J "$proxy"} "$dest" "${args[@]}"
