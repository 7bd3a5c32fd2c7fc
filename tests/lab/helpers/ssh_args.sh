# Sourced by the ssh client wrappers (ssh_dropbear.sh, ssh_plink.sh): parses the ssh command
# line the lab's scenarios use, so each wrapper only translates. Sets config (-F), port (-p,
# 22), jump (-J), proxy (-o ProxyCommand=, %h and %p filled), opts (-t/-tt as -t, -N, and -L
# SPEC where the caller sets SSH_ARGS_LOCAL_FORWARD=1), dest, host and args (the command).
# -V runs the caller's version(); anything else is die()d: a scenario must not run with
# options silently dropped.
ssh_args_parse() {
    config="" port=22 jump="" proxy="" opts=()
    while (($#)); do
        case "$1" in
            -V) version; exit 0 ;;
            -F) config="$2"; shift 2 ;;
            -t|-tt) opts+=(-t); shift ;;
            -N) opts+=(-N); shift ;;
            -p) port="$2"; shift 2 ;;
            -J) jump="$2"; shift 2 ;;
            -L) [[ ${SSH_ARGS_LOCAL_FORWARD:-0} == 1 ]] || die "unsupported option -L"
                opts+=(-L "$2"); shift 2 ;;
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
    args=("$@")
    if [[ -n $proxy ]]; then
        proxy="${proxy//%h/$host}"
        proxy="${proxy//%p/$port}"
    fi
}

# ssh_args_key SUFFIX CONVERT...: the config's IdentityFile converted once to KEY.SUFFIX by
# CONVERT IN OUT (the wrapper's own key format); prints its path, or nothing without one.
ssh_args_key() {
    local suffix="$1" openssh_key
    shift
    [[ -n $config ]] || return 0
    openssh_key="$(awk '$1 == "IdentityFile" {print $2; exit}' "$config")"
    [[ -n $openssh_key ]] || return 0
    [[ -s $openssh_key.$suffix ]] || "$@" "$openssh_key" "$openssh_key.$suffix" >/dev/null 2>&1 ||
        die "cannot convert $openssh_key"
    printf '%s\n' "$openssh_key.$suffix"
}
