#!/usr/bin/env bash
# relaywatch laptop-farm lab (issue 6): many laptops behind one home NAT,
# different and identical TCP/IP stacks, two homes, a consumer OpenVPN tunnel
# and a tunnel inside a tunnel. Real programs (curl, ssh, openvpn) in network
# namespaces; the sensor's view is a tcpdump on the company entry point.
# See README.md, section "Laptop-farm lab (farm.sh)".
# usage: farm.sh deps | up | down | list | status
#        farm.sh run SCENARIO|all [--seed N] [--duration S] [--out DIR]
#        farm.sh verify RUN_DIR...     (tshark cross-check of entry.pcap against truth.json)
set -euo pipefail

LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HELPERS="$LAB_DIR/helpers"
PFX="${RWFARM_PREFIX:-rwfarm-}"
STATE="${RWFARM_STATE:-${TMPDIR:-/tmp}/${PFX}state}"
PY="${RWFARM_PYTHON:-python3}"
DURATION="${RWFARM_DURATION_S:-120}"   # seconds of client traffic per scenario
INFRA=(entry inet homea homeb vpn)

# ---------------------------------------------------------------- addresses
ENTRY=198.18.50.10            # company entry point: sshd :22, SSO portal https :443, OpenVPN tcp :1194
INET_ENTRY=198.18.50.1
HOMEA_WAN=203.0.113.10        # home A public address (nft masquerade)
INET_HOMEA=203.0.113.9
HOMEA_GW=192.168.1.1          # home A LAN 192.168.1.0/24 (bridge br0)
HOMEB_WAN=203.0.113.20        # home B public address
INET_HOMEB=203.0.113.17
HOMEB_GW=192.168.0.1          # home B LAN 192.168.0.0/24
VPN_WAN=198.51.100.10         # consumer VPN exit (OpenVPN udp :1194, masquerade)
INET_VPN=198.51.100.9
CORP_NET=10.8.0.0             # corporate VPN pool (entry's tun corp0 = 10.8.0.1)
CORP_GW=10.8.0.1
CVPN_NET=10.66.0.0            # consumer VPN pool (vpn's tun cvpn0 = 10.66.0.1)
CVPN_TUN_MTU=1400             # consumer VPN tun-mtu, both ends -> inner MSS 1360
CORP_TUN_MTU=1500             # corporate VPN tun-mtu (OpenVPN default)
PORTAL_NAME=sso.corp.test
INTRANET_NAME=intranet.corp.test

log() { printf '[farm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
nsx() { local ns="$1"; shift; ip netns exec "$PFX$ns" "$@"; }
ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$PFX$1"; }
is_up() { ns_exists entry; }

# ---------------------------------------------------------------- deps
DEPS=(iproute2 iputils-ping ethtool tcpdump tshark openssh-server openssh-client curl openssl procps
      openvpn nftables)
cmd_deps() {
    export DEBIAN_FRONTEND=noninteractive
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections || true
    flock /tmp/apt.lock apt-get update
    flock /tmp/apt.lock apt-get install -y --no-install-recommends "${DEPS[@]}"
}

# ---------------------------------------------------------------- processes
start_bg() {  # start_bg NAME NS LOGFILE CMD...  (PID in $STATE/pids/NAME.pid)
    local name="$1" ns="$2" logf="$3"; shift 3
    mkdir -p "$STATE/pids"
    ip netns exec "$PFX$ns" "$@" >>"$logf" 2>&1 </dev/null &
    echo $! >"$STATE/pids/$name.pid"
}
alive() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n $st && $st != Z* ]]
}
stop_pid() {  # TERM, wait up to 3 s, KILL
    local p="$1" i
    alive "$p" || return 0
    kill -TERM "$p" 2>/dev/null || true
    for i in $(seq 30); do alive "$p" || return 0; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
}
stop_named() {
    local n f
    for n in "$@"; do
        f="$STATE/pids/$n.pid"
        [[ -f $f ]] || continue
        stop_pid "$(cat "$f")"; rm -f "$f"
    done
}
wait_port() {  # wait_port NS IP PORT [TIMEOUT_S]
    local ns="$1" ip="$2" port="$3" t="${4:-10}" i
    for i in $(seq $((t * 10))); do
        nsx "$ns" bash -c "exec 3<>/dev/tcp/$ip/$port" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
wait_ifaddr() {  # wait_ifaddr NS DEV TIMEOUT_S -> prints the IPv4 address
    local ns="$1" dev="$2" t="$3" i a
    for i in $(seq $((t * 10))); do
        a=$(nsx "$ns" ip -4 -o addr show dev "$dev" 2>/dev/null | awk '{split($4, x, "/"); print x[1]; exit}')
        [[ -n $a ]] && { echo "$a"; return 0; }
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- topology
mkns() {  # mkns NAME: namespace with its own resolv.conf/hosts, lo up, no IPv6
    local ns="$1"
    mkdir -p "/etc/netns/$PFX$ns"
    printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"/etc/netns/$PFX$ns/resolv.conf"
    printf '127.0.0.1 localhost %s\n%s %s\n%s %s\n' "$(hostname)" "$ENTRY" "$PORTAL_NAME" \
        "$CORP_GW" "$INTRANET_NAME" >"/etc/netns/$PFX$ns/hosts"
    ip netns add "$PFX$ns"
    nsx "$ns" ip link set lo up
    nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}
rmns() {  # rmns NAME: stop everything inside, delete it
    local ns="$1" p
    if ns_exists "$ns"; then
        for p in $(ip netns pids "$PFX$ns" 2>/dev/null); do stop_pid "$p"; done
        ip netns del "$PFX$ns" 2>/dev/null || true
    fi
    rm -f "/etc/netns/$PFX$ns/resolv.conf" "/etc/netns/$PFX$ns/hosts"
    rmdir "/etc/netns/$PFX$ns" 2>/dev/null || true
}
nooffload() { nsx "$1" ethtool -K "$2" tso off gso off gro off >/dev/null 2>&1 || true; }
link() {  # link NS_A IF_A ADDR_A NS_B IF_B ADDR_B   (ADDR "" = none)
    ip -n "$PFX$1" link add "$2" type veth peer name "$5" netns "$PFX$4"
    [[ -n $3 ]] && ip -n "$PFX$1" addr add "$3" dev "$2"
    [[ -n $6 ]] && ip -n "$PFX$4" addr add "$6" dev "$5"
    ip -n "$PFX$1" link set "$2" up
    ip -n "$PFX$4" link set "$5" up
    nooffload "$1" "$2"; nooffload "$4" "$5"
}
nat_router() {  # nat_router NS: forwarding + masquerade of everything leaving wan0 (nftables)
    nsx "$1" sysctl -qw net.ipv4.ip_forward=1
    nsx "$1" nft -f - <<EOF
table ip rwfarm_nat {
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" masquerade
    }
}
EOF
}
home_lan() {  # home_lan NS GW_ADDR/24: bridge br0 for the laptops
    nsx "$1" ip link add br0 type bridge
    nsx "$1" ip addr add "$2" dev br0
    nsx "$1" ip link set br0 up
}

gen_keys() {
    mkdir -p "$STATE/ssh" "$STATE/tls" "$STATE/pki" "$STATE/logs" "$STATE/pids" "$STATE/ovpn"
    chmod 700 "$STATE/ssh" "$STATE/pki"
    [[ -f $STATE/ssh/host_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -f "$STATE/ssh/host_ed25519"
    [[ -f $STATE/ssh/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C rwfarm -f "$STATE/ssh/id_ed25519"
    cp "$STATE/ssh/id_ed25519.pub" "$STATE/ssh/authorized_keys"
    cat >"$STATE/ssh/ssh_config" <<EOF
Host *
  User root
  IdentityFile $STATE/ssh/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile /dev/null
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking no
  CheckHostIP no
  LogLevel ERROR
  BatchMode yes
  ControlMaster no
  ControlPath none
  ForwardAgent no
  ForwardX11 no
  ServerAliveInterval 0
EOF
    cat >"$STATE/ssh/sshd_entry.conf" <<EOF
Port 22
ListenAddress 0.0.0.0
HostKey $STATE/ssh/host_ed25519
PidFile $STATE/ssh/sshd_entry.pid
AuthorizedKeysFile $STATE/ssh/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
PrintLastLog no
UseDNS no
MaxStartups 50
LogLevel VERBOSE
EOF
    if [[ ! -f $STATE/tls/portal.crt ]]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
            -subj "/CN=$PORTAL_NAME" -addext "subjectAltName=DNS:$PORTAL_NAME,DNS:$INTRANET_NAME,IP:$ENTRY,IP:$CORP_GW" \
            -keyout "$STATE/tls/portal.key" -out "$STATE/tls/portal.crt" 2>/dev/null
    fi
    # tiny OpenVPN PKI: one CA, two servers, one client certificate per employee
    local p="$STATE/pki" n
    if [[ ! -f $p/ca.crt ]]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
            -subj "/CN=rwfarm test CA" -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
    fi
    issue() {  # issue NAME CN EKU
        [[ -f $p/$1.crt ]] && return 0
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
            -keyout "$p/$1.key" -out "$p/$1.csr" 2>/dev/null
        printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyAgreement\nextendedKeyUsage=%s\n' "$3" >"$p/$1.ext"
        openssl x509 -req -in "$p/$1.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 30 \
            -extfile "$p/$1.ext" -out "$p/$1.crt" 2>/dev/null
        rm -f "$p/$1.csr" "$p/$1.ext"
    }
    issue corp_server vpn.corp.test serverAuth
    issue cvpn_server exit.consumervpn.test serverAuth
    for n in alice bob carol dave erin; do issue "emp_$n" "$n" clientAuth; done
    issue cvpn_client consumer-subscriber clientAuth
}

ovpn_server_conf() {  # ovpn_server_conf NAME PROTO LOCAL DEV NET TUN_MTU CERT EXTRA...
    local name="$1" proto="$2" local_ip="$3" dev="$4" net="$5" mtu="$6" cert="$7"; shift 7
    {
        printf 'mode server\ntls-server\nproto %s\nlocal %s\nport 1194\n' "$proto" "$local_ip"
        printf 'dev %s\ndev-type tun\ntopology subnet\nserver %s 255.255.255.0\ntun-mtu %s\n' "$dev" "$net" "$mtu"
        printf 'ca %s\ncert %s\nkey %s\ndh none\n' "$STATE/pki/ca.crt" "$STATE/pki/$cert.crt" "$STATE/pki/$cert.key"
        printf 'remote-cert-tls client\ndata-ciphers AES-256-GCM\n'
        printf 'status %s 2\nstatus-version 2\nverb 3\n' "$STATE/ovpn/$name.status"
        local x; for x in "$@"; do printf '%s\n' "$x"; done
    } >"$STATE/ovpn/$name.conf"
}
ovpn_client_conf() {  # ovpn_client_conf FILE PROTO REMOTE DEV TUN_MTU CERT
    {
        printf 'client\nproto %s\nremote %s 1194\nnobind\ndev %s\ndev-type tun\ntun-mtu %s\n' "$2" "$3" "$4" "$5"
        printf 'ca %s\ncert %s\nkey %s\n' "$STATE/pki/ca.crt" "$STATE/pki/$6.crt" "$STATE/pki/$6.key"
        printf 'remote-cert-tls server\ndata-ciphers AES-256-GCM\nconnect-retry 1 2\nverb 3\n'
    } >"$1"
}

cmd_up() {
    is_up && { log "farm lab already up (prefix $PFX)"; return 0; }
    local b ns
    for b in ip nft tcpdump sshd openvpn curl openssl ethtool; do
        command -v "$b" >/dev/null || die "missing $b: run '$0 deps'"
    done
    trap 'log "up failed, tearing down"; cmd_down' EXIT
    mkdir -p "$STATE/logs" "$STATE/pids"
    for ns in "${INFRA[@]}"; do mkns "$ns"; done
    link entry eth0 "$ENTRY/24" inet e0 "$INET_ENTRY/24"
    link homea wan0 "$HOMEA_WAN/29" inet ha0 "$INET_HOMEA/29"
    link homeb wan0 "$HOMEB_WAN/29" inet hb0 "$INET_HOMEB/29"
    link vpn wan0 "$VPN_WAN/29" inet v0 "$INET_VPN/29"
    nsx inet sysctl -qw net.ipv4.ip_forward=1
    nsx inet ip route add unreachable default          # nothing leaves the lab
    nsx entry ip route add default via "$INET_ENTRY"
    nsx homea ip route add default via "$INET_HOMEA"
    nsx homeb ip route add default via "$INET_HOMEB"
    nsx vpn ip route add default via "$INET_VPN"
    home_lan homea "$HOMEA_GW/24"
    home_lan homeb "$HOMEB_GW/24"
    nat_router homea
    nat_router homeb
    nat_router vpn

    gen_keys
    mkdir -p /run/sshd
    start_bg sshd_entry entry "$STATE/logs/sshd_entry.log" "$(command -v sshd)" -D -e -f "$STATE/ssh/sshd_entry.conf"
    start_bg portal entry "$STATE/logs/portal.log" "$PY" "$HELPERS/https_server.py" \
        --bind 0.0.0.0 --port 443 --cert "$STATE/tls/portal.crt" --key "$STATE/tls/portal.key"
    # corporate VPN concentrator: OpenVPN over TCP; keepalive 2 s keeps the
    # long-lived outer TCP connection ticking (TCP timestamps to fit)
    ovpn_server_conf corp tcp-server "$ENTRY" corp0 "$CORP_NET" "$CORP_TUN_MTU" corp_server \
        "keepalive 2 20" "verify-client-cert require"
    # consumer VPN exit: OpenVPN over UDP, full tunnel, small tun MTU
    ovpn_server_conf cvpn udp "$VPN_WAN" cvpn0 "$CVPN_NET" "$CVPN_TUN_MTU" cvpn_server \
        "keepalive 5 30" 'push "redirect-gateway def1"' "duplicate-cn"
    : >"$STATE/logs/ovpn_corp.log"; : >"$STATE/logs/ovpn_cvpn.log"
    start_bg ovpn_corp entry "$STATE/logs/ovpn_corp.log" openvpn --config "$STATE/ovpn/corp.conf"
    start_bg ovpn_cvpn vpn "$STATE/logs/ovpn_cvpn.log" openvpn --config "$STATE/ovpn/cvpn.conf"
    wait_port entry "$ENTRY" 22 || die "sshd on entry did not start"
    wait_port entry "$ENTRY" 443 || die "portal did not start"
    wait_ifaddr entry corp0 15 >/dev/null || die "corporate OpenVPN server did not come up (see $STATE/logs/ovpn_corp.log)"
    wait_ifaddr vpn cvpn0 15 >/dev/null || die "consumer OpenVPN server did not come up (see $STATE/logs/ovpn_cvpn.log)"
    nsx vpn sysctl -qw net.ipv4.ip_forward=1
    nsx homea ping -c1 -W2 "$ENTRY" >/dev/null || die "home A cannot reach entry"
    nsx homeb ping -c1 -W2 "$ENTRY" >/dev/null || die "home B cannot reach entry"
    nsx vpn ping -c1 -W2 "$ENTRY" >/dev/null || die "vpn cannot reach entry"
    trap - EXIT
    log "farm lab up: namespaces ${INFRA[*]/#/$PFX}; state in $STATE"
}

cmd_down() {
    local f ns
    if [[ -d $STATE/pids ]]; then
        for f in "$STATE"/pids/*.pid; do
            [[ -f $f ]] || continue
            stop_pid "$(cat "$f")"; rm -f "$f"
        done
    fi
    # laptops first (their veths hang off the home bridges), then the infrastructure
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${PFX}lap-" || true); do
        rmns "${ns#"$PFX"}"
    done
    for ns in "${INFRA[@]}"; do rmns "$ns"; done
    rmdir /etc/netns 2>/dev/null || true
    log "farm lab down"
}

cmd_status() {
    ip netns list | grep "^$PFX" || echo "no farm namespaces"
    local f p
    if [[ -d $STATE/pids ]]; then
        for f in "$STATE"/pids/*.pid; do
            [[ -f $f ]] || continue
            p=$(cat "$f"); printf '%-14s %s %s\n' "$(basename "$f" .pid)" "$p" "$(alive "$p" && echo alive || echo dead)"
        done
    fi
}

SCENARIOS=(mixed_stacks identical_linux single_device two_homes openvpn nested_tunnel)
cmd_list() {
    cat <<EOF
mixed_stacks     home A: 3 laptops, Linux default / Windows-like (TTL 128, no TS, ws 8) / Linux MSS 1380   A=3
identical_linux  home A: 3 identical Linux laptops (differ only in TS offset, IP-ID, ports)           A=3
single_device    home A: 1 Linux laptop, many connections (must count as one)                       A=1
two_homes        home A: Linux + Windows-like, home B: Linux                                         A=2 B=1
openvpn          home A laptop -> consumer OpenVPN (udp, tun-mtu $CVPN_TUN_MTU) -> entry; seen from $VPN_WAN, MSS $((CVPN_TUN_MTU - 40))     VPN=1
nested_tunnel    home A laptop -> consumer OpenVPN (udp) -> corporate OpenVPN (tcp) -> intranet   VPN=1 (tunnel in tunnel)
EOF
}

# ---------------------------------------------------------------- laptops
# Stack profiles (per-namespace sysctls / routes):
#   linux          Debian defaults of this kernel
#   windows        ip_default_ttl=128, tcp_timestamps=0, tcp_rmem max 8 MiB (-> wscale 8); SYN window 64240 at MSS 1460
#   linux_mss1380  default route and LAN route with advmss 1380 (what a 1420-MTU tunnel, e.g. WireGuard, gives)
LAPTOPS=()            # names of this run's laptops
declare -A L_HOME L_IP L_GW L_PROFILE L_ID L_CORP L_CVPN L_CURLS L_INNER L_OFFSET
laptop() {  # laptop NAME HOME(homea|homeb) IP PROFILE IDENTITY CORP_VPN(0|1) CONSUMER_VPN(0|1) N_CURLS N_INNER
    LAPTOPS+=("$1")
    L_HOME[$1]=$2; L_IP[$1]=$3; L_PROFILE[$1]=$4; L_ID[$1]=$5; L_CORP[$1]=$6; L_CVPN[$1]=$7
    L_CURLS[$1]=$8; L_INNER[$1]=$9
    case "$2" in homea) L_GW[$1]=$HOMEA_GW ;; homeb) L_GW[$1]=$HOMEB_GW ;; *) die "bad home $2" ;; esac
}
add_laptop() {  # create namespace lap-NAME on its home bridge and apply its stack profile
    local n="$1" ns="lap-$1" home="${L_HOME[$1]}" ip="${L_IP[$1]}" gw="${L_GW[$1]}" adv=()
    rmns "$ns"
    mkns "$ns"
    ip -n "$PFX$ns" link add eth0 type veth peer name "v-$n" netns "$PFX$home"
    ip -n "$PFX$ns" addr add "$ip/24" dev eth0
    ip -n "$PFX$ns" link set eth0 up
    ip -n "$PFX$home" link set "v-$n" master br0 up
    nooffload "$ns" eth0; nooffload "$home" "v-$n"
    case "${L_PROFILE[$n]}" in
        linux) ;;
        windows)
            nsx "$ns" sysctl -qw net.ipv4.ip_default_ttl=128 net.ipv4.tcp_timestamps=0 \
                net.ipv4.tcp_window_scaling=1 net.ipv4.tcp_sack=1 net.ipv4.tcp_rmem="4096 131072 8388608" ;;
        linux_mss1380) adv=(advmss 1380) ;;
        *) die "unknown profile ${L_PROFILE[$n]}" ;;
    esac
    if [[ ${#adv[@]} -gt 0 ]]; then
        nsx "$ns" ip route replace "${ip%.*}.0/24" dev eth0 proto kernel scope link src "$ip" "${adv[@]}"
    fi
    nsx "$ns" ip route add default via "$gw" "${adv[@]}"
}
laptop_json() {  # laptop_json NAME -> one JSON object (settings read back from the namespace)
    local n="$1" ns="lap-$1" k v out="" adv mtu
    for k in net.ipv4.ip_default_ttl net.ipv4.tcp_timestamps net.ipv4.tcp_window_scaling net.ipv4.tcp_sack \
             net.ipv4.tcp_rmem net.ipv4.tcp_ecn net.core.rmem_max; do
        v=$(nsx "$ns" sysctl -n "$k" | tr '\t' ' ')
        out+="\"$k\": \"$v\", "
    done
    adv=$(nsx "$ns" ip route show default | sed -n 's/.*advmss \([0-9]*\).*/\1/p')
    mtu=$(nsx "$ns" cat /sys/class/net/eth0/mtu)
    printf '{"name": "%s", "namespace": "%s", "home": "%s", "private_ip": "%s", "profile": "%s", "identity": "%s", ' \
        "$n" "$PFX$ns" "${L_HOME[$n]}" "${L_IP[$n]}" "${L_PROFILE[$n]}" "${L_ID[$n]}"
    printf '"corp_vpn": %s, "consumer_vpn": %s, "corp_vpn_ip": "%s", "consumer_vpn_ip": "%s", ' \
        "$([[ ${L_CORP[$n]} == 1 ]] && echo true || echo false)" "$([[ ${L_CVPN[$n]} == 1 ]] && echo true || echo false)" \
        "$(cat "$RUN_OUT/laptops/$n.corp_ip" 2>/dev/null || true)" "$(cat "$RUN_OUT/laptops/$n.cvpn_ip" 2>/dev/null || true)"
    printf '"start_offset_s": %s, "n_curls": %s, "n_inner": %s, "eth0_mtu": %s, "advmss": %s, "sysctl": {%s}}\n' \
        "${L_OFFSET[$n]}" "${L_CURLS[$n]}" "${L_INNER[$n]}" "$mtu" "${adv:-null}" "${out%, }"
}

# Per-laptop session (runs in the background, one per laptop): after its
# staggered start, bring up the corporate VPN if any, then farm_client.py runs
# a long ssh session with periodic output and seeded curls until the deadline.
laptop_session() {  # laptop_session NAME INDEX SEED DEADLINE_EPOCH
    local n="$1" idx="$2" seed="$3" deadline="$4" ns="lap-$1" vpid="" a inner=() rc=0
    local dir="$RUN_OUT/laptops"
    sleep "${L_OFFSET[$n]}"
    if [[ ${L_CORP[$n]} == 1 ]]; then
        ovpn_client_conf "$STATE/ovpn/corp_$n.conf" tcp-client "$ENTRY" corp0 "$CORP_TUN_MTU" "emp_${L_ID[$n]}"
        ip netns exec "$PFX$ns" openvpn --config "$STATE/ovpn/corp_$n.conf" >"$dir/$n.ovpn_corp.log" 2>&1 </dev/null &
        vpid=$!
        if a=$(wait_ifaddr "$ns" corp0 25); then
            echo "$a" >"$dir/$n.corp_ip"
            inner=(--inner-ip "$CORP_GW" --inner-name "$INTRANET_NAME" --n-inner "${L_INNER[$n]}")
        else
            log "$n: corporate VPN did not come up"; rc=1
        fi
    fi
    nsx "$ns" "$PY" "$HELPERS/farm_client.py" --name "$n" --seed "$((seed * 100 + idx))" --deadline "$deadline" \
        --ssh-ip "$ENTRY" --ssh-config "$STATE/ssh/ssh_config" --portal-ip "$ENTRY" --portal-name "$PORTAL_NAME" \
        --cacert "$STATE/tls/portal.crt" --n-curls "${L_CURLS[$n]}" "${inner[@]}" \
        --events "$dir/$n.events.json" >>"$dir/$n.client.log" 2>&1 || rc=1
    if [[ -n $vpid ]]; then sleep 1; stop_pid "$vpid"; fi
    return $rc
}

# ---------------------------------------------------------------- scenarios
# Each scn_NAME sets SCN_NOTE and declares laptops; run_one does the rest.
# laptop NAME HOME IP PROFILE IDENTITY CORP_VPN CONSUMER_VPN N_CURLS N_INNER
scn_mixed_stacks() {
    SCN_NOTE="home A: three laptops with different stacks behind one NAT, each its own employee and corporate VPN session"
    laptop a1 homea 192.168.1.11 linux alice 1 0 6 2
    laptop a2 homea 192.168.1.12 windows bob 1 0 6 2
    laptop a3 homea 192.168.1.13 linux_mss1380 carol 1 0 6 2
}
scn_identical_linux() {
    SCN_NOTE="home A: three identical Linux laptops (same kernel, same sysctls) behind one NAT"
    laptop a1 homea 192.168.1.11 linux alice 1 0 6 2
    laptop a2 homea 192.168.1.12 linux bob 1 0 6 2
    laptop a3 homea 192.168.1.13 linux carol 1 0 6 2
}
scn_single_device() {
    SCN_NOTE="home A: one Linux laptop making many connections (ssh, corporate VPN, many HTTPS); must count as one device"
    laptop a1 homea 192.168.1.11 linux alice 1 0 24 4
}
scn_two_homes() {
    SCN_NOTE="home A: Linux + Windows-like laptop; home B: one Linux laptop"
    laptop a1 homea 192.168.1.11 linux alice 1 0 6 2
    laptop a2 homea 192.168.1.12 windows bob 1 0 6 2
    laptop b1 homeb 192.168.0.21 linux dave 1 0 6 2
}
scn_openvpn() {
    SCN_NOTE="home A laptop with a consumer VPN (OpenVPN udp, full tunnel, tun-mtu $CVPN_TUN_MTU) talks to the entry point through it"
    laptop a1 homea 192.168.1.11 linux erin 0 1 8 0
}
scn_nested_tunnel() {
    SCN_NOTE="home A laptop: consumer VPN (OpenVPN udp, tun-mtu $CVPN_TUN_MTU) and inside it the corporate VPN (OpenVPN tcp to the entry point); intranet HTTPS inside the corporate tunnel"
    laptop a1 homea 192.168.1.11 linux erin 1 1 4 6
}

# ---------------------------------------------------------------- run
RUN_OUT=""
CAP_PIDS=()
run_cleanup() {
    local p n
    for p in "${CAP_PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${CAP_PIDS[@]}"; do
        for _ in $(seq 30); do alive "$p" || break; sleep 0.1; done
        stop_pid "$p"
    done
    CAP_PIDS=()
    for n in "${LAPTOPS[@]}"; do rmns "lap-$n"; done
}
capture() {  # capture NS IFACE FILE [tcpdump args...]
    local ns="$1" ifc="$2" f="$3"; shift 3
    ip netns exec "$PFX$ns" tcpdump -i "$ifc" -n -U -Z root -w "$f" "$@" >"$f.log" 2>&1 </dev/null &
    CAP_PIDS+=($!)
    for _ in $(seq 50); do grep -q "listening on" "$f.log" 2>/dev/null && return 0; sleep 0.1; done
    log "tcpdump on $ns/$ifc did not start"; return 1
}
run_one() {  # run_one SCENARIO OUT SEED DURATION
    local scn="$1" out="$2" seed="$3" dur="$4" n i t0 t1 deadline rc=0 status=ok pids=() a
    declare -F "scn_$scn" >/dev/null || die "unknown scenario $scn (see: $0 list)"
    mkdir -p "$out"
    rm -rf "$out/laptops"; rm -f "$out"/*.pcap "$out"/*.json "$out"/*.log "$out"/*.txt
    mkdir -p "$out/laptops"
    RUN_OUT="$out"; LAPTOPS=(); SCN_NOTE=""
    L_HOME=(); L_IP=(); L_GW=(); L_PROFILE=(); L_ID=(); L_CORP=(); L_CVPN=(); L_CURLS=(); L_INNER=(); L_OFFSET=()
    "scn_$scn"
    # staggered starts, seeded: laptop i starts at 8*i + U(0,6) s
    for i in "${!LAPTOPS[@]}"; do
        L_OFFSET[${LAPTOPS[$i]}]=$(awk -v s="$seed" -v i="$i" 'BEGIN{srand(s*31+i); printf "%.1f", 8*i + 6*rand()}')
    done
    for n in "${LAPTOPS[@]}"; do add_laptop "$n"; done
    # the ground-truth side: every SYN each laptop sends, on all its interfaces (eth0 and tunnels)
    for n in "${LAPTOPS[@]}"; do
        capture "lap-$n" any "$out/laptops/$n.syn.pcap" -s 128 'tcp[tcpflags] & tcp-syn != 0'
    done
    # consumer VPN (full tunnel) comes up before the capture starts
    for n in "${LAPTOPS[@]}"; do
        [[ ${L_CVPN[$n]} == 1 ]] || continue
        ovpn_client_conf "$STATE/ovpn/cvpn_$n.conf" udp "$VPN_WAN" cvpn0 "$CVPN_TUN_MTU" cvpn_client
        ip netns exec "${PFX}lap-$n" openvpn --config "$STATE/ovpn/cvpn_$n.conf" >"$out/laptops/$n.ovpn_cvpn.log" 2>&1 </dev/null &
        CAP_PIDS+=($!)
        if a=$(wait_ifaddr "lap-$n" cvpn0 25); then
            echo "$a" >"$out/laptops/$n.cvpn_ip"
            for _ in $(seq 50); do nsx "lap-$n" ip route show 0.0.0.0/1 | grep -q cvpn0 && break; sleep 0.1; done
        else
            log "$n: consumer VPN did not come up"; rc=1
        fi
    done
    local corp_off cvpn_off
    corp_off=$(stat -c %s "$STATE/logs/ovpn_corp.log"); cvpn_off=$(stat -c %s "$STATE/logs/ovpn_cvpn.log")
    capture entry eth0 "$out/entry.pcap" -s 0
    capture entry corp0 "$out/entry_tun.pcap" -s 0
    sleep 0.5
    t0=$(date +%s.%N)
    deadline=$(awk -v t="$t0" -v d="$dur" 'BEGIN{printf "%.3f", t + d}')
    log "run $scn seed=$seed duration=${dur}s laptops: $(for n in "${LAPTOPS[@]}"; do printf '%s(%s,%s,+%ss) ' "$n" "${L_HOME[$n]}" "${L_PROFILE[$n]}" "${L_OFFSET[$n]}"; done)-> $out"
    i=0
    for n in "${LAPTOPS[@]}"; do
        [[ $rc -eq 0 ]] || break
        ( set +e; laptop_session "$n" "$i" "$seed" "$deadline" ) &
        pids+=($!); i=$((i + 1))
    done
    for i in "${pids[@]}"; do wait "$i" || rc=1; done
    sleep 2   # FIN/ACKs and the last keepalives reach the capture
    t1=$(date +%s.%N)
    for n in "${LAPTOPS[@]}"; do laptop_json "$n"; done >"$out/laptops.jsonl"
    tail -c +"$((corp_off + 1))" "$STATE/logs/ovpn_corp.log" >"$out/vpn_corp_server.log" || true
    tail -c +"$((cvpn_off + 1))" "$STATE/logs/ovpn_cvpn.log" >"$out/vpn_consumer_server.log" || true
    run_cleanup
    [[ $rc -eq 0 ]] || status="failed rc=$rc"
    "$PY" "$HELPERS/farm_truth.py" --scenario "$scn" --seed "$seed" --duration "$dur" --status "$status" \
        --note "$SCN_NOTE" --started "$t0" --ended "$t1" --run-dir "$out" \
        --topology "$(topology_json)" >"$out/truth.log" 2>&1 || { status="failed truth"; rc=1; }
    tail -n 3 "$out/truth.log" >&2
    log "done $scn status=$status ($(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s, entry.pcap $(stat -c %s "$out/entry.pcap") B)"
    RUN_RC=$rc
}
RUN_RC=0
topology_json() {
    cat <<EOF
{"entry": {"namespace": "${PFX}entry", "address": "$ENTRY", "capture_iface": "eth0", "services": {"ssh": 22, "https_portal": 443, "openvpn_tcp": 1194}, "portal_name": "$PORTAL_NAME", "corp_vpn_tun": "corp0", "corp_vpn_net": "$CORP_NET/24", "corp_vpn_gw": "$CORP_GW", "corp_tun_mtu": $CORP_TUN_MTU},
 "inet": {"namespace": "${PFX}inet", "links": {"entry": "$INET_ENTRY/24", "homea": "$INET_HOMEA/29", "homeb": "$INET_HOMEB/29", "vpn": "$INET_VPN/29"}},
 "homea": {"namespace": "${PFX}homea", "public_ip": "$HOMEA_WAN", "lan": "192.168.1.0/24", "gw": "$HOMEA_GW", "nat": "nftables masquerade on wan0"},
 "homeb": {"namespace": "${PFX}homeb", "public_ip": "$HOMEB_WAN", "lan": "192.168.0.0/24", "gw": "$HOMEB_GW", "nat": "nftables masquerade on wan0"},
 "vpn": {"namespace": "${PFX}vpn", "public_ip": "$VPN_WAN", "kind": "consumer VPN exit, OpenVPN udp 1194, redirect-gateway def1, masquerade", "tun": "cvpn0", "net": "$CVPN_NET/24", "tun_mtu": $CVPN_TUN_MTU}}
EOF
}

cmd_run() {
    [[ $# -ge 1 ]] || die "usage: $0 run SCENARIO|all [--seed N] [--duration S] [--out DIR]"
    local scn="$1"; shift
    local seed=1 out="" dur="$DURATION" we_upped=0 s failed=0
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --seed) seed="$2"; shift 2 ;;
            --duration) dur="$2"; shift 2 ;;
            --out) out="$2"; shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    [[ $seed =~ ^[0-9]+$ && $dur =~ ^[0-9]+$ && $dur -ge 30 ]] || die "--seed must be an integer, --duration an integer >= 30"
    if ! is_up; then cmd_up; we_upped=1; fi
    # shellcheck disable=SC2064
    trap "run_cleanup; [[ $we_upped == 1 ]] && cmd_down" EXIT
    trap 'exit 130' INT TERM
    if [[ $scn == all ]]; then
        out="${out:-out/farm-s$seed}"
        for s in "${SCENARIOS[@]}"; do
            run_one "$s" "$out/$s" "$seed" "$dur"
            [[ $RUN_RC -eq 0 ]] || { failed=$((failed + 1)); log "scenario $s failed"; }
        done
        log "all: $(( ${#SCENARIOS[@]} - failed ))/${#SCENARIOS[@]} scenarios ok; results in $out"
        [[ $failed -eq 0 ]]
    else
        out="${out:-out/farm-$scn-s$seed}"
        run_one "$scn" "$out" "$seed" "$dur"
        return "$RUN_RC"
    fi
}

main() {
    local c="${1:-}"; shift || true
    case "$c" in
        deps) cmd_deps ;;
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        list) cmd_list ;;
        run) cmd_run "$@" ;;
        verify) [[ $# -ge 1 ]] || die "usage: $0 verify RUN_DIR..."; "$PY" "$HELPERS/farm_verify.py" "$@" ;;
        *) sed -n '2,10p' "$0"; exit 2 ;;
    esac
}
main "$@"
