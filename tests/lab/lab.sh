#!/usr/bin/env bash
# relaywatch traffic lab: network namespaces + userspace delay links, real traffic, ground truth.
# (relaywatch's own copy, grown from the shared lab in /work/shared/lab; see README.md)
# usage: lab.sh deps | up | down | list | status
#        lab.sh run SCENARIO|all [--op-delay-ms N] [--jitter-ms N] [--near-jitter-ms N]
#                   [--loss-pct P] [--reorder-pct P] [--jitter-order kept|free] [--lan-loss-pct P]
#                   [--lan-delay-ms N] [--lan-jitter-ms N] [--lan-rate-kbit N] [--lan-queue-ms N]
#                   [--lan-bulk]
#                   [--op-rate-kbit N] [--op-queue-ms N] [--op-bulk] [--seed N] [--out DIR]
#        lab.sh verify RUN_DIR...      (tshark cross-check of a run's gw.pcap)
set -euo pipefail

LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HELPERS="$LAB_DIR/helpers"
PFX="${RWLAB_PREFIX:-rwlab-}"
STATE="${RWLAB_STATE:-${TMPDIR:-/tmp}/${PFX}state}"
PY="${RWLAB_PYTHON:-python3}"
# gw <-> srv link, one-way each direction. `up` uses RWLAB_NEAR_DELAY_MS (default
# 5) and remembers it in $STATE/near_delay_ms; `run` sets the link from the env
# var if given, else from that file. RWLAB_NEAR_JITTER_MS (default 0; or
# `run --near-jitter-ms`) is gaussian jitter (sigma, each way) on that link,
# seeded with --seed like the op link's --jitter-ms, order kept.
NEAR_DELAY_MS="${RWLAB_NEAR_DELAY_MS:-$(cat "$STATE/near_delay_ms" 2>/dev/null || echo 5)}"
NEAR_JITTER_MS="${RWLAB_NEAR_JITTER_MS:-0}"
# Loss and reordering on both internet links (gw<->srv and gw<->op), each way,
# seeded with --seed: RWLAB_LOSS_PCT / `run --loss-pct` drops that share of the
# packets, RWLAB_REORDER_PCT / `run --reorder-pct` holds that share 1-10 ms
# longer so the packets behind them overtake (default 0: none).
LOSS_PCT="${RWLAB_LOSS_PCT:-0}"
REORDER_PCT="${RWLAB_REORDER_PCT:-0}"
# How jitter on those two links treats order: `kept` (default: a packet never
# leaves before the one ahead, as a queue does) or `free` (each packet its own
# delay, so they overtake: Linux netem's jitter without a rate, which labs on
# kernels with netem record). RWLAB_JITTER_ORDER / `run --jitter-order`.
JITTER_ORDER="${RWLAB_JITTER_ORDER:-kept}"
# Loss between the laptop and the capture point (a bad Wi-Fi: the lost packet
# never reaches the sensor, or the sensor saw what the laptop never got):
# RWLAB_LAN_LOSS_PCT / `run --lan-loss-pct` drops that share of the packets the
# laptop sends and of those it receives on its LAN interface (an nftables
# numgen rule in farm; the kernel's random numbers, so not seeded).
LAN_LOSS_PCT="${RWLAB_LAN_LOSS_PCT:-0}"
# Delay and jitter between the laptop and the capture point (office Wi-Fi):
# with RWLAB_LAN_DELAY_LINE=1 at `up` (remembered in $STATE/lan_delay_line),
# the LAN is a TAP pair joined by a delay line instead of a veth pair, and
# RWLAB_LAN_DELAY_MS / `run --lan-delay-ms` and RWLAB_LAN_JITTER_MS / `run
# --lan-jitter-ms` (default 0) set its one-way delay and gaussian jitter (sigma,
# each way, seeded with --seed, order kept). Without the line they must be 0.
LAN_DELAY_MS="${RWLAB_LAN_DELAY_MS:-0}"
LAN_JITTER_MS="${RWLAB_LAN_JITTER_MS:-0}"
# On that line, RWLAB_LAN_RATE_KBIT / `run --lan-rate-kbit` (0: none) sends each
# direction at that rate from a drop-tail buffer of RWLAB_LAN_QUEUE_MS / `run
# --lan-queue-ms` (200) of sending, and RWLAB_LAN_BULK=1 / `run --lan-bulk` keeps
# a download srv -> laptop running through the scenario: a bufferbloated Wi-Fi
# whose queue the laptop's own download fills (that flow is captured too).
LAN_RATE_KBIT="${RWLAB_LAN_RATE_KBIT:-0}"
LAN_QUEUE_MS="${RWLAB_LAN_QUEUE_MS:-200}"
LAN_BULK="${RWLAB_LAN_BULK:-0}"
# The operator's access line (a home line, where bufferbloat lives):
# RWLAB_OP_RATE_KBIT / `run --op-rate-kbit` sends each direction of the op
# link at that rate from a drop-tail buffer of RWLAB_OP_QUEUE_MS / `run
# --op-queue-ms` (default 200) of sending (0: no bottleneck). RWLAB_OP_BULK=1
# / `run --op-bulk` keeps a download srv -> op (not through the laptop, so
# not captured) running through the scenario: a standing queue at the
# operator's end, what a household's streaming does to a home line.
OP_RATE_KBIT="${RWLAB_OP_RATE_KBIT:-0}"
OP_QUEUE_MS="${RWLAB_OP_QUEUE_MS:-200}"
OP_BULK="${RWLAB_OP_BULK:-0}"
# The delay lines run SCHED_FIFO at this priority (chrt) so that a busy
# machine does not stretch the configured delays; 0 = normal scheduling.
DELAY_RT_PRIO="${RWLAB_DELAY_RT_PRIO:-10}"
# RWLAB_OFFLOADS=1 at `up` leaves the veth links (farm<->gw, gw<->inet) with a gateway
# NIC's defaults instead of wire-sized packets: TSO/GSO on and GRO on, so the capture on
# gw's lan0 shows the laptop's TSO super-segments and the downloads that GRO merged on
# wan0 (up to 64 kB a packet), as tcpdump on a Linux router with default offloads does.
OFFLOADS="${RWLAB_OFFLOADS:-0}"
NSLIST=(op farm gw inet srv)

# Addresses (all live only inside the lab namespaces).
LAN_NET=10.77.1.0/24
GW_LAN=10.77.1.1
FARM=10.77.1.10
KVM=10.77.1.20   # kvm_typed_ssh: an IP-KVM beside the laptop (a second address of farm)
GW_WAN=198.18.0.2
INET_GW=198.18.0.1
INET_SRV=198.18.2.1
SRV=198.18.2.10
INET_OP=198.18.9.1
OP=198.18.9.50
SRV_NAME=srv.rwlab.test
# routed_relay: the operator's ssh -w point-to-point link (tun5 in op and farm)
ROUTED_TUN=tun5
ROUTED_NET=10.99.0.0/30
ROUTED_FARM=10.99.0.1
ROUTED_OP=10.99.0.2
HOSTS_JSON="{\"farm\":\"$FARM\",\"gw_lan\":\"$GW_LAN\",\"gw_wan\":\"$GW_WAN\",\"srv\":\"$SRV\",\"op\":\"$OP\"}"

# X display numbers used by the VNC/RDP scenarios (sockets live in /tmp/.X11-unix).
DISP_FARM_VNC=${RWLAB_DISPLAY_BASE:-77}
DISP_FARM_RDP=$((DISP_FARM_VNC + 1))
DISP_OP_RDP=$((DISP_FARM_VNC + 2))

# VNC volume knobs (the defaults keep the original behaviour):
#   RWLAB_VNC_SCALE         passed to x11vnc -scale (e.g. 1/2), empty = unscaled
#   RWLAB_VNC_PIXEL_FORMAT  native | bgr233 (the RFB client asks for 8 bpp)
VNC_SCALE="${RWLAB_VNC_SCALE:-}"
VNC_PIXEL_FORMAT="${RWLAB_VNC_PIXEL_FORMAT:-native}"
# The operator's viewer in vnc_session and vnc_forwarded: empty for ours
# (helpers/rfb_client.py, which types the seeded plan), or a real one under Xvfb that only
# watches: tigervnc (xtigervncviewer) or tightvnc (xtightvncviewer); the laptop's xterm
# then prints the time every 0.3 s, so that the screen changes and the viewer asks for
# updates.
VNC_VIEWER="${RWLAB_VNC_VIEWER:-}"
# What the laptop's screen shows a real viewer (RWLAB_VNC_VIEWER set): RWLAB_VNC_SCREEN
# `clock` (default: the time every 0.3 s, a few characters an update) or `flood` (a
# screenful of random text every 0.2 s, so that each update is large: what a person
# watching a scrolling log or a video sends the viewer), and RWLAB_VNC_GEOMETRY, the
# laptop's screen (default 800x600x24; when set, the xterm fills it).
VNC_SCREEN="${RWLAB_VNC_SCREEN:-clock}"
VNC_GEOMETRY="${RWLAB_VNC_GEOMETRY:-}"
# RWLAB_VNC_TLS=1: the session is encrypted, VeNCrypt with anonymous TLS (x11vnc -ssl TMP
# -vencrypt only; TigerVNC's security type TLSNone, no certificate to accept): only its
# setup's first messages pass in the clear. x509: VeNCrypt with the laptop's certificate
# (made once per lab, for its address; TigerVNC's X509None, given that certificate as its CA),
# which OpenSSL and GnuTLS settle in TLS 1.3. TigerVNC only.
VNC_TLS="${RWLAB_VNC_TLS:-0}"
# RWLAB_VNC_TYPE=1: the person at a real viewer types (xdotool on op's display, into the
# viewer, which sends the keys to the laptop's xterm), seeded words at 120-240 ms a key with
# pauses, for the session's length; default 0: the viewer only watches.
VNC_TYPE="${RWLAB_VNC_TYPE:-0}"
# RWLAB_RDP_SECURITY: the RDP scenarios' security layer, `tls` (default: TLS after the
# X.224 negotiation) or `rdp` (standard RDP security: the MCS setup in the clear, the rest
# under RDP's own encryption), set on both xrdp (security_layer) and xfreerdp (/sec:). With
# `rdp` xrdp encrypts at its FIPS level: Debian's xrdp checks only the unsalted MAC of the
# other levels, and FreeRDP sends the salted one ("MAC checksum error for non-FIPS PDU").
RDP_SECURITY="${RWLAB_RDP_SECURITY:-tls}"
# RWLAB_RDP_CERT_ANSWER_MS: empty (default) runs xfreerdp with /cert:ignore; a number lets it
# ask whether to trust xrdp's self-signed certificate, and the person answers Y that many ms
# after the prompt appears (an operator who clicks through the warning).
RDP_CERT_ANSWER_MS="${RWLAB_RDP_CERT_ANSWER_MS:-}"
# RWLAB_RDP_SERVER: the laptop's RDP server, `xrdp` (default: xrdp in front of x11vnc) or
# `shadow` (FreeRDP's freerdp-shadow-cli sharing the laptop's display, which speaks the
# graphics pipeline as Windows does: its client acknowledges every frame).
# RWLAB_RDP_CODEC: xfreerdp's codec flags against `shadow` (default /gfx-progressive: the
# graphics pipeline, RDPGFX_FRAME_ACKNOWLEDGE per frame; /rfx: surface commands,
# TS_FRAME_ACKNOWLEDGE_PDU per frame).
# RWLAB_RDP_SCREEN: in rdp_typed_ssh, a second xterm on the laptop's screen runs `clock` or
# `flood` (as RWLAB_VNC_SCREEN); empty (default): none.
RDP_SERVER="${RWLAB_RDP_SERVER:-xrdp}"
RDP_CODEC="${RWLAB_RDP_CODEC:-/gfx-progressive}"
RDP_SCREEN="${RWLAB_RDP_SCREEN:-}"
# The typed scenarios (direct_ssh_interactive, jump_ssh_interactive, vnc_typed_ssh):
#   RWLAB_TYPIST            the typist's habits, a name in helpers/human.py PERSONS (steady)
#   RWLAB_TYPING_BUDGET_S   nominal seconds of typing per session (20)
#   RWLAB_SSH_CLIENT        the ssh client binary (ssh from PATH); e.g. an OpenSSH >= 9.5 built by
#                           build_openssh.sh, whose keystroke obfuscation Debian 12's 9.2 lacks
#   RWLAB_SSHD              the sshd of srv and farm (Debian's); read by `up`. A client >= 9.5
#                           sends chaff only to a server >= 9.5
# RWLAB_TLS_CLIENT: the HTTPS client of the scenarios that fetch in a loop (direct_tls, the
# proxied and tunnelled TLS ones): curl (default; OpenSSL), wget (GnuTLS; through SOCKS5 by
# proxychains4), python (helpers/tls_fetch.py: the ssl module), go (helpers/tls_fetch.go:
# crypto/tls, built once into the state directory), java (helpers/TlsFetch.java: JSSE, a new
# JVM per fetch, compiled once) or nss (helpers/tls_fetch_nss.py: libcurl3-nss, Firefox's TLS
# library). Another TLS stack, its own handshake timing.
TLS_CLIENT="${RWLAB_TLS_CLIENT:-curl}"
# RWLAB_QUIC_CLIENT: the HTTP/3 client of routed_quic and direct_quic: ngtcp2 (default; its
# example client gtlsclient, GnuTLS), chromium (Chromium's own QUIC, a new headless browser
# per fetch, forced onto QUIC for srv) or go (helpers/quic_fetch.go: quic-go, built once).
QUIC_CLIENT="${RWLAB_QUIC_CLIENT:-ngtcp2}"
# RWLAB_CLIENT_CPU_PCT: run that client, the ssh client and the browser (direct_browser,
# proxied_browser) with this share of one CPU (1..100;
# helpers/cpu_limited.sh, a cgroup quota): a slow or busy machine, whose client takes longer
# to answer on its own.
CLIENT_CPU_PCT="${RWLAB_CLIENT_CPU_PCT:-}"
CLIENT_LIM=()  # the prefix that runs a client in that quota
[[ -z $CLIENT_CPU_PCT ]] || CLIENT_LIM=("$HELPERS/cpu_limited.sh" "$CLIENT_CPU_PCT")
TYPIST="${RWLAB_TYPIST:-steady}"
SSH_CLIENT="${RWLAB_SSH_CLIENT:-ssh}"
SSHD_BIN="${RWLAB_SSHD:-}"
TYPING_BUDGET_S="${RWLAB_TYPING_BUDGET_S:-20}"
RDP_TERM_CMD=()   # the command of rdp_session's xterm, bash when empty (scn_rdp_typed_ssh sets ssh)
# Volume knob for the HTTPS scenarios: cap every /bytes/N download at this many
# bytes (empty = no cap; the scenarios fetch 123 B to 4 MB).
MAX_DOWNLOAD_BYTES="${RWLAB_MAX_DOWNLOAD_BYTES:-}"
# srv's TLS server flight: RWLAB_SRV_CHAIN_PAD (0) extra 4096-bit RSA certificates sent after
# its own, as a public site sends its intermediates (real flights are 3-6 kB, the lab's own about
# 1 kB), and RWLAB_SRV_INITCWND, srv's initial congestion window in segments (empty: the
# kernel's 10); with a long chain and a window of 1-2 the flight waits for the client's ACKs.
# Both are read at `up`. RWLAB_SRV_RATE_KBIT (0: none) sends each direction of srv's line at
# that rate, so that a flight's segments pass the capture point spaced out as behind a slow
# link on the way (a 4 kB flight over 1.6 ms at 20000); read at each run.
SRV_CHAIN_PAD="${RWLAB_SRV_CHAIN_PAD:-0}"
SRV_INITCWND="${RWLAB_SRV_INITCWND:-}"
SRV_RATE_KBIT="${RWLAB_SRV_RATE_KBIT:-0}"
# revocation_tls: the responder's time per fetch, drawn from LOW:HIGH ms; RWLAB_RESPONDER_KEEP_ALIVE=1
# fetches over one connection kept open.
RESPONDER_MS="${RWLAB_RESPONDER_MS:-40:80}"
RESPONDER_KEEP_ALIVE="${RWLAB_RESPONDER_KEEP_ALIVE:-}"

SCENARIOS=(direct_tls proxied_tls direct_ssh_interactive jump_ssh_interactive ssh_tunnel vnc_session rdp_session
           scp_transfer ssh_local_forward vnc_typed_ssh routed_relay revocation_tls http_proxy_tls
           proxied_rdp proxied_ssh corp_proxy_direct_tls corp_proxy_tls direct_browser proxied_browser
           vnc_forwarded ssh_forwarded rdp_forwarded vnc_reverse webrtc_session webrtc_call
           webrtc_turn_session webrtc_turn_call webrtc_turn_tcp_session webrtc_turn_tcp_call
           ssh_nested routed_quic direct_quic rdp_typed_ssh kvm_typed_ssh)

log() { printf '[lab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
nsx() { local ns="$1"; shift; ip netns exec "$PFX$ns" "$@"; }
is_up() { ip netns list 2>/dev/null | grep -qw "${PFX}gw"; }

# ---------------------------------------------------------------- deps
DEPS=(iproute2 iputils-ping ethtool tcpdump tshark openssh-server openssh-client
      dante-server curl openssl procps xvfb x11vnc xterm xdotool x11-utils socat
      tigervnc-viewer xtightvncviewer
      xrdp freerdp2-x11 freerdp2-shadow-x11 nftables tinyproxy-bin netcat-openbsd chromium coturn
      wget proxychains4 golang-go openjdk-17-jdk-headless libcurl3-nss nss-plugin-pem  # the other HTTPS clients (RWLAB_TLS_CLIENT)
      dropbear-bin python3-paramiko putty-tools  # other ssh clients (helpers/ssh_{dropbear,plink}.sh, ssh_paramiko.py)
      ngtcp2-client ngtcp2-server golang-github-lucas-clemente-quic-go-dev)  # QUIC clients and server (routed_quic, direct_quic)
cmd_deps() {
    export DEBIAN_FRONTEND=noninteractive
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections || true
    flock /tmp/apt.lock apt-get update
    flock /tmp/apt.lock apt-get install -y --no-install-recommends "${DEPS[@]}"
}

# ---------------------------------------------------------------- pids
start_bg() {  # start_bg NAME NS LOGFILE CMD...  (records PID in $STATE/pids)
    local name="$1" ns="$2" logf="$3"; shift 3
    mkdir -p "$STATE/pids"
    ip netns exec "$PFX$ns" "$@" >"$logf" 2>&1 </dev/null &
    echo $! >"$STATE/pids/$name.pid"
}
alive() {  # alive PID: exists and is not a zombie
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n $st && $st != Z* ]]
}
stop_pid() {  # stop_pid PID: TERM, wait up to 3 s, then KILL
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
        stop_pid "$(cat "$f")"
        rm -f "$f"
    done
}
wait_port() {  # wait_port NS IP PORT [TIMEOUT_S]
    local ns="$1" ip="$2" port="$3" t="${4:-10}" i
    for i in $(seq $((t * 10))); do
        if nsx "$ns" bash -c "exec 3<>/dev/tcp/$ip/$port" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- topology
link() {  # link NS_A IF_A ADDR_A NS_B IF_B ADDR_B
    ip -n "$PFX$1" link add "$2" type veth peer name "$5" netns "$PFX$4"
    ip -n "$PFX$1" addr add "$3" dev "$2"
    ip -n "$PFX$4" addr add "$6" dev "$5"
    ip -n "$PFX$1" link set "$2" up
    ip -n "$PFX$4" link set "$5" up
    no_offloads "$1" "$2"
    no_offloads "$4" "$5"
}
no_offloads() {  # no_offloads NS DEV: the capture should show wire-sized packets
    if [[ $OFFLOADS == 1 ]]; then
        nsx "$1" ethtool -K "$2" tso on gso on gro on >/dev/null 2>&1 || true
        return
    fi
    nsx "$1" ethtool -K "$2" tso off gso off gro off >/dev/null 2>&1 || true
}
# Delay links. This kernel has no sch_netem, so the two "internet" links
# (inet<->srv, inet<->op) are TUN pairs joined by helpers/delayline.py, a
# userspace delay line (one-way delay each direction, seeded jitter, no
# reordering). Its settings live in $STATE/delay_NAME.json (re-read live).
dlink() {  # dlink NAME NS_A DEV_A ADDR_A NS_B DEV_B ADDR_B DELAY_MS [--tap]
    local name="$1" nsa="$2" deva="$3" addra="$4" nsb="$5" devb="$6" addrb="$7" d="$8" tap="${9:-}" i rt=()
    set_delay "$name" "$d" 0 1
    rm -f "$STATE/delay_$name.ready"
    if [[ $DELAY_RT_PRIO != 0 ]] && command -v chrt >/dev/null && chrt -f "$DELAY_RT_PRIO" true 2>/dev/null; then
        rt=(chrt -f "$DELAY_RT_PRIO")
    fi
    start_bg "delay_$name" "$nsa" "$STATE/logs/delay_$name.log" "${rt[@]}" "$PY" "$HELPERS/delayline.py" \
        --a-dev "$deva" --b-ns "$PFX$nsb" --b-dev "$devb" --ctl "$STATE/delay_$name.json" \
        --ready "$STATE/delay_$name.ready" $tap
    for i in $(seq 100); do [[ -f $STATE/delay_$name.ready ]] && break; sleep 0.05; done
    [[ -f $STATE/delay_$name.ready ]] || die "delay line $name did not start (see $STATE/logs/delay_$name.log)"
    ip -n "$PFX$nsa" addr add "$addra" dev "$deva"
    ip -n "$PFX$nsb" addr add "$addrb" dev "$devb"
    ip -n "$PFX$nsa" link set "$deva" up
    ip -n "$PFX$nsb" link set "$devb" up
    if [[ -n $tap ]]; then
        OFFLOADS=0 no_offloads "$nsa" "$deva"   # the delay line relays single frames
        OFFLOADS=0 no_offloads "$nsb" "$devb"
    fi
}
set_delay() {  # set_delay NAME DELAY_MS JITTER_MS SEED [LOSS_PCT REORDER_PCT RATE_KBIT QUEUE_MS JITTER_ORDER]  (one-way, each direction)
    local f="$STATE/delay_$1.json"
    printf '{"delay_ms": %s, "jitter_ms": %s, "seed": %s, "loss_pct": %s, "reorder_pct": %s, "rate_kbit": %s, "queue_ms": %s, "jitter_order": "%s"}\n' \
        "$2" "$3" "$4" "${5:-0}" "${6:-0}" "${7:-0}" "${8:-200}" "${9:-kept}" >"$f.tmp"
    mv -f "$f.tmp" "$f"
}
set_lan_loss() {  # set_lan_loss PCT: random loss on farm's eth0, both ways (0 = none)
    nsx farm nft delete table inet rwlab_lanloss 2>/dev/null || true
    awk -v p="$1" 'BEGIN{exit !(p > 0)}' || return 0
    local n
    n=$(awk -v p="$1" 'BEGIN{printf "%d", p * 100 + 0.5}')
    nsx farm nft -f - <<NFT
table inet rwlab_lanloss {
    chain lan_in { type filter hook input priority -300; policy accept; iifname "eth0" numgen random mod 10000 < $n drop; }
    chain lan_fwd { type filter hook forward priority -300; policy accept; numgen random mod 10000 < $n drop; }
    chain lan_out { type filter hook output priority -300; policy accept; oifname "eth0" numgen random mod 10000 < $n drop; }
}
NFT
}
set_link_delays() {  # set_link_delays OP_DELAY_MS OP_JITTER_MS NEAR_DELAY_MS NEAR_JITTER_MS SEED
    set_delay op "$1" "$2" "${5:-1}" "$LOSS_PCT" "$REORDER_PCT" "$OP_RATE_KBIT" "$OP_QUEUE_MS" "$JITTER_ORDER"
    set_delay srv "$3" "$4" "${5:-1}" "$LOSS_PCT" "$REORDER_PCT" "$SRV_RATE_KBIT" 200 "$JITTER_ORDER"
    [[ ! -f $STATE/lan_delay_line ]] ||
        set_delay lan "$LAN_DELAY_MS" "$LAN_JITTER_MS" "${5:-1}" 0 0 "$LAN_RATE_KBIT" "$LAN_QUEUE_MS"
    sleep 0.5   # delay line polls its control file every 0.2 s
}

gen_keys() {
    mkdir -p "$STATE/ssh" "$STATE/tls" "$STATE/logs" "$STATE/pids" "$STATE/home"
    chmod 700 "$STATE/ssh"
    [[ -f $STATE/ssh/host_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -f "$STATE/ssh/host_ed25519"
    [[ -f $STATE/ssh/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C rwlab -f "$STATE/ssh/id_ed25519"
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
EOF
    if [[ ! -f $STATE/tls/srv.crt ]]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
            -subj "/CN=$SRV_NAME" -addext "subjectAltName=DNS:$SRV_NAME,IP:$SRV" \
            -keyout "$STATE/tls/srv.key" -out "$STATE/tls/srv.crt" 2>/dev/null
    fi
}
srv_cert_chain() {  # the certificate file srv's https server sends (its own + RWLAB_SRV_CHAIN_PAD)
    local i chain="$STATE/tls/srv-chain-$SRV_CHAIN_PAD.crt"
    if [[ $SRV_CHAIN_PAD == 0 ]]; then echo "$STATE/tls/srv.crt"; return; fi
    if [[ ! -f $chain ]]; then
        cp "$STATE/tls/srv.crt" "$chain.tmp"
        for i in $(seq "$SRV_CHAIN_PAD"); do
            openssl req -x509 -newkey rsa:4096 -nodes -days 30 -subj "/O=rwlab/CN=rwlab intermediate $i" \
                -keyout /dev/null 2>/dev/null >>"$chain.tmp"
        done
        mv "$chain.tmp" "$chain"
    fi
    echo "$chain"
}
sshd_conf() {  # sshd_conf NAME LISTEN_IP
    cat >"$STATE/ssh/sshd_$1.conf" <<EOF
Port 22
ListenAddress $2
HostKey $STATE/ssh/host_ed25519
PidFile $STATE/ssh/sshd_$1.pid
AuthorizedKeysFile $STATE/ssh/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding yes
PermitTunnel yes
GatewayPorts no
X11Forwarding no
PrintMotd no
PrintLastLog no
UseDNS no
LogLevel VERBOSE
Subsystem sftp internal-sftp
EOF
}
danted_conf() {
    cat >"$STATE/danted.conf" <<EOF
logoutput: stderr
internal: $FARM port = 1080
external: $FARM
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {
    from: 0.0.0.0/0 to: 0.0.0.0/0
    log: connect disconnect
}
socks pass {
    from: 0.0.0.0/0 to: 0.0.0.0/0
    command: connect
    log: connect disconnect
}
EOF
}

cmd_up() {
    is_up && { log "lab already up (prefix $PFX)"; return 0; }
    for b in ip tcpdump sshd danted curl openssl ping; do
        command -v "$b" >/dev/null || die "missing $b: run '$0 deps'"
    done
    trap 'log "up failed, tearing down"; cmd_down' EXIT
    mkdir -p "$STATE"
    NEAR_DELAY_MS="${RWLAB_NEAR_DELAY_MS:-5}"
    echo "$NEAR_DELAY_MS" >"$STATE/near_delay_ms"
    if [[ $SRV_CHAIN_PAD != 0 || -n $SRV_INITCWND ]]; then
        echo "srv's TLS flight: its certificate and $SRV_CHAIN_PAD extra 4096-bit ones, initcwnd ${SRV_INITCWND:-10}" >"$STATE/srv_flight"
    else
        rm -f "$STATE/srv_flight"
    fi
    local ns
    for ns in "${NSLIST[@]}"; do
        # per-namespace resolver and hosts files (ip netns exec bind-mounts
        # them): name lookups stay inside the lab and never leave on the wire
        mkdir -p "/etc/netns/$PFX$ns"
        printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"/etc/netns/$PFX$ns/resolv.conf"
        printf '127.0.0.1 localhost %s\n%s %s\n%s farm.rwlab.test\n%s op.rwlab.test\n' \
            "$(hostname)" "$SRV" "$SRV_NAME" "$FARM" "$OP" >"/etc/netns/$PFX$ns/hosts"
        ip netns add "$PFX$ns"
        nsx "$ns" ip link set lo up
        nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    done
    mkdir -p "$STATE/logs" "$STATE/pids"
    if [[ ${RWLAB_LAN_DELAY_LINE:-0} == 1 ]]; then
        dlink lan gw lan0 "$GW_LAN/24" farm eth0 "$FARM/24" 0 --tap
        touch "$STATE/lan_delay_line"
    else
        rm -f "$STATE/lan_delay_line"
        link gw lan0 "$GW_LAN/24" farm eth0 "$FARM/24"
    fi
    link gw wan0 "$GW_WAN/30" inet gw0 "$INET_GW/30"
    dlink srv inet srv0 "$INET_SRV/24" srv eth0 "$SRV/24" "$NEAR_DELAY_MS"
    dlink op inet op0 "$INET_OP/24" op eth0 "$OP/24" 0
    nsx gw sysctl -qw net.ipv4.ip_forward=1
    nsx inet sysctl -qw net.ipv4.ip_forward=1
    nsx farm ip route add default via "$GW_LAN"
    nsx gw ip route add default via "$INET_GW"
    nsx inet ip route add "$LAN_NET" via "$GW_WAN"
    nsx inet ip route add unreachable default   # nothing leaves the lab
    nsx srv ip route add default via "$INET_SRV" ${SRV_INITCWND:+initcwnd "$SRV_INITCWND"}
    nsx op ip route add default via "$INET_OP"

    gen_keys
    mkdir -p /run/sshd   # sshd privilege-separation dir
    sshd_conf srv "$SRV"
    sshd_conf farm "$FARM"
    danted_conf
    local SSHD; SSHD="${SSHD_BIN:-$(command -v sshd)}"
    start_bg sshd_srv srv "$STATE/logs/sshd_srv.log" "$SSHD" -D -e -f "$STATE/ssh/sshd_srv.conf"
    start_bg sshd_farm farm "$STATE/logs/sshd_farm.log" "$SSHD" -D -e -f "$STATE/ssh/sshd_farm.conf"
    start_bg danted farm "$STATE/logs/danted.log" danted -f "$STATE/danted.conf" -p "$STATE/danted.pid" -N 1
    start_bg https_srv srv "$STATE/logs/https_srv.log" "$PY" "$HELPERS/https_server.py" \
        --bind "$SRV" --port 443 --cert "$(srv_cert_chain)" --key "$STATE/tls/srv.key"
    wait_port srv "$SRV" 22 || die "sshd on srv did not start"
    wait_port farm "$FARM" 22 || die "sshd on farm did not start"
    wait_port farm "$FARM" 1080 || die "danted on farm did not start"
    wait_port srv "$SRV" 443 || die "https server did not start"
    nsx farm ping -c1 -W2 "$OP" >/dev/null || die "farm cannot reach op"
    nsx farm ping -c1 -W2 "$SRV" >/dev/null || die "farm cannot reach srv"
    trap - EXIT
    log "lab up: namespaces ${NSLIST[*]/#/$PFX}; state in $STATE"
}

cmd_down() {
    local f ns p
    if [[ -d $STATE/pids ]]; then
        for f in "$STATE"/pids/*.pid; do
            [[ -f $f ]] || continue
            stop_pid "$(cat "$f")"; rm -f "$f"
        done
    fi
    for ns in "${NSLIST[@]}"; do
        ip netns list 2>/dev/null | grep -qw "$PFX$ns" || continue
        # anything still running inside our namespaces was started by the lab
        for p in $(ip netns pids "$PFX$ns" 2>/dev/null); do stop_pid "$p"; done
        ip netns del "$PFX$ns" 2>/dev/null || true
    done
    for ns in "${NSLIST[@]}"; do
        rm -f "/etc/netns/$PFX$ns/resolv.conf" "/etc/netns/$PFX$ns/hosts"
        rmdir "/etc/netns/$PFX$ns" 2>/dev/null || true
    done
    rmdir /etc/netns 2>/dev/null || true   # only if nothing else uses it
    rm -f "/tmp/.X${DISP_FARM_VNC}-lock" "/tmp/.X${DISP_FARM_RDP}-lock" "/tmp/.X${DISP_OP_RDP}-lock" 2>/dev/null || true
    log "lab down"
}

cmd_status() {
    ip netns list | grep "^$PFX" || echo "no lab namespaces"
    if [[ -d $STATE/pids ]]; then
        for f in "$STATE"/pids/*.pid; do
            [[ -f $f ]] || continue
            p=$(cat "$f"); printf '%-14s %s %s\n' "$(basename "$f" .pid)" "$p" "$(alive "$p" && echo alive || echo dead)"
        done
    fi
}

cmd_list() {
    cat <<EOF
direct_tls              farm curl -> https srv                      relayed=false app=tls
proxied_tls             op curl -> SOCKS5 (dante) on farm -> srv    relayed=true  app=tls
direct_ssh_interactive  farm types into ssh srv                     relayed=false app=ssh
jump_ssh_interactive    op types into ssh -J farm srv               relayed=true  app=ssh
ssh_tunnel              op ssh -D via farm, curl https srv bulk     relayed=true  app=tls (ssh tunnel)
vnc_session             op RFB client drives x11vnc on farm         relayed=true  app=vnc controlled=farm
rdp_session             op xfreerdp drives xrdp on farm             relayed=true  app=rdp controlled=farm
scp_transfer            farm scp ~2 MB file -> srv                  relayed=false app=ssh (bulk)
ssh_local_forward       op ssh -L via farm, curl https srv          relayed=true  app=tls (ssh tunnel)
vnc_typed_ssh           op types via VNC into farm's xterm ssh srv  relayed=true  app=ssh controlled=farm
rdp_typed_ssh           op types via RDP into farm's xterm ssh srv  relayed=true  app=ssh controlled=farm
kvm_typed_ssh           op types via an IP-KVM (VNC at 10.77.1.20) into farm's xterm ssh srv  relayed=true app=ssh controlled=farm
routed_relay            op routes IP via farm (ssh -w, NAT) -> srv  relayed=true  app=tls (routed, curl + ssh)
routed_quic             op routes IP via farm, fetches over QUIC    relayed=true  app=quic (routed, ngtcp2)
direct_quic             farm fetches from srv over QUIC (ngtcp2)    relayed=false app=quic
revocation_tls          farm TLS client fetches OCSP mid-handshake  relayed=false app=tls (+ http :80)
http_proxy_tls          op curl -> HTTP CONNECT (tinyproxy) on farm relayed=true  app=tls
proxied_rdp             op xfreerdp -> SOCKS5 (dante) on farm -> xrdp on farm  relayed=true app=rdp controlled=farm
proxied_ssh             op types into ssh srv via HTTP CONNECT (tinyproxy) on farm  relayed=true app=ssh
corp_proxy_direct_tls   farm curl -> company HTTP proxy (tinyproxy on srv) -> srv  relayed=false app=tls
corp_proxy_tls          op curl -> ssh -L via farm -> company HTTP proxy on srv   relayed=true  app=tls
direct_browser          farm chromium browses https srv             relayed=false app=tls
proxied_browser         op chromium -> SOCKS5 (dante) on farm -> srv  relayed=true app=tls
vnc_forwarded           op RFB client -> socat on srv (near) -> x11vnc on farm  relayed=true app=vnc controlled=farm
vnc_reverse             x11vnc on farm dials op's listening viewer  relayed=true  app=vnc controlled=farm
ssh_forwarded           op types into ssh -> socat on srv (near) -> farm sshd   relayed=true app=ssh controlled=farm
rdp_forwarded           op xfreerdp -> socat on srv (near) -> xrdp on farm      relayed=true app=rdp controlled=farm
webrtc_session          op chromium drives farm chromium's canvas screen over WebRTC (UDP)  relayed=true app=webrtc controlled=farm
webrtc_call             farm and op chromium in a WebRTC video call (UDP)  relayed=false app=webrtc
webrtc_turn_session     webrtc_session with farm's side relayed by TURN (coturn on srv)  relayed=true app=webrtc controlled=farm
webrtc_turn_call        webrtc_call with farm's side relayed by TURN (coturn on srv)  relayed=false app=webrtc
webrtc_turn_tcp_session webrtc_turn_session with farm's side on TURN over TCP (UDP blocked)  relayed=true app=webrtc controlled=farm
webrtc_turn_tcp_call    webrtc_turn_call with farm's side on TURN over TCP  relayed=false app=webrtc
ssh_nested              op types into ssh farm, whose shell runs ssh srv  relayed=true app=ssh
EOF
}

# ---------------------------------------------------------------- run helpers
SPEC=""    # flow spec file of the current run
spec() {   # spec ROLE APP SRC DST DPORT RELAYED [NOTE]
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "${7:-}" >>"$SPEC"
}
RUN_PIDS=()
RUN_CLEANUP=""   # a scenario may name a function here: run at its end, after RUN_PIDS are stopped
run_bg() {  # run_bg NS LOGFILE CMD...   (killed at scenario end)
    local ns="$1" logf="$2"; shift 2
    ip netns exec "$PFX$ns" "$@" >>"$logf" 2>&1 </dev/null &
    RUN_PIDS+=($!)
}
kill_run_pids() {  # newest first (x11vnc before its Xvfb, ...)
    local i
    for ((i = ${#RUN_PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${RUN_PIDS[$i]}"; done
    RUN_PIDS=()
}
ping_median() {  # ping_median NS DST -> median RTT ms
    nsx "$1" ping -n -c 7 -i 0.2 -W 2 "$2" 2>/dev/null |
        sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' | sort -n | awk '{a[NR]=$1} END{if(NR) print a[int((NR+1)/2)]}'
}
CURL_TLS=(curl -sS --max-time 20 --cacert "$STATE/tls/srv.crt" --resolve "$SRV_NAME:443:$SRV" -o /dev/null
          -w 'http=%{http_code} bytes=%{size_download} connect=%{time_connect} tls=%{time_appconnect} total=%{time_total}\n')
SSH=("${CLIENT_LIM[@]}" "$SSH_CLIENT" -F "$STATE/ssh/ssh_config")
REMOTE_SHELL="PS1='rwlab\$ ' exec bash --norc --noprofile -i"
openssh_at_least() {  # openssh_at_least BINARY MAJOR MINOR: its -V says OpenSSH_X.Y >= MAJOR.MINOR
    local v a b
    v="$("$1" -V 2>&1 | sed -n 's/^OpenSSH_\([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | head -n 1)"
    [[ -n $v ]] && read -r a b <<<"$v" && ((a > $2 || (a == $2 && b >= $3)))
}
# What the typed SSH sessions' keys look like on the wire (truth `ssh_keystroke_obfuscation`):
# off (client < 9.5), keys (the client holds each key to its ~20 ms clock) or chaff (keys and
# pings on every tick: the server answers pings from 9.5 on).
ssh_obfuscation() {
    local sshd="${SSHD_BIN:-$(command -v sshd)}"
    if ! openssh_at_least "$(command -v "$SSH_CLIENT")" 9 5; then echo off
    elif openssh_at_least "$sshd" 9 5; then echo chaff
    else echo keys; fi
}
dl() {  # dl PATH -> PATH, with /bytes/N capped at RWLAB_MAX_DOWNLOAD_BYTES
    local p="$1"
    if [[ -n $MAX_DOWNLOAD_BYTES && $p == /bytes/* ]] && (( ${p#/bytes/} > MAX_DOWNLOAD_BYTES )); then
        p="/bytes/$MAX_DOWNLOAD_BYTES"
    fi
    printf '%s' "$p"
}
dl_note() {  # appends the download cap and the HTTPS client to M_NOTE when they are set
    [[ -z $MAX_DOWNLOAD_BYTES ]] || M_NOTE="$M_NOTE; downloads capped at $MAX_DOWNLOAD_BYTES bytes (RWLAB_MAX_DOWNLOAD_BYTES)"
    [[ $TLS_CLIENT == curl ]] || M_NOTE="$M_NOTE; HTTPS client $TLS_CLIENT, not curl (RWLAB_TLS_CLIENT)"
}
tls_get() {  # tls_get NS URL [CURL OPTION...]: one fetch by TLS_CLIENT, curl's proxy options translated
    local ns="$1" url="$2" socks="" proxy="" connect="" conf
    shift 2
    if [[ $TLS_CLIENT == curl ]]; then
        nsx "$ns" "${CLIENT_LIM[@]}" "${CURL_TLS[@]}" "$@" "$url"
        return
    fi
    while (($#)); do
        case "$1" in
            --socks5) socks="$2"; shift 2 ;;
            --proxy) proxy="$2"; shift 2 ;;
            --connect-to) connect="${2#*:*:}"; connect="${connect%:*}"; shift 2 ;;  # NAME:P:ADDR:P
            *) log "tls_get: no $TLS_CLIENT equivalent of curl's $1"; return 2 ;;
        esac
    done
    case "$TLS_CLIENT" in
        python)
            nsx "$ns" "${CLIENT_LIM[@]}" "$PY" "$HELPERS/tls_fetch.py" --cafile "$STATE/tls/srv.crt" \
                ${connect:+--connect "$connect"} ${socks:+--socks5 "$socks"} ${proxy:+--proxy "$proxy"} "$url" ;;
        go)  # Go asks a proxy for the URL's name: the proxy resolves it (every namespace's hosts)
            if [[ ! -x $STATE/tls_fetch_go ]]; then
                command -v go >/dev/null || { log "go missing: apt-get install golang-go"; return 3; }
                GOCACHE="$STATE/gocache" go build -o "$STATE/tls_fetch_go" "$HELPERS/tls_fetch.go" || return 3
            fi
            nsx "$ns" "${CLIENT_LIM[@]}" "$STATE/tls_fetch_go" -cafile "$STATE/tls/srv.crt" \
                ${socks:+-socks5 "$socks"} ${proxy:+-proxy "$proxy"} "$url" ;;
        wget)
            local cmd=(wget -nv -O /dev/null --tries=1 --timeout=20 --ca-certificate="$STATE/tls/srv.crt")
            if [[ -n $socks ]]; then  # wget has no SOCKS: proxychains4 hooks its connect()
                command -v proxychains4 >/dev/null || { log "proxychains4 missing"; return 3; }
                conf="$STATE/proxychains-$ns.conf"
                printf 'strict_chain\nquiet_mode\ntcp_read_time_out 15000\ntcp_connect_time_out 8000\n[ProxyList]\nsocks5 %s %s\n' \
                    "${socks%:*}" "${socks##*:}" >"$conf"
                nsx "$ns" "${CLIENT_LIM[@]}" proxychains4 -q -f "$conf" "${cmd[@]}" "$url"
            else  # the proxy resolves the name (every namespace's hosts)
                nsx "$ns" "${CLIENT_LIM[@]}" env ${proxy:+https_proxy="$proxy"} "${cmd[@]}" "$url"
            fi ;;
        nss)  # libcurl built on NSS (Firefox's TLS library), driven through ctypes
            nsx "$ns" "${CLIENT_LIM[@]}" /usr/bin/python3 "$HELPERS/tls_fetch_nss.py" --cafile "$STATE/tls/srv.crt" \
                ${connect:+--connect "$connect"} ${socks:+--socks5 "$socks"} ${proxy:+--proxy "$proxy"} "$url" ;;
        java)  # a new JVM per fetch, as a build tool's: JSSE's handshake runs cold
            if [[ ! -f $STATE/java/TlsFetch.class ]]; then
                command -v javac >/dev/null || { log "javac missing: apt-get install openjdk-17-jdk-headless"; return 3; }
                javac -d "$STATE/java" "$HELPERS/TlsFetch.java" || return 3
            fi
            nsx "$ns" "${CLIENT_LIM[@]}" java -cp "$STATE/java" TlsFetch --cafile "$STATE/tls/srv.crt" \
                ${socks:+--socks5 "$socks"} ${proxy:+--proxy "$proxy"} "$url" ;;
        *) log "RWLAB_TLS_CLIENT=$TLS_CLIENT: curl, wget, python, go, java or nss"; return 2 ;;
    esac
}

# Per-scenario metadata: set by each scn_* function.
M_RELAYED=false; M_APP=""; M_KIND=""; M_CTRL=""; M_HUMAN=farm; M_EVENTS=""; M_NOTE=""

# ---------------------------------------------------------------- scenarios
# Each scn_NAME OUT SEED runs bounded traffic and declares its flows with spec.

# Chromium without a screen, a first run or anything of its own on the network: every
# scenario's browser starts from these (browser, WebRTC, QUIC).
HEADLESS_CHROMIUM=(chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run
                   --disable-background-networking --disable-component-update --disable-sync
                   --disable-default-apps --disable-extensions)

seeded_pause() {  # seeded_pause SEED I SPAN [BASE]: sleep 0.5 s + up to SPAN s, drawn from SEED*100+BASE+I
    sleep "$(awk -v s="$1" -v i="$2" -v w="$3" -v b="${4:-0}" 'BEGIN{srand(s*100+b+i); printf "%.2f", 0.5+w*rand()}')"
}

browse() {  # browse NS OUT SEED [CURL OPTION...]: 5-7 seeded https fetches from srv, seeded pauses
    local ns="$1" out="$2" seed="$3" i n sizes
    shift 3
    n=$(( 5 + seed % 3 ))
    for i in $(seq "$n"); do
        sizes=( / /bytes/20000 /bytes/300000 /bytes/1500000 )
        tls_get "$ns" "https://$SRV_NAME$(dl "${sizes[$(( (seed + i) % 4 ))]}")" "$@" >>"$out/scenario.log" 2>&1
        seeded_pause "$seed" "$i" 2 0
    done
}

scn_direct_tls() {
    local out="$1" seed="$2"
    M_RELAYED=false; M_APP=tls; M_HUMAN=farm
    M_NOTE="user at the laptop browses https srv (curl), several connections"
    dl_note
    spec direct tls "$FARM" "$SRV" 443 false "farm curl -> srv"
    browse farm "$out" "$seed"
}

scn_proxied_tls() {
    local out="$1" seed="$2"
    M_RELAYED=true; M_APP=tls; M_KIND=socks5; M_HUMAN=op; M_CTRL=""
    M_NOTE="operator's curl uses the dante SOCKS5 proxy on the laptop; TLS is end-to-end op<->srv"
    dl_note
    spec operator_leg socks5 "$OP" "$FARM" 1080 true "op -> farm SOCKS5 (carries the TLS session)"
    spec relayed_egress tls "$FARM" "$SRV" 443 true "farm (dante) -> srv, TLS client is op"
    browse op "$out" "$seed" --socks5 "$FARM:1080"
}

# A real browser (Debian's chromium, headless) on a seeded site of srv (helpers/https_server.py
# /page/N): each page loads a stylesheet, a script and 3-6 images, then moves on after a seeded
# pause, for about BUDGET seconds in one browser process (connection reuse, parallel connections,
# session resumption: what a person's browser does, not curl's one fetch per process).
BROWSER_BUDGET_S="${RWLAB_BROWSER_BUDGET_S:-20}"
browser() {  # browser NS OUT SEED [CHROMIUM OPTION...]
    local ns="$1" out="$2" seed="$3" profile pid pages0 pages
    shift 3
    command -v chromium >/dev/null || { log "chromium missing: apt-get install chromium"; return 1; }
    profile="$STATE/chromium-$ns"
    rm -rf "$profile"
    pages0=$(grep -c 'GET /page/' "$STATE/logs/https_srv.log" 2>/dev/null || true)
    # on a slow machine every process of the browser shares the quota
    nsx "$ns" "${CLIENT_LIM[@]}" "${HEADLESS_CHROMIUM[@]}" --disable-features=MediaRouter,OptimizationHints \
        --ignore-certificate-errors --user-data-dir="$profile" "$@" \
        "https://$SRV_NAME/page/$((seed * 100))" >>"$out/chromium-$ns.log" 2>&1 </dev/null &
    pid=$!
    sleep "$BROWSER_BUDGET_S"
    stop_pid "$pid"
    # its helper processes (renderer, network service) end with it, still writing the profile
    # for a moment; any left after 5 s are killed
    for _ in $(seq 50); do pgrep -f -- "--user-data-dir=$profile" >/dev/null || break; sleep 0.1; done
    pkill -KILL -f -- "--user-data-dir=$profile" 2>/dev/null || true
    rm -rf "$profile" 2>/dev/null || true
    pages=$(( $(grep -c 'GET /page/' "$STATE/logs/https_srv.log" 2>/dev/null || true) - ${pages0:-0} ))
    echo "browser: chromium loaded $pages pages of srv's site" >>"$out/scenario.log"
    ((pages > 0))
}

scn_direct_browser() {
    local out="$1" seed="$2"
    M_RELAYED=false; M_APP=tls; M_HUMAN=farm
    M_NOTE="user at the laptop browses srv's seeded site with chromium (headless), ${BROWSER_BUDGET_S} s"
    spec direct tls "$FARM" "$SRV" 443 false "farm chromium -> srv"
    browser farm "$out" "$seed"
}

scn_proxied_browser() {
    local out="$1" seed="$2"
    M_RELAYED=true; M_APP=tls; M_KIND=socks5; M_HUMAN=op; M_CTRL=""
    M_NOTE="operator's chromium (headless) browses srv's seeded site through the dante SOCKS5 proxy on the laptop (names resolved by the proxy), ${BROWSER_BUDGET_S} s; TLS is end-to-end op<->srv"
    spec operator_leg socks5 "$OP" "$FARM" 1080 true "op chromium -> farm SOCKS5 (carries the TLS sessions)"
    spec relayed_egress tls "$FARM" "$SRV" 443 true "farm (dante) -> srv, TLS client is op's chromium"
    browser op "$out" "$seed" --proxy-server="socks5://$FARM:1080"
}

# WebRTC between two real browsers (Debian's chromium, headless): a remote desktop
# (webrtc_session, as Chrome Remote Desktop and the WebRTC IP-KVMs work) and a video call
# (webrtc_call). helpers/webrtc_signal.py on srv serves helpers/webrtc_page.html and relays one
# SDP offer and answer (non-trickle). No STUN or TURN server: host candidates only (the lab has
# no NAT), UDP only, so op and farm talk directly over one UDP flow through the gateway; with
# WebRtcHideLocalIpsWithMdns off the candidates carry the real addresses. The farm page reaches
# the signalling server through the gateway (declared), op's goes op -> inet -> srv (not seen).
WEBRTC_BUDGET_S="${RWLAB_WEBRTC_BUDGET_S:-40}"
WEBRTC_MAX_KBPS="${RWLAB_WEBRTC_MAX_KBPS:-0}"   # webrtc_session: cap on the screen's bitrate (0: none)
WEBRTC_PORT=8020
# shellcheck disable=SC2054  # the commas are --disable-features' list
WEBRTC_CHROMIUM=("${HEADLESS_CHROMIUM[@]}" --disable-features=MediaRouter,OptimizationHints,WebRtcHideLocalIpsWithMdns
                 --autoplay-policy=no-user-gesture-required --disable-background-timer-throttling
                 --disable-renderer-backgrounding --disable-backgrounding-occluded-windows --window-size=1300,800
                 "--unsafely-treat-insecure-origin-as-secure=http://$SRV:$WEBRTC_PORT")

descendants() {  # descendants PID: every process below PID
    local c
    for c in $(ps -e -o pid=,ppid= | awk -v p="$1" '$2 == p {print $1}'); do
        echo "$c"
        descendants "$c"
    done
}
stop_tree() {  # stop_tree PID: stop a process and then whatever of its tree is left (5 s, then KILL)
    local p="$1" kids i k c
    kids=$(descendants "$p")
    stop_pid "$p"
    for i in $(seq 50); do
        k=""
        for c in $kids; do
            if alive "$c"; then k="$k $c"; fi
        done
        [[ -n $k ]] || return 0
        sleep 0.1
    done
    for c in $k; do kill -KILL "$c" 2>/dev/null || true; done
}

webrtc_browser() {  # webrtc_browser NS OUT ROLE [CHROMIUM OPTION...]: chromium on the role's page; pid in WEBRTC_PID
    local ns="$1" out="$2" role="$3"
    shift 3
    rm -rf "$STATE/chromium-webrtc-$role"
    ip netns exec "$PFX$ns" "${WEBRTC_CHROMIUM[@]}" --user-data-dir="$STATE/chromium-webrtc-$role" "$@" \
        "http://$SRV:$WEBRTC_PORT/$role" >>"$out/chromium-$role.log" 2>&1 </dev/null &
    WEBRTC_PID=$!
    RUN_PIDS+=("$WEBRTC_PID")
}

webrtc_seen() {  # webrtc_seen OUT ROLE EVENT: the role's page has reported EVENT
    "$PY" -c 'import json,sys
st = json.load(open(sys.argv[1]))
sys.exit(0 if sys.argv[3] in st["roles"].get(sys.argv[2], {}).get("seen", []) or st.get(sys.argv[3]) is True else 1)' \
        "$1/webrtc_status.json" "$2" "$3" 2>/dev/null
}

# A TURN server (coturn) on srv, near the laptop, as a vendor's relay would be (Chrome Remote
# Desktop's, a KVM's cloud): the webrtc_turn_* scenarios give the laptop's page only relayed
# candidates from it. Long-term credentials rwlab:rwlab; UDP relay ports 49160-49400 on srv.
TURN_PORT=3478
start_turn() {  # start_turn OUT
    local out="$1" i
    command -v turnserver >/dev/null || { log "turnserver missing: apt-get install coturn"; return 3; }
    run_bg srv "$out/turnserver.log" turnserver -n --listening-ip="$SRV" --relay-ip="$SRV" \
        --listening-port="$TURN_PORT" --min-port=49160 --max-port=49400 --lt-cred-mech \
        --user=rwlab:rwlab --realm=rwlab.test --fingerprint --no-tls --no-dtls --no-tcp-relay \
        --no-cli --log-file=stdout --simple-log --pidfile="$STATE/turnserver.pid"
    for i in $(seq 100); do
        nsx srv ss -Hlun "sport = :$TURN_PORT" | grep -q . && return 0
        sleep 0.1
    done
    log "turnserver did not listen (see $out/turnserver.log)"; return 1
}

webrtc_run() {  # webrtc_run MODE OUT SEED [turn|turn-tcp]: session (host on farm, viewer on op) or call (caller on farm, callee on op)
    local mode="$1" out="$2" seed="$3" via="${4:-}" a b pa pb i rc=0 fake=() turn=()
    command -v chromium >/dev/null || { log "chromium missing: apt-get install chromium"; return 3; }
    if [[ $mode == session ]]; then a=host; b=viewer; else a=caller; b=callee; fi
    [[ $mode == call ]] && fake=(--use-fake-device-for-media-stream --use-fake-ui-for-media-stream)
    if [[ $via == turn* ]]; then
        start_turn "$out" || return
        # turn-tcp: the laptop reaches the server over TCP (a network that lets no UDP out);
        # coturn relays to the far peer over UDP as before
        turn=(--turn "turn:$SRV:$TURN_PORT?transport=$([[ $via == turn-tcp ]] && echo tcp || echo udp)"
              --turn-user rwlab --turn-pass rwlab --relay-roles "$a")
    fi
    run_bg srv "$out/webrtc_signal.log" "$PY" "$HELPERS/webrtc_signal.py" --bind "$SRV" --port "$WEBRTC_PORT" \
        --mode "$mode" --seed "$seed" --budget "$WEBRTC_BUDGET_S" --max-kbps "$WEBRTC_MAX_KBPS" --log "$out/webrtc_log.jsonl" \
        --status "$out/webrtc_status.json" --events "$out/webrtc_events.json" "${turn[@]}"
    wait_listening srv "$WEBRTC_PORT" || { log "webrtc_signal.py did not listen"; return 1; }
    webrtc_browser farm "$out" "$a" "${fake[@]}"; pa=$WEBRTC_PID
    for i in $(seq 300); do webrtc_seen "$out" "$a" offer && break; sleep 0.1; done
    webrtc_seen "$out" "$a" offer || { log "the $a page posted no offer (see $out/chromium-$a.log)"; return 1; }
    webrtc_browser op "$out" "$b" "${fake[@]}"; pb=$WEBRTC_PID
    # input (or the call) takes the budget; setup, the end and the last stats take a few s more
    for i in $(seq $(( (WEBRTC_BUDGET_S + 60) * 5 ))); do
        webrtc_seen "$out" "$a" final && webrtc_seen "$out" "$b" final && break
        sleep 0.2
    done
    sleep 2   # the pages close their peer connections (DTLS close_notify, SCTP ABORT)
    stop_tree "$pb"; stop_tree "$pa"
    rm -rf "$STATE/chromium-webrtc-$a" "$STATE/chromium-webrtc-$b"
    "$PY" "$HELPERS/webrtc_signal.py" --check "$out/webrtc_status.json" >>"$out/scenario.log" 2>&1 || rc=1
    grep '^webrtc' "$out/scenario.log" | tail -n 3 >&2
    return "$rc"
}

signalling_spec() {  # signalling_spec ROLE: the farm page's flows to webrtc_signal.py, declared direct
    spec direct http "$FARM" "$SRV" "$WEBRTC_PORT" false "farm $1 page -> signalling server on srv (page, SDP offer/answer, progress logs)"
}

scn_webrtc_session() {
    local out="$1" seed="$2"
    M_RELAYED=true; M_APP=webrtc; M_KIND=remote_desktop; M_CTRL=farm; M_HUMAN=op; M_EVENTS=webrtc_events.json
    M_NOTE="remote desktop over WebRTC (as Chrome Remote Desktop, WebRTC IP-KVMs): the laptop's chromium (headless) streams a canvas screen (captureStream, a frame on every change, cursor blink 500 ms) and repaints on each input; the operator's chromium sends seeded pointer moves, drags and keys on a data channel for ${WEBRTC_BUDGET_S} s; host candidates only, direct UDP op<->farm"
    spec operator_leg webrtc "$OP" "$FARM" 'udp:*' true "op viewer <-> farm host: ICE/STUN, DTLS, SRTP screen video farm->op, SCTP data channel with the input op->farm"
    signalling_spec host
    webrtc_run session "$out" "$seed"
}

scn_webrtc_call() {
    local out="$1" seed="$2"
    M_RELAYED=false; M_APP=webrtc; M_KIND=""; M_CTRL=""; M_HUMAN=farm; M_EVENTS=""
    M_NOTE="video call over WebRTC between the person at the laptop and a colleague far away (op): both chromiums (headless) send getUserMedia video (640x480 VP8, about 20 frames/s from the fake camera) and Opus audio from Chromium's fake devices for ${WEBRTC_BUDGET_S} s; host candidates only, direct UDP op<->farm; not remote control"
    spec direct webrtc "$FARM" "$OP" 'udp:*' false "farm caller <-> op callee: ICE/STUN, DTLS, SRTP audio+video both ways"
    signalling_spec caller
    webrtc_run call "$out" "$seed"
}

# The WebRTC scenarios through coturn on srv: MODE session (relayed, the laptop controlled by
# op) or call (a negative), VIA turn (UDP to the server) or turn-tcp (TCP to it).
webrtc_turn_scenario() {  # webrtc_turn_scenario MODE VIA OUT SEED NOTE LEG_NOTE
    local mode="$1" via="$2" out="$3" seed="$4" port="udp:$TURN_PORT"
    [[ $via == turn-tcp ]] && port="$TURN_PORT"
    if [[ $mode == session ]]; then
        M_RELAYED=true; M_APP=webrtc; M_KIND=turn; M_CTRL=farm; M_HUMAN=op; M_EVENTS=webrtc_events.json
        spec operator_leg webrtc "$FARM" "$SRV" "$port" true "$6"
        signalling_spec host
    else
        M_RELAYED=false; M_APP=webrtc; M_KIND=""; M_CTRL=""; M_HUMAN=farm; M_EVENTS=""
        spec direct webrtc "$FARM" "$SRV" "$port" false "$6"
        signalling_spec caller
    fi
    M_NOTE="$5"
    webrtc_run "$mode" "$out" "$seed" "$via"
}

scn_webrtc_turn_session() {
    webrtc_turn_scenario session turn "$1" "$2" \
        "webrtc_session through a TURN server near the laptop (coturn on srv, as Chrome Remote Desktop's relays): the laptop's chromium may only use relayed candidates, so the session is one UDP flow farm <-> srv:$TURN_PORT at the gateway (Send/Data indications, then ChannelData) and srv <-> op beyond it, which the gateway does not see; the ICE checks go end to end, farm <-> op" \
        "farm host <-> TURN on srv, relaying for op's viewer: ICE/STUN inside TURN, DTLS, SRTP screen video, SCTP input"
}

scn_webrtc_turn_call() {
    webrtc_turn_scenario call turn "$1" "$2" \
        "webrtc_call through a TURN server near the laptop (coturn on srv): the person at the laptop in a video call with a far colleague (op), the laptop's chromium on relayed candidates only; not remote control" \
        "farm caller <-> TURN on srv, relaying for op's callee: ICE/STUN inside TURN, DTLS, SRTP audio+video both ways"
}

scn_webrtc_turn_tcp_session() {
    webrtc_turn_scenario session turn-tcp "$1" "$2" \
        "webrtc_turn_session with the laptop's side on TURN over TCP (RFC 8656 12.5: a network that lets no UDP out): one TCP flow farm -> srv:$TURN_PORT at the gateway carrying STUN messages and padded ChannelData, UDP from srv to op beyond it; the ICE checks go end to end, farm <-> op" \
        "farm host -> TURN on srv over TCP, relaying for op's viewer: ICE/STUN inside TURN, DTLS, SRTP screen video, SCTP input"
}

scn_webrtc_turn_tcp_call() {
    webrtc_turn_scenario call turn-tcp "$1" "$2" \
        "webrtc_turn_call with the laptop's side on TURN over TCP: a video call with a far colleague (op); not remote control" \
        "farm caller -> TURN on srv over TCP, relaying for op's callee: ICE/STUN inside TURN, DTLS, SRTP audio+video both ways"
}

start_tinyproxy() {  # start_tinyproxy OUT PORT [NS ADDR LISTEN_PORT ALLOW]: CONNECT to PORT only
    local ns="${3:-farm}" addr="${4:-$FARM}" port="${5:-8888}" allow="${6:-$OP}"
    printf '%s\n' "Port $port" "Listen $addr" "Timeout 60" "Allow $allow" "ConnectPort $2" \
        "MaxClients 20" "User nobody" "Group nogroup" "LogLevel Info" >"$STATE/tinyproxy-$ns.conf"
    run_bg "$ns" "$1/tinyproxy-$ns.log" tinyproxy -d -c "$STATE/tinyproxy-$ns.conf"
    wait_port "$ns" "$addr" "$port" 15 || { log "tinyproxy did not listen"; return 1; }
}

# The company's web proxy, beyond the gateway (on srv): every egress TLS flow of the laptop is
# an HTTP CONNECT to it, so the sensor sees TLS inside CONNECT.
scn_corp_proxy_direct_tls() {
    local out="$1" seed="$2"
    M_RELAYED=false; M_APP=tls; M_HUMAN=farm
    M_NOTE="user at the laptop browses https srv through the company's HTTP proxy (tinyproxy on srv:3128)"
    dl_note
    command -v tinyproxy >/dev/null || { log "tinyproxy missing"; return 3; }
    spec direct tls "$FARM" "$SRV" 3128 false "farm curl -> srv:3128 CONNECT srv:443 (TLS inside)"
    start_tinyproxy "$out" 443 srv "$SRV" 3128 "$FARM" || return 1
    browse farm "$out" "$seed" --proxy "http://$SRV:3128" --connect-to "$SRV_NAME:443:$SRV:443"
}

scn_corp_proxy_tls() {
    local out="$1" seed="$2" i tpid
    M_RELAYED=true; M_APP=tls; M_KIND=ssh_local_forward; M_HUMAN=op
    M_NOTE="operator runs ssh -N -L 3128:srv:3128 root@farm and curls https srv through the company's HTTP proxy (tinyproxy on srv:3128) over it"
    dl_note
    command -v tinyproxy >/dev/null || { log "tinyproxy missing"; return 3; }
    spec operator_leg ssh "$OP" "$FARM" 22 true "op -> farm ssh -L (tunnel)"
    spec relayed_egress tls "$FARM" "$SRV" 3128 true "farm sshd -> srv:3128 CONNECT srv:443, TLS client is op"
    start_tinyproxy "$out" 443 srv "$SRV" 3128 "$FARM" || return 1
    ip netns exec "${PFX}op" "${SSH[@]}" -N -L "127.0.0.1:3128:$SRV:3128" "root@$FARM" >>"$out/scenario.log" 2>&1 </dev/null &
    tpid=$!; RUN_PIDS+=("$tpid")
    for i in $(seq 150); do  # ss, not a probe connection (see ssh_local_forward)
        [[ -n $(nsx op ss -Hltn "sport = :3128") ]] && break
        sleep 0.1
    done
    [[ -n $(nsx op ss -Hltn "sport = :3128") ]] || { log "ssh -L did not come up"; return 1; }
    browse op "$out" "$seed" --proxy "http://127.0.0.1:3128" --connect-to "$SRV_NAME:443:$SRV:443"
    stop_pid "$tpid"
}

scn_http_proxy_tls() {
    local out="$1" seed="$2"
    M_RELAYED=true; M_APP=tls; M_KIND=http_connect; M_HUMAN=op; M_CTRL=""
    M_NOTE="operator's curl uses tinyproxy (HTTP CONNECT) on the laptop; TLS is end-to-end op<->srv"
    dl_note
    command -v tinyproxy >/dev/null || { log "tinyproxy missing"; return 3; }
    spec operator_leg http "$OP" "$FARM" 8888 true "op -> farm HTTP CONNECT (carries the TLS session)"
    spec relayed_egress tls "$FARM" "$SRV" 443 true "farm (tinyproxy) -> srv, TLS client is op"
    start_tinyproxy "$out" 443 || return 1
    # The proxy resolves nothing: curl asks it to CONNECT to srv's address (--connect-to).
    browse op "$out" "$seed" --proxy "http://$FARM:8888" --connect-to "$SRV_NAME:443:$SRV:443"
}

scn_direct_ssh_interactive() {
    local out="$1" seed="$2"
    M_RELAYED=false; M_APP=ssh; M_HUMAN=farm; M_EVENTS=keystrokes.json
    M_NOTE="human at the laptop types into ssh srv (pty driver, seeded key timing)"
    spec direct ssh "$FARM" "$SRV" 22 false "farm interactive ssh -> srv"
    nsx farm "$PY" "$HELPERS/typist.py" --seed "$seed" --budget "$TYPING_BUDGET_S" --person "$TYPIST" --label direct_ssh \
        --events "$out/keystrokes.json" --transcript "$out/transcript.txt" -- \
        "${SSH[@]}" -tt "root@$SRV" "$REMOTE_SHELL" >>"$out/scenario.log" 2>&1
}

scn_jump_ssh_interactive() {
    local out="$1" seed="$2"
    M_RELAYED=true; M_APP=ssh; M_KIND=ssh_jump; M_HUMAN=op; M_EVENTS=keystrokes.json
    M_NOTE="operator types into ssh -J root@farm root@srv; farm forwards (direct-tcpip)"
    spec operator_leg ssh "$OP" "$FARM" 22 true "op -> farm ssh (jump, carries inner ssh)"
    spec relayed_egress ssh "$FARM" "$SRV" 22 true "farm sshd -> srv:22 (inner ssh client is op)"
    nsx op "$PY" "$HELPERS/typist.py" --seed "$seed" --budget "$TYPING_BUDGET_S" --person "$TYPIST" --label jump_ssh \
        --events "$out/keystrokes.json" --transcript "$out/transcript.txt" -- \
        "${SSH[@]}" -J "root@$FARM" -tt "root@$SRV" "$REMOTE_SHELL" >>"$out/scenario.log" 2>&1
}

# The classic stepping stone: the operator logs in to the laptop and runs ssh onward from
# that shell. The laptop's own client sends each key it reads from its pty (on its own clock,
# with chaff, when it is OpenSSH >= 9.5 and RWLAB_SSH_CLIENT names it for the laptop too).
scn_ssh_nested() {
    local out="$1" seed="$2" inner
    M_RELAYED=true; M_APP=ssh; M_KIND=ssh_nested; M_HUMAN=op; M_EVENTS=keystrokes.json
    M_NOTE="operator types into ssh root@farm, whose shell runs ssh root@srv (the laptop's own client)"
    spec operator_leg ssh "$OP" "$FARM" 22 true "op -> farm ssh (a shell, whose ssh goes on)"
    spec relayed_egress ssh "$FARM" "$SRV" 22 true "farm's own ssh client -> srv:22, typed from op"
    inner=$(printf '%q ' "${SSH[@]}" -tt "root@$SRV" "$REMOTE_SHELL")
    nsx op "$PY" "$HELPERS/typist.py" --seed "$seed" --budget "$TYPING_BUDGET_S" --person "$TYPIST" --label ssh_nested \
        --events "$out/keystrokes.json" --transcript "$out/transcript.txt" -- \
        "${SSH[@]}" -tt "root@$FARM" "$inner" >>"$out/scenario.log" 2>&1
}

# vnc_forwarded's forwarder (start_forwarder) in front of the laptop's sshd: the operator
# types into a shell on the laptop over ssh to srv:2222.
scn_ssh_forwarded() {
    local out="$1" seed="$2"
    M_RELAYED=true; M_APP=ssh; M_KIND=forwarder; M_CTRL=farm; M_HUMAN=op; M_EVENTS=keystrokes.json
    M_NOTE="operator types into ssh to the laptop's sshd through socat on srv (near the laptop)"
    spec operator_leg ssh "$SRV" "$FARM" 22 true "srv socat (forwarding for op) -> farm sshd"
    start_forwarder 2222 22 "$out" || return
    nsx op "$PY" "$HELPERS/typist.py" --seed "$seed" --budget "$TYPING_BUDGET_S" --person "$TYPIST" --label ssh_forwarded \
        --events "$out/keystrokes.json" --transcript "$out/transcript.txt" -- \
        "${SSH[@]}" -p 2222 -tt "root@$SRV" "$REMOTE_SHELL" >>"$out/scenario.log" 2>&1
}

scn_proxied_ssh() {
    local out="$1" seed="$2" proxy_cmd
    M_RELAYED=true; M_APP=ssh; M_HUMAN=op; M_EVENTS=keystrokes.json
    command -v nc >/dev/null || { log "nc missing"; return 3; }
    if [[ ${RWLAB_SSH_PROXY:-http} == socks ]]; then  # dante on the laptop, as proxied_tls
        M_KIND=socks5
        M_NOTE="operator types into ssh root@srv whose ProxyCommand is nc -X 5 through dante on the laptop"
        spec operator_leg ssh "$OP" "$FARM" 1080 true "op -> farm SOCKS5 (carries the ssh session)"
        spec relayed_egress ssh "$FARM" "$SRV" 22 true "farm danted -> srv:22 (ssh client is op)"
        proxy_cmd="nc -X 5 -x $FARM:1080 %h %p"
    else
        M_KIND=http_connect
        M_NOTE="operator types into ssh root@srv whose ProxyCommand is nc -X connect through tinyproxy on the laptop"
        command -v tinyproxy >/dev/null || { log "tinyproxy missing"; return 3; }
        spec operator_leg ssh "$OP" "$FARM" 8888 true "op -> farm HTTP CONNECT (carries the ssh session)"
        spec relayed_egress ssh "$FARM" "$SRV" 22 true "farm tinyproxy -> srv:22 (ssh client is op)"
        start_tinyproxy "$out" 22 || return 1
        proxy_cmd="nc -X connect -x $FARM:8888 %h %p"
    fi
    nsx op "$PY" "$HELPERS/typist.py" --seed "$seed" --budget "$TYPING_BUDGET_S" --person "$TYPIST" --label proxied_ssh \
        --events "$out/keystrokes.json" --transcript "$out/transcript.txt" -- \
        "${SSH[@]}" -o "ProxyCommand=$proxy_cmd" -tt "root@$SRV" "$REMOTE_SHELL" \
        >>"$out/scenario.log" 2>&1
}

scn_ssh_tunnel() {
    local out="$1" seed="$2" i n sizes tpid
    M_RELAYED=true; M_APP=tls; M_KIND=ssh_dynamic_forward; M_HUMAN=op
    M_NOTE="operator runs ssh -D 1081 root@farm and curls https srv through it (bulk)"
    dl_note
    spec operator_leg ssh "$OP" "$FARM" 22 true "op -> farm ssh -D (tunnel)"
    spec relayed_egress tls "$FARM" "$SRV" 443 true "farm sshd -> srv:443, TLS client is op"
    ip netns exec "${PFX}op" "${SSH[@]}" -N -D 127.0.0.1:1081 "root@$FARM" >>"$out/scenario.log" 2>&1 </dev/null &
    tpid=$!; RUN_PIDS+=("$tpid")
    wait_port op 127.0.0.1 1081 15 || { log "ssh -D did not come up"; return 1; }
    n=$(( 4 + seed % 3 ))
    for i in $(seq "$n"); do
        sizes=( /bytes/500000 /bytes/2000000 /bytes/4000000 / )
        tls_get op "https://$SRV_NAME$(dl "${sizes[$(( (seed + i) % 4 ))]}")" --socks5 127.0.0.1:1081 >>"$out/scenario.log" 2>&1
        seeded_pause "$seed" "$i" 1.5 0
    done
    stop_pid "$tpid"
}

start_xvfb() {  # start_xvfb NS DISPLAY GEOMETRY LOG
    local ns="$1" d="$2" g="$3" logf="$4" i
    rm -f "/tmp/.X$d-lock"
    run_bg "$ns" "$logf" Xvfb ":$d" -screen 0 "$g" -nolisten tcp -noreset
    for i in $(seq 50); do
        nsx "$ns" env DISPLAY=":$d" xdpyinfo >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    log "Xvfb :$d did not start"; return 1
}

# The laptop's desktop for the VNC scenarios: Xvfb + xterm + x11vnc on farm:5900, with the
# VNC knobs (M_NOTE says which were set).
# Status 3 when x11vnc or Xvfb is missing, as a scenario's dependency.
start_farm_vnc() {  # start_farm_vnc OUT [HOST:PORT: dial that listening viewer instead]
    local out="$1" dial="${2:-}" opts=() size="96x36" w h
    command -v x11vnc >/dev/null && command -v Xvfb >/dev/null || { log "x11vnc/Xvfb missing"; return 3; }
    if [[ -n $VNC_GEOMETRY ]]; then
        [[ $VNC_GEOMETRY =~ ^([0-9]+)x([0-9]+)x(8|16|24)$ ]] ||
            { log "RWLAB_VNC_GEOMETRY must be WIDTHxHEIGHTxDEPTH (e.g. 1920x1080x24)"; return 2; }
        w=${BASH_REMATCH[1]}; h=${BASH_REMATCH[2]}
        size="$(( w / 6 ))x$(( h / 13 - 1 ))"  # xterm's default font is 6x13
        M_NOTE="$M_NOTE; the laptop's screen is $VNC_GEOMETRY, its xterm $size"
    fi
    start_xvfb farm "$DISP_FARM_VNC" "${VNC_GEOMETRY:-800x600x24}" "$out/xvfb_farm.log"
    run_bg farm "$out/xterm.log" env -C "$STATE/home" DISPLAY=":$DISP_FARM_VNC" xterm -geometry "$size+0+0" -l -lf "$out/farm_terminal.txt" -e bash --norc --noprofile
    [[ -n $VNC_SCALE ]] && opts=(-scale "$VNC_SCALE")
    [[ -n $VNC_SCALE || $VNC_PIXEL_FORMAT != native ]] &&
        M_NOTE="$M_NOTE; x11vnc -scale ${VNC_SCALE:-none}, client pixel format $VNC_PIXEL_FORMAT"
    local env=()
    vnc_tls_server
    env=("${VNC_TLS_ENV[@]}"); opts+=("${VNC_TLS_OPTS[@]}")
    if [[ -n $dial ]]; then
        run_bg farm "$out/x11vnc.log" "${env[@]}" x11vnc -display ":$DISP_FARM_VNC" -rfbport 0 -connect_or_exit "$dial" \
            -nopw -quiet -noipv6 "${opts[@]}"
        return
    fi
    run_bg farm "$out/x11vnc.log" "${env[@]}" x11vnc -display ":$DISP_FARM_VNC" -rfbport 5900 -listen "$FARM" \
        -forever -shared -nopw -quiet -noipv6 "${opts[@]}"
    wait_port farm "$FARM" 5900 15 || { log "x11vnc did not listen"; return 1; }
}

# x11vnc's environment and options for RWLAB_VNC_TLS (VNC_TLS_ENV, VNC_TLS_OPTS; empty without).
vnc_tls_server() {
    VNC_TLS_ENV=(); VNC_TLS_OPTS=()
    if [[ $VNC_TLS == x509 ]]; then
        [[ -s $STATE/vnc_x509.pem ]] || openssl req -x509 -newkey rsa:2048 -nodes -days 30 \
            -subj "/CN=$FARM" -addext "subjectAltName=IP:$FARM" -keyout "$STATE/vnc_x509.key" \
            -out "$STATE/vnc_x509.crt" 2>/dev/null &&
            cat "$STATE/vnc_x509.key" "$STATE/vnc_x509.crt" >"$STATE/vnc_x509.pem"
        # No session tickets: with them TigerVNC's viewer stalled after the handshake once the
        # operator was 45 ms or more away (x11vnc 0.9.16, OpenSSL 3, GnuTLS 3.7).
        printf '%s\n' 'openssl_conf = rw_conf' '[rw_conf]' 'ssl_conf = rw_ssl' '[rw_ssl]' \
            'system_default = rw_tls' '[rw_tls]' 'NumTickets = 0' >"$STATE/vnc_x509_openssl.cnf"
        VNC_TLS_ENV=(env OPENSSL_CONF="$STATE/vnc_x509_openssl.cnf")
        VNC_TLS_OPTS=(-ssl "$STATE/vnc_x509.pem" -vencrypt only)
        M_NOTE="$M_NOTE; VeNCrypt with the laptop's certificate (TigerVNC's X509None)"
        return 0
    fi
    [[ $VNC_TLS == 1 ]] || return 0
    # Anonymous Diffie-Hellman needs OpenSSL 3's security level 0.
    printf '%s\n' 'openssl_conf = rw_conf' '[rw_conf]' 'ssl_conf = rw_ssl' '[rw_ssl]' \
        'system_default = rw_tls' '[rw_tls]' 'CipherString = DEFAULT:ADH:@SECLEVEL=0' >"$STATE/vnc_openssl.cnf"
    VNC_TLS_ENV=(env OPENSSL_CONF="$STATE/vnc_openssl.cnf")
    VNC_TLS_OPTS=(-ssl TMP -vencrypt only -anontls never)
    M_NOTE="$M_NOTE; VeNCrypt with anonymous TLS (TigerVNC's TLSNone)"
}

vnc_person() { [[ $VNC_TYPE == 1 ]] && echo "whose person types into it" || echo "watching only"; }

# The loop that changes the laptop's screen while a real viewer watches (RWLAB_VNC_SCREEN).
farm_screen_loop() {  # farm_screen_loop [KIND]  (default RWLAB_VNC_SCREEN)
    case "${1:-$VNC_SCREEN}" in
        clock) echo 'while :; do date +%T.%N; sleep 0.3; done' ;;
        flood) echo 'while :; do head -c 40000 /dev/urandom | base64 -w 0; sleep 0.2; done' ;;
        *) log "RWLAB_VNC_SCREEN and RWLAB_RDP_SCREEN must be clock or flood"; return 2 ;;
    esac
}

# vnc_typed_ssh with a real viewer, rdp_typed_ssh with RWLAB_RDP_SCREEN: that loop in a
# second xterm below the ssh session's (a clock, a chat, a log on the laptop's desktop), run
# there, not through ssh.
farm_screen_window() {  # farm_screen_window OUT [DISPLAY KIND GEOMETRY]
    local loop disp="${2:-$DISP_FARM_VNC}" kind="${3:-$VNC_SCREEN}" geo="${4:-96x8+0+480}"
    loop=$(farm_screen_loop "$kind") || return
    run_bg farm "$1/xterm_screen.log" env DISPLAY=":$disp" xterm -geometry "$geo" \
        -e bash --norc --noprofile -c "$loop"
    M_NOTE="$M_NOTE; a second xterm below it runs $kind ($loop)"
}

# What the laptop's xterm runs while a real viewer watches (RWLAB_VNC_SCREEN), typed there.
start_farm_screen() {  # start_farm_screen VIEWER_NAME
    local loop
    loop=$(farm_screen_loop) || return
    case "$VNC_SCREEN" in
        clock) M_NOTE="$M_NOTE; the operator's viewer is $1, $(vnc_person) (the laptop's xterm prints the time every 0.3 s)" ;;
        flood) M_NOTE="$M_NOTE; the operator's viewer is $1, $(vnc_person) (the laptop's xterm prints a screenful of random text every 0.2 s)" ;;
    esac
    nsx farm env DISPLAY=":$DISP_FARM_VNC" xdotool mousemove 200 200 type --delay 5 "$loop"
    nsx farm env DISPLAY=":$DISP_FARM_VNC" xdotool key Return
}

# TigerVNC's -SecurityTypes (and its CA for X509None)
vnc_security() {
    case "$VNC_TLS" in
        1) echo TLSNone ;;
        x509) echo X509None -X509CA "$STATE/vnc_x509.crt" ;;
        *) echo None ;;
    esac
}
# RWLAB_VNC_TLS needs TigerVNC (ours speaks no TLS; TightVNC 1.3 has no VeNCrypt).
vnc_tls_viewer() {  # vnc_tls_viewer VIEWER
    [[ $VNC_TLS =~ ^(0|1|x509)$ ]] || { log "RWLAB_VNC_TLS must be 0, 1 or x509"; return 2; }
    [[ $VNC_TLS == 0 || $1 == tigervnc ]] && return 0
    log "RWLAB_VNC_TLS=$VNC_TLS needs RWLAB_VNC_VIEWER=tigervnc"; return 2
}

# Who drives the session in the truth's note: our RFB client, which types and moves the
# pointer, or a real viewer (what its person does is added by start_farm_screen).
op_viewer_name() {
    [[ -z $VNC_VIEWER ]] && echo "operator's RFB client (helpers/rfb_client.py)" || echo "operator's viewer"
}
op_viewer_acts() { [[ -n $VNC_VIEWER ]] || echo "$1types and moves the pointer"; }  # op_viewer_acts SEP

run_op_viewer() {  # run_op_viewer HOST PORT OUT SEED
    local host="$1" port="$2" out="$3" seed="$4"
    vnc_tls_viewer "$VNC_VIEWER" || return
    if [[ -z $VNC_VIEWER ]]; then
        nsx op "$PY" "$HELPERS/rfb_client.py" --host "$host" --port "$port" --seed "$seed" --budget 20 \
            --pixel-format "$VNC_PIXEL_FORMAT" --events "$out/vnc_events.json" >>"$out/scenario.log" 2>&1
        return
    fi
    real_viewer "$host" "$port" || return
    M_EVENTS=""
    start_farm_screen "${VIEWER[0]}" || return
    # 25 s: a session the flow-shape detector judges (it waits 20 s) once set up.
    run_real_viewer "$out" 25 op_types_in_viewer "$seed" 22
}

# VIEWER: op's real viewer (RWLAB_VNC_VIEWER) of HOST:PORT. Status 3 when it is missing.
real_viewer() {  # real_viewer HOST PORT
    case "$VNC_VIEWER" in
        tigervnc) VIEWER=(xtigervncviewer -SecurityTypes $(vnc_security) -Shared "$1::$2") ;;
        tightvnc) VIEWER=(xtightvncviewer -shared "$1::$2") ;;
        *) log "RWLAB_VNC_VIEWER must be tigervnc, tightvnc or empty"; return 2 ;;
    esac
    command -v "${VIEWER[0]}" >/dev/null || { log "${VIEWER[0]} missing"; return 3; }
}

# VIEWER under Xvfb on op for SECONDS, while the person's ACTION runs (op_types_in_viewer or
# op_types_commands, with its arguments) from 2 s in.
run_real_viewer() {  # run_real_viewer OUT SECONDS ACTION ARGS...
    local out="$1" secs="$2" vpid
    shift 2
    start_xvfb op "$DISP_OP_RDP" 1024x768x24 "$out/xvfb_op.log"
    nsx op env DISPLAY=":$DISP_OP_RDP" timeout "$secs" "${VIEWER[@]}" >>"$out/viewer.log" 2>&1 &
    vpid=$!
    sleep 2
    "$@"
    wait "$vpid" || true
}

# The person at a real viewer on op's display types for SECONDS (RWLAB_VNC_TYPE=1; else
# the time passes). With no window manager the viewer (FLTK's TigerVNC) takes keys only once
# given the focus, so xdotool gives it to the display's one visible window.
op_types_in_viewer() {  # op_types_in_viewer SEED SECONDS
    local seed="$1" end=$((SECONDS + $2)) i=0 words=(ls pwd date uptime whoami df free id)
    if [[ $VNC_TYPE != 1 ]]; then
        sleep "$2"; return
    fi
    # A viewer that failed shows no window: wait for one 10 s at most.
    nsx op env DISPLAY=":$DISP_OP_RDP" timeout 10 xdotool search --sync --onlyvisible --name '.+' \
        windowfocus --sync >/dev/null 2>&1 || log "no viewer window to type into"
    while ((SECONDS < end)); do
        nsx op env DISPLAY=":$DISP_OP_RDP" xdotool type --delay $((120 + (seed * 31 + i * 17) % 120)) \
            "${words[$(((seed * 7 + i) % ${#words[@]}))]} " || true
        sleep "0.$(((seed + i) % 9 + 1))"
        i=$((i + 1))
    done
}

# The person at a real viewer types commands into the laptop's ssh (vnc_typed_ssh with
# RWLAB_VNC_VIEWER) for SECONDS: a seeded word at 120-240 ms a key, Enter, then 0.6-2 s to
# read what it printed (pauses that make ON periods, which the stepping stones match).
op_types_commands() {  # op_types_commands SEED SECONDS
    local seed="$1" end=$((SECONDS + $2)) i=0 ms words=(ls pwd date uptime whoami df free id)
    # A viewer that failed shows no window: wait for one 10 s at most.
    nsx op env DISPLAY=":$DISP_OP_RDP" timeout 10 xdotool search --sync --onlyvisible --name '.+' \
        windowfocus --sync >/dev/null 2>&1 || log "no viewer window to type into"
    while ((SECONDS < end)); do
        nsx op env DISPLAY=":$DISP_OP_RDP" xdotool type --delay $((120 + (seed * 31 + i * 17) % 120)) \
            "${words[$(((seed * 7 + i) % ${#words[@]}))]}" || true
        nsx op env DISPLAY=":$DISP_OP_RDP" xdotool key Return || true
        ms=$((600 + (seed * 13 + i * 7) % 15 * 100))
        sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
        i=$((i + 1))
    done
}

scn_vnc_session() {
    local out="$1" seed="$2"
    M_RELAYED=true; M_APP=vnc; M_KIND=remote_desktop; M_CTRL=farm; M_HUMAN=op; M_EVENTS=vnc_events.json
    M_NOTE="x11vnc on farm (Xvfb+xterm); $(op_viewer_name)$(op_viewer_acts " ")"
    spec operator_leg vnc "$OP" "$FARM" 5900 true "op RFB client -> farm x11vnc"
    start_farm_vnc "$out" || return
    run_op_viewer "$FARM" 5900 "$out" "$seed"
}

# A reverse connection: the operator's viewer listens (on op:5500, RFC 6143's port for it) and
# the laptop's x11vnc dials it, as a laptop behind NAT is reached. The session is the
# laptop's own egress; its server is the controlled end and the viewer the controller.
scn_vnc_reverse() {
    local out="$1" seed="$2" viewer
    M_RELAYED=true; M_APP=vnc; M_KIND=remote_desktop; M_CTRL=farm; M_HUMAN=op; M_EVENTS=""
    M_NOTE="x11vnc on farm (Xvfb+xterm) dials the operator's listening viewer (x11vnc -connect op:5500)"
    spec operator_leg vnc "$FARM" "$OP" 5500 true "farm x11vnc -> op's listening viewer"
    # x11vnc's reverse connection under -ssl is a TLS tunnel around RFB (vncs://), no VeNCrypt.
    [[ $VNC_TLS == 0 ]] || { log "vnc_reverse does not take RWLAB_VNC_TLS (x11vnc dials out in TLS, not VeNCrypt)"; return 2; }
    case "${VNC_VIEWER:-tigervnc}" in
        tigervnc) viewer=(xtigervncviewer -SecurityTypes $(vnc_security) -listen 5500) ;;
        tightvnc) viewer=(xtightvncviewer -listen 0) ;;
        *) log "vnc_reverse needs RWLAB_VNC_VIEWER tigervnc or tightvnc (ours does not listen)"; return 2 ;;
    esac
    command -v "${viewer[0]}" >/dev/null || { log "${viewer[0]} missing"; return 3; }
    start_xvfb op "$DISP_OP_RDP" 1024x768x24 "$out/xvfb_op.log"
    run_bg op "$out/viewer.log" env DISPLAY=":$DISP_OP_RDP" timeout 30 "${viewer[@]}"
    wait_listening op 5500 || { log "the viewer did not listen"; return 1; }
    start_farm_vnc "$out" "$OP:5500" || return
    sleep 1
    start_farm_screen "${viewer[0]}" || return
    op_types_in_viewer "$seed" 24
}

# A forwarder on srv, a server near the laptop: socat from srv:PORT to farm:TARGET
# (status 3 when socat is missing, as a scenario's dependency).
start_forwarder() {  # start_forwarder PORT TARGET OUT
    local port="$1" target="$2" out="$3"
    command -v socat >/dev/null || { log "socat missing"; return 3; }
    run_bg srv "$out/socat.log" socat "TCP-LISTEN:$port,bind=$SRV,reuseaddr,fork" "TCP:$FARM:$target"
    # Not wait_port: a probe through socat would be a session of its own at the gateway.
    wait_listening srv "$port" || { log "socat did not listen"; return 1; }
}

# Waits up to 10 s for a listening TCP socket on PORT in NS, without connecting to it (a
# probe would be a session of its own at the gateway).
wait_listening() {  # wait_listening NS PORT
    local i
    for i in $(seq 100); do
        nsx "$1" ss -Hltn "sport = :$2" | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

# The operator hides behind a server near the laptop (a rented one in the same country):
# socat on srv forwards its TCP port to the laptop's x11vnc, so the remote-control session
# the gateway sees comes from srv, 2 x RWLAB_NEAR_DELAY_MS away, and the person is beyond it.
scn_vnc_forwarded() {
    local out="$1" seed="$2"
    M_RELAYED=true; M_APP=vnc; M_KIND=forwarder; M_CTRL=farm; M_HUMAN=op; M_EVENTS=vnc_events.json
    M_NOTE="x11vnc on farm (Xvfb+xterm); $(op_viewer_name) reaches it through socat on srv (near the laptop)$(op_viewer_acts ", ")"
    spec operator_leg vnc "$SRV" "$FARM" 5900 true "srv socat (forwarding for op) -> farm x11vnc"
    start_farm_vnc "$out" || return
    start_forwarder 5901 5900 "$out" || return
    run_op_viewer "$SRV" 5901 "$out" "$seed"
}

scn_rdp_session() {
    M_RELAYED=true; M_APP=rdp; M_KIND=remote_desktop; M_CTRL=farm; M_HUMAN=op; M_EVENTS=rdp_events.json
    M_NOTE="xrdp on farm (libvnc backend -> x11vnc on Xvfb+xterm, no sesman/PAM); operator runs xfreerdp under Xvfb, input via xdotool"
    spec operator_leg rdp "$OP" "$FARM" 3389 true "op xfreerdp -> farm xrdp"
    rdp_session "$1" "$2"
}

scn_proxied_rdp() {
    M_RELAYED=true; M_APP=rdp; M_KIND=socks5; M_CTRL=farm; M_HUMAN=op; M_EVENTS=rdp_events.json
    M_NOTE="as rdp_session, but the operator's xfreerdp reaches xrdp through the dante SOCKS5 proxy on the laptop (/proxy:socks5://)"
    spec operator_leg rdp "$OP" "$FARM" 1080 true "op xfreerdp -> farm dante (SOCKS5) -> farm xrdp"
    rdp_session "$1" "$2" --proxy "socks5://$FARM:1080"
}

# The same forwarder in front of the laptop's xrdp.
scn_rdp_forwarded() {
    M_RELAYED=true; M_APP=rdp; M_KIND=forwarder; M_CTRL=farm; M_HUMAN=op; M_EVENTS=rdp_events.json
    M_NOTE="as rdp_session, but the operator's xfreerdp reaches xrdp through socat on srv (near the laptop)"
    spec operator_leg rdp "$SRV" "$FARM" 3389 true "srv socat (forwarding for op) -> farm xrdp"
    start_forwarder 13389 3389 "$1" || return
    rdp_session "$1" "$2" --host "$SRV" --port 13389
}

# The RDP twin of vnc_typed_ssh: the person types a seeded plan (not reacting to the screen,
# which the driver does not read) into the laptop's xterm, whose ssh runs to srv.
scn_rdp_typed_ssh() {
    M_RELAYED=true; M_APP=ssh; M_KIND=remote_desktop; M_CTRL=farm; M_HUMAN=op; M_EVENTS=rdp_events.json
    M_NOTE="far operator types through RDP (xfreerdp -> xrdp -> x11vnc on the laptop's display) into an xterm on the laptop that runs ssh -tt root@srv; the ssh client is farm's, the human at op types a seeded plan for $TYPING_BUDGET_S s"
    spec operator_leg rdp "$OP" "$FARM" 3389 true "op xfreerdp -> farm xrdp (keystrokes in, screen updates out)"
    spec relayed_egress ssh "$FARM" "$SRV" 22 true "farm xterm's ssh -> srv:22, typed by op through RDP"
    local RDP_TERM_CMD=("${SSH[@]}" -tt "root@$SRV" "$REMOTE_SHELL")
    rdp_session "$1" "$2"
}

rdp_session() {  # rdp_session OUT SEED [rdp_driver.py options]; RDP_TERM_CMD: the xterm's command (bash)
    local out="$1" seed="$2" budget=20 term_cmd=(bash --norc --noprofile); shift 2
    [[ ${#RDP_TERM_CMD[@]} -eq 0 ]] || { term_cmd=("${RDP_TERM_CMD[@]}"); budget="$TYPING_BUDGET_S"; }
    command -v xrdp >/dev/null && command -v xfreerdp >/dev/null || { log "xrdp/xfreerdp missing"; return 3; }
    mkdir -p "$STATE/xrdp" /run/xrdp/sockdir
    if [[ ! -f $STATE/xrdp/cert.pem ]]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=farm.rwlab.test" \
            -keyout "$STATE/xrdp/key.pem" -out "$STATE/xrdp/cert.pem" 2>/dev/null
    fi
    [[ $RDP_SECURITY == tls || $RDP_SECURITY == rdp ]] || { log "RWLAB_RDP_SECURITY must be tls or rdp"; return 2; }
    sed -e "s|@FARM@|$FARM|g" -e "s|@STATE@|$STATE|g" -e "s|@SECURITY@|$RDP_SECURITY|g" \
        -e "s|@CRYPT@|$([[ $RDP_SECURITY == rdp ]] && echo fips || echo high)|g" \
        "$HELPERS/xrdp.ini.in" >"$STATE/xrdp/xrdp.ini"
    [[ $RDP_SECURITY == tls ]] ||
        M_NOTE="$M_NOTE; standard RDP security (xrdp security_layer=rdp, crypt_level=fips; xfreerdp /sec:rdp)"
    local cert=()
    if [[ -n $RDP_CERT_ANSWER_MS ]]; then
        cert=(--cert-answer-ms "$RDP_CERT_ANSWER_MS")
        M_NOTE="$M_NOTE; the person accepts xrdp's certificate at xfreerdp's prompt ${RDP_CERT_ANSWER_MS} ms after it appears"
    fi
    start_xvfb farm "$DISP_FARM_RDP" 800x600x24 "$out/xvfb_farm.log"
    # The xterm fills the screen: with no window manager the keyboard follows the pointer, and
    # the person's pointer wanders while thinking; outside a smaller xterm their keys were lost.
    # With a second xterm on the screen (RWLAB_RDP_SCREEN) the first is given the keyboard.
    local rows=45
    [[ -z $RDP_SCREEN || ${#RDP_TERM_CMD[@]} -eq 0 ]] || rows=37
    run_bg farm "$out/xterm.log" env -C "$STATE/home" DISPLAY=":$DISP_FARM_RDP" xterm -class RwlabTerm \
        -geometry "132x$rows+0+0" -l -lf "$out/farm_terminal.txt" -e "${term_cmd[@]}"
    if [[ $RDP_SERVER == shadow ]]; then
        command -v freerdp-shadow-cli >/dev/null || { log "freerdp-shadow-cli missing"; return 3; }
        mkdir -p "$STATE/rdp-shadow"
        M_NOTE="${M_NOTE//xrdp -> x11vnc/freerdp-shadow-cli}; the server is FreeRDP's shadow server on the laptop's display, xfreerdp $RDP_CODEC"
        run_bg farm "$out/shadow.log" env -C "$STATE/rdp-shadow" HOME="$STATE/rdp-shadow" DISPLAY=":$DISP_FARM_RDP" \
            freerdp-shadow-cli "/bind-address:$FARM" /port:3389 -auth "/sec:$RDP_SECURITY"
        set -- "$@" --client-flags "$RDP_CODEC"
    else
        [[ $RDP_SERVER == xrdp ]] || { log "RWLAB_RDP_SERVER must be xrdp or shadow"; return 2; }
        printf 'rwlabpw\n' >"$STATE/xrdp/vncpw.txt"
        run_bg farm "$out/x11vnc.log" x11vnc -display ":$DISP_FARM_RDP" -rfbport 5910 -localhost \
            -forever -shared -passwdfile "$STATE/xrdp/vncpw.txt" -quiet -noipv6
        wait_port farm 127.0.0.1 5910 15 || { log "x11vnc (rdp backend) did not listen"; return 1; }
        rm -f /run/xrdp/xrdp.pid
        run_bg farm "$out/xrdp.log" xrdp --nodaemon --config "$STATE/xrdp/xrdp.ini"
    fi
    wait_port farm "$FARM" 3389 15 || { log "the RDP server did not listen"; return 1; }
    [[ ${#RDP_TERM_CMD[@]} -eq 0 ]] || wait_ssh_prompt "$out" || return 1
    if [[ -n $RDP_SCREEN && ${#RDP_TERM_CMD[@]} -gt 0 ]]; then
        farm_screen_window "$out" "$DISP_FARM_RDP" "$RDP_SCREEN" 132x8+0+490 || return
        sleep 0.5
        timeout 10 ip netns exec "${PFX}farm" env DISPLAY=":$DISP_FARM_RDP" \
            xdotool search --sync --class RwlabTerm windowfocus >>"$out/scenario.log" 2>&1 ||
            { log "could not give the ssh session's xterm the keyboard"; return 1; }
    fi
    start_xvfb op "$DISP_OP_RDP" 1024x768x24 "$out/xvfb_op.log"
    nsx op "$PY" "$HELPERS/rdp_driver.py" --display ":$DISP_OP_RDP" --host "$FARM" --seed "$seed" \
        --budget "$budget" --events "$out/rdp_events.json" --log "$out/xfreerdp.log" --security "$RDP_SECURITY" \
        "${cert[@]}" "$@" >>"$out/scenario.log" 2>&1
}

scn_scp_transfer() {
    local out="$1" seed="$2" src dst
    M_RELAYED=false; M_APP=ssh; M_HUMAN=farm
    M_NOTE="user at the laptop copies a ~2 MB file to srv with scp (OpenSSH >= 9 scp speaks SFTP)"
    spec direct ssh "$FARM" "$SRV" 22 false "farm scp -> srv (bulk upload)"
    src="$STATE/home/scp_src_$seed.bin"; dst="$STATE/home/scp_dst_$seed.bin"
    # seeded content, 2 MiB + up to 64 KiB (the namespaces share this filesystem)
    "$PY" -c 'import random, sys; r = random.Random(int(sys.argv[1])); sys.stdout.buffer.write(r.randbytes(2097152 + r.randrange(65536)))' \
        "$seed" >"$src"
    rm -f "$dst"
    sleep 0.5
    nsx farm scp -F "$STATE/ssh/ssh_config" "$src" "root@$SRV:$dst" >>"$out/scenario.log" 2>&1
    sleep 0.5
    if cmp -s "$src" "$dst"; then
        echo "scp_transfer: $(stat -c %s "$src") bytes copied intact" >>"$out/scenario.log"
    else
        echo "scp_transfer: copy differs" >>"$out/scenario.log"; rm -f "$src" "$dst"; return 1
    fi
    rm -f "$src" "$dst"
}

scn_ssh_local_forward() {
    local out="$1" seed="$2" i n sizes tpid
    M_RELAYED=true; M_APP=tls; M_KIND=ssh_local_forward; M_HUMAN=op
    M_NOTE="operator runs ssh -N -L 8443:srv:443 root@farm and curls https srv through the forward"
    dl_note
    spec operator_leg ssh "$OP" "$FARM" 22 true "op -> farm ssh -L (tunnel)"
    spec relayed_egress tls "$FARM" "$SRV" 443 true "farm sshd -> srv:443 (direct-tcpip), TLS client is op"
    ip netns exec "${PFX}op" "${SSH[@]}" -N -L "127.0.0.1:8443:$SRV:443" "root@$FARM" >>"$out/scenario.log" 2>&1 </dev/null &
    tpid=$!; RUN_PIDS+=("$tpid")
    # poll for the listener with ss, not wait_port: a probe connection to an
    # -L port would make farm open a (non-TLS) forwarded connection to srv
    for i in $(seq 150); do
        [[ -n $(nsx op ss -Hltn "sport = :8443") ]] && break
        sleep 0.1
    done
    [[ -n $(nsx op ss -Hltn "sport = :8443") ]] || { log "ssh -L did not come up"; return 1; }
    n=$(( 3 + seed % 3 ))
    for i in $(seq "$n"); do
        sizes=( / /bytes/20000 /bytes/300000 /bytes/1500000 )
        nsx op "${CURL_TLS[@]}" --resolve "$SRV_NAME:8443:127.0.0.1" \
            "https://$SRV_NAME:8443$(dl "${sizes[$(( (seed + i) % 4 ))]}")" >>"$out/scenario.log" 2>&1
        seeded_pause "$seed" "$i" 1.5 0
    done
    stop_pid "$tpid"
}

wait_ssh_prompt() {  # wait_ssh_prompt OUT: the laptop's xterm shows its ssh session's prompt (20 s at most)
    local i
    for i in $(seq 200); do
        grep -qF 'rwlab$ ' "$1/farm_terminal.txt" 2>/dev/null && return 0
        sleep 0.1
    done
    log "no ssh prompt in the farm xterm"
    return 1
}

scn_vnc_typed_ssh() { vnc_typed_ssh "$1" "$2" "$FARM"; }

# An IP-KVM beside the laptop: the far person's VNC goes to a device with its own address on
# the LAN ($KVM), whose keys the laptop's xterm gets (here x11vnc on the laptop's display,
# listening on a second address of the laptop's namespace: to the gateway another host).
scn_kvm_typed_ssh() {
    nsx farm ip addr replace "$KVM/24" dev eth0 || { log "cannot add $KVM to farm"; return 1; }
    RUN_CLEANUP=kvm_cleanup
    vnc_typed_ssh "$1" "$2" "$KVM" || return
    M_NOTE="$M_NOTE; the VNC server stands for an IP-KVM beside the laptop at $KVM (its own address on the LAN, x11vnc on the laptop's display)"
}
kvm_cleanup() { nsx farm ip addr del "$KVM/24" dev eth0 2>/dev/null || true; }

vnc_typed_ssh() {  # vnc_typed_ssh OUT SEED ADDR: the VNC server listens on ADDR
    local out="$1" seed="$2" addr="$3" scale=() vscale vpf
    M_RELAYED=true; M_APP=ssh; M_KIND=remote_desktop; M_CTRL=farm; M_HUMAN=op; M_EVENTS=vnc_events.json
    M_NOTE="far operator types through VNC into an xterm on the laptop that runs ssh -tt root@srv; the ssh client is farm's"
    spec operator_leg vnc "$OP" "$addr" 5900 true "op RFB client -> farm x11vnc (keystrokes in, screen updates out)"
    spec relayed_egress ssh "$FARM" "$SRV" 22 true "farm xterm's ssh -> srv:22, typed by op through VNC"
    command -v x11vnc >/dev/null && command -v Xvfb >/dev/null && command -v xterm >/dev/null ||
        { log "x11vnc/Xvfb/xterm missing"; return 3; }
    # low VNC volume by default: unset knobs mean -scale 1/2 and bgr233
    # (set RWLAB_VNC_SCALE= and RWLAB_VNC_PIXEL_FORMAT=native for full size)
    vscale="${RWLAB_VNC_SCALE-1/2}"; vpf="${RWLAB_VNC_PIXEL_FORMAT:-bgr233}"
    [[ -n $vscale ]] && scale=(-scale "$vscale")
    M_NOTE="$M_NOTE; x11vnc -scale ${vscale:-none}"
    if [[ -n $VNC_VIEWER ]]; then
        vnc_tls_viewer "$VNC_VIEWER" && real_viewer "$addr" 5900 || return
    else
        M_NOTE="$M_NOTE, client pixel format $vpf; the human at op reacts to the screen (output seen in a FramebufferUpdate, then a seeded reaction time)"
    fi
    start_xvfb farm "$DISP_FARM_VNC" 800x600x24 "$out/xvfb_farm.log"
    run_bg farm "$out/xterm.log" env -C "$STATE/home" DISPLAY=":$DISP_FARM_VNC" xterm -geometry 96x36+0+0 \
        -l -lf "$out/farm_terminal.txt" -e "${SSH[@]}" -tt "root@$SRV" "$REMOTE_SHELL"
    vnc_tls_server
    run_bg farm "$out/x11vnc.log" "${VNC_TLS_ENV[@]}" x11vnc -display ":$DISP_FARM_VNC" -rfbport 5900 -listen "$addr" \
        -forever -shared -nopw -quiet -noipv6 "${scale[@]}" "${VNC_TLS_OPTS[@]}"
    wait_port farm "$addr" 5900 15 || { log "x11vnc did not listen"; return 1; }
    wait_ssh_prompt "$out" || return 1  # the operator starts once the laptop's ssh shows its prompt
    if [[ -n $VNC_VIEWER ]]; then
        M_EVENTS=""
        M_NOTE="$M_NOTE; the operator's viewer is $VNC_VIEWER, whose person types commands (xdotool), $TYPING_BUDGET_S s"
        farm_screen_window "$out" || return
        run_real_viewer "$out" $((TYPING_BUDGET_S + 5)) op_types_commands "$seed" "$TYPING_BUDGET_S"
        return
    fi
    M_NOTE="$M_NOTE; typist $TYPIST, $TYPING_BUDGET_S s of typing"
    nsx op "$PY" "$HELPERS/rfb_client.py" --host "$addr" --port 5900 --seed "$seed" --budget "$TYPING_BUDGET_S" \
        --person "$TYPIST" --pixel-format "$vpf" --react-to-screen --font-px 13 --desktop-height 600 \
        --events "$out/vnc_events.json" >>"$out/scenario.log" 2>&1
}

routed_tun_up() {  # both ends of routed_relay's ssh -w link exist
    nsx op ip link show "$ROUTED_TUN" >/dev/null 2>&1 && nsx farm ip link show "$ROUTED_TUN" >/dev/null 2>&1
}
routed_relay_cleanup() {  # RUN_CLEANUP of scn_routed_relay: NAT, forwarding and route back as before
    local i
    nsx farm nft delete table ip rwlab_routed 2>/dev/null || true
    nsx farm sysctl -qw "net.ipv4.ip_forward=${ROUTED_FWD0:-0}" || true
    nsx op ip route del "$SRV/32" dev "$ROUTED_TUN" 2>/dev/null || true   # gone with tun5 once ssh exits
    # tun5 goes when ssh (op) and its sshd session (farm) close it
    for i in $(seq 30); do
        if ! nsx op ip link show "$ROUTED_TUN" >/dev/null 2>&1 && ! nsx farm ip link show "$ROUTED_TUN" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    log "$ROUTED_TUN still present in op or farm after the ssh -w session"
}

routed_link_up() {  # routed_link_up OUT: op's ssh -w link to farm, which forwards and NATs srv's packets (ROUTED_TPID)
    local out="$1" i
    command -v nft >/dev/null || { log "nft missing (nftables)"; return 3; }
    ROUTED_FWD0=$(nsx farm sysctl -n net.ipv4.ip_forward)
    RUN_CLEANUP=routed_relay_cleanup
    # -tt and a command, not -N: with a terminal sshd sets TCP_NODELAY, so the tunnel forwards
    # each packet at once as the UDP tunnels of exit nodes (WireGuard, Tailscale) do; without
    # it Nagle holds a packet behind the previous one's ACK (a round trip and a delayed ACK).
    ip netns exec "${PFX}op" "${SSH[@]}" -tt -w 5:5 -o Tunnel=point-to-point "root@$FARM" 'exec sleep 3600' \
        >>"$out/scenario.log" 2>&1 </dev/null &
    ROUTED_TPID=$!; RUN_PIDS+=("$ROUTED_TPID")
    for i in $(seq 150); do
        routed_tun_up && break
        sleep 0.1
    done
    routed_tun_up || { log "ssh -w did not bring up $ROUTED_TUN in op and farm"; return 1; }
    nsx farm ip addr add "$ROUTED_FARM/30" dev "$ROUTED_TUN"
    nsx farm ip link set "$ROUTED_TUN" up
    nsx op ip addr add "$ROUTED_OP/30" dev "$ROUTED_TUN"
    nsx op ip link set "$ROUTED_TUN" up
    nsx farm sysctl -qw net.ipv4.ip_forward=1
    nsx farm nft -f - <<NFT
table ip rwlab_routed {
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr $ROUTED_NET oifname "eth0" masquerade
    }
}
NFT
    # only srv goes through the tunnel: op's default route (and so ssh -w itself) stays on eth0
    nsx op ip route add "$SRV/32" via "$ROUTED_FARM" dev "$ROUTED_TUN"
}

scn_routed_relay() {
    local out="$1" seed="$2" i n cmds
    M_RELAYED=true; M_APP=tls; M_KIND=routed_nat; M_HUMAN=op; M_CTRL=""
    M_NOTE="operator routes IP through the laptop (L3 relay, like a VPN exit): ssh -w 5:5 point-to-point tun to farm, which forwards and NATs (nftables masquerade) to srv; curl https and ssh commands to srv, TCP end-to-end op<->srv"
    dl_note
    spec operator_leg ssh "$OP" "$FARM" 22 true "op -> farm ssh -w (carries the routed packets)"
    spec relayed_egress tls "$FARM" "$SRV" 443 true "farm NAT -> srv:443, TCP and TLS end-to-end with op"
    spec relayed_egress ssh "$FARM" "$SRV" 22 true "farm NAT -> srv:22, TCP and SSH end-to-end with op"
    spec direct tls "$FARM" "$SRV" 8443 false "the laptop's own software (an update check) -> srv:8443"
    # A laptop is never silent: its own software (updates, agents) keeps connecting, here to
    # a second https port on srv so that the truth file tells these flows from the routed ones.
    run_bg srv "$out/https_8443.log" "$PY" "$HELPERS/https_server.py" \
        --bind "$SRV" --port 8443 --cert "$STATE/tls/srv.crt" --key "$STATE/tls/srv.key"
    wait_port srv "$SRV" 8443 15 || { log "https :8443 on srv did not start"; return 1; }
    nsx farm "${CURL_TLS[@]}" --resolve "$SRV_NAME:8443:$SRV" "https://$SRV_NAME:8443/" >>"$out/scenario.log" 2>&1
    routed_link_up "$out" || return $?
    browse op "$out" "$seed"
    n=$(( 2 + seed % 2 ))
    for i in $(seq "$n"); do
        cmds=( 'echo ok; uname -a' 'echo ok; id -un; uptime' 'echo ok; hostname; date -u' )
        nsx op "${SSH[@]}" "root@$SRV" "${cmds[$(( (seed + i) % 3 ))]}" >>"$out/scenario.log" 2>&1
        seeded_pause "$seed" "$i" 2 50
    done
    nsx farm "${CURL_TLS[@]}" --resolve "$SRV_NAME:8443:$SRV" "https://$SRV_NAME:8443/bytes/20000" >>"$out/scenario.log" 2>&1
    stop_pid "$ROUTED_TPID"
}

quic_get() {  # quic_get NS PORT PATH: one HTTP/3 fetch from srv by RWLAB_QUIC_CLIENT
    local profile="$STATE/chromium-quic-$1" rc
    case "$QUIC_CLIENT" in
        ngtcp2)
            nsx "$1" timeout 25 gtlsclient -q --exit-on-all-streams-close --timeout=20s "$SRV" "$2" \
                "https://$SRV_NAME:$2$3" ;;
        chromium)
            rm -rf "$profile"
            nsx "$1" timeout 25 "${HEADLESS_CHROMIUM[@]}" --user-data-dir="$profile" \
                --enable-quic --origin-to-force-quic-on="$SRV_NAME:$2" \
                --host-resolver-rules="MAP $SRV_NAME $SRV" --ignore-certificate-errors-spki-list="$(srv_spki)" \
                --dump-dom "https://$SRV_NAME:$2$3" 2>/dev/null | grep -q rwlab ;;
        go)  # quic-go (Debian's golang-github-lucas-clemente-quic-go-dev), built once
            if [[ ! -x $STATE/quic_fetch_go ]]; then
                GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$STATE/gocache" \
                    go build -o "$STATE/quic_fetch_go" "$HELPERS/quic_fetch.go" || return 3
            fi
            nsx "$1" timeout 25 "$STATE/quic_fetch_go" -cacert "$STATE/tls/srv.crt" -connect "$SRV:$2" \
                "https://$SRV_NAME:$2$3" ;;
        *) log "RWLAB_QUIC_CLIENT=$QUIC_CLIENT: ngtcp2, chromium or go"; return 2 ;;
    esac
    rc=$?
    rm -rf "$profile" 2>/dev/null || true
    ((rc == 0)) && echo "quic fetch :$2$3 ok ($QUIC_CLIENT)" || echo "quic fetch :$2$3 failed ($QUIC_CLIENT, $rc)"
}

srv_spki() {  # base64 SHA-256 of srv's public key, which Chromium's QUIC is told to accept
    openssl x509 -in "$STATE/tls/srv.crt" -pubkey -noout | openssl pkey -pubin -outform der |
        openssl dgst -sha256 -binary | base64
}

quic_servers() {  # quic_servers OUT PORT...: ngtcp2's HTTP/3 server on srv at each UDP port
    local out="$1" port n
    shift
    command -v gtlsserver >/dev/null || { log "gtlsserver missing: apt-get install ngtcp2-server ngtcp2-client"; return 3; }
    mkdir -p "$STATE/quic_htdocs"
    # pages a browser shows as well: "rwlab" and n bytes of text
    echo "<p>rwlab</p>" >"$STATE/quic_htdocs/index.html"
    for n in 20000 300000; do
        [[ -f $STATE/quic_htdocs/$n.html ]] ||
            { echo "<p>rwlab</p>"; head -c "$n" /dev/zero | tr '\0' 'x'; } >"$STATE/quic_htdocs/$n.html"
    done
    for port in "$@"; do
        run_bg srv "$out/quic_$port.log" gtlsserver -q -d "$STATE/quic_htdocs" "$SRV" "$port" \
            "$STATE/tls/srv.key" "$STATE/tls/srv.crt"
    done
    sleep 0.5
}

quic_fetches() {  # quic_fetches NS PORT OUT SEED: 5-7 seeded HTTP/3 fetches, seeded pauses
    local ns="$1" port="$2" out="$3" seed="$4" i n sizes big=/300000.html
    # RWLAB_MAX_DOWNLOAD_BYTES caps these pages as it caps curl's downloads
    [[ -n $MAX_DOWNLOAD_BYTES ]] && ((MAX_DOWNLOAD_BYTES < 300000)) && big=/20000.html
    n=$(( 5 + seed % 3 ))
    for i in $(seq "$n"); do
        sizes=( / /20000.html "$big" )
        quic_get "$ns" "$port" "${sizes[$(( (seed + i) % 3 ))]}" >>"$out/scenario.log" 2>&1
        seeded_pause "$seed" "$i" 2 0
    done
}

scn_direct_quic() {
    local out="$1" seed="$2"
    M_RELAYED=false; M_APP=quic; M_HUMAN=farm
    M_NOTE="user at the laptop fetches from srv over QUIC (HTTP/3 client $QUIC_CLIENT, ngtcp2's server), several connections"
    dl_note
    spec direct quic "$FARM" "$SRV" udp:443 false "farm gtlsclient -> srv udp:443"
    quic_servers "$out" 443 || return $?
    quic_fetches farm 443 "$out" "$seed"
}

scn_routed_quic() {
    local out="$1" seed="$2"
    M_RELAYED=true; M_APP=quic; M_KIND=routed_nat; M_HUMAN=op; M_CTRL=""
    M_NOTE="operator routes IP through the laptop (ssh -w, NAT, as routed_relay) and fetches over QUIC only (HTTP/3 client $QUIC_CLIENT, ngtcp2's server); the laptop's own software too"
    dl_note
    spec operator_leg ssh "$OP" "$FARM" 22 true "op -> farm ssh -w (carries the routed packets)"
    spec relayed_egress quic "$FARM" "$SRV" udp:443 true "farm NAT -> srv udp:443, QUIC end-to-end with op"
    spec direct quic "$FARM" "$SRV" udp:8443 false "the laptop's own software (QUIC) -> srv udp:8443"
    quic_servers "$out" 443 8443 || return $?
    quic_get farm 8443 / >>"$out/scenario.log" 2>&1
    routed_link_up "$out" || return $?
    quic_fetches op 443 "$out" "$seed"
    quic_get farm 8443 /20000.html >>"$out/scenario.log" 2>&1
    stop_pid "$ROUTED_TPID"
}

scn_revocation_tls() {
    local out="$1" seed="$2"
    M_RELAYED=false; M_APP=tls; M_HUMAN=farm
    M_NOTE="the laptop's TLS client checks revocation online: during verification it fetches from a responder (srv:80, answering after $RESPONDER_MS ms), before its Finished or before its request, one connection each (helpers/revocation_client.py)${RESPONDER_KEEP_ALIVE:+; fetches over one connection kept open}"
    spec direct tls "$FARM" "$SRV" 443 false "farm TLS client -> srv, waits on the fetch"
    spec direct http "$FARM" "$SRV" 80 false "farm -> responder (OCSP/AIA fetch)"
    run_bg srv "$out/responder.log" "$PY" "$HELPERS/https_server.py" --bind "$SRV" --port 80 --plain
    wait_port srv "$SRV" 80 15 || { log "responder :80 on srv did not start"; return 1; }
    nsx farm "$PY" "$HELPERS/revocation_client.py" --address "$SRV" --name "$SRV_NAME" \
        --cafile "$STATE/tls/srv.crt" --responder "$SRV" --connections $(( 6 + seed % 3 )) \
        --responder-ms "$RESPONDER_MS" ${RESPONDER_KEEP_ALIVE:+--keep-alive} --seed "$seed" >>"$out/scenario.log" 2>&1
}

# ---------------------------------------------------------------- run
run_one() {  # run_one SCENARIO OUT OPDELAY JITTER SEED   (near link: NEAR_DELAY_MS, NEAR_JITTER_MS)
    local scn="$1" out="$2" d="$3" j="$4" seed="$5" rc=0 cap t0 t1 ph pd status=ok obfuscation bulk="" lanbulk="" lanbulksrv=""
    declare -F "scn_$scn" >/dev/null || die "unknown scenario $scn (see: $0 list)"
    mkdir -p "$out"
    rm -f "$out"/gw.pcap "$out"/*.json "$out"/*.log "$out"/*.txt "$out"/spec.tsv
    SPEC="$out/spec.tsv"; : >"$SPEC"
    M_RELAYED=false; M_APP=""; M_KIND=""; M_CTRL=""; M_HUMAN=farm; M_EVENTS=""; M_NOTE=""
    set_link_delays "$d" "$j" "$NEAR_DELAY_MS" "$NEAR_JITTER_MS" "$seed"
    set_lan_loss "$LAN_LOSS_PCT"
    ph=$(ping_median farm "$OP"); pd=$(ping_median farm "$SRV")
    log "run $scn op_delay=${d}ms jitter=${j}ms near=${NEAR_DELAY_MS}ms near_jitter=${NEAR_JITTER_MS}ms lan=${LAN_DELAY_MS}ms lan_jitter=${LAN_JITTER_MS}ms lan_rate=${LAN_RATE_KBIT}kbit lan_bulk=$LAN_BULK loss=${LOSS_PCT}% reorder=${REORDER_PCT}% jitter_order=$JITTER_ORDER lan_loss=${LAN_LOSS_PCT}% op_rate=${OP_RATE_KBIT}kbit op_queue=${OP_QUEUE_MS}ms op_bulk=$OP_BULK seed=$seed -> $out (ping farm->op ${ph}ms, farm->srv ${pd}ms)"
    if [[ $OP_BULK == 1 ]]; then
        # Outside the capture (op -> inet -> srv), it only fills the operator's line.
        # Not through nsx (a function: its subshell would be the PID, and curl would outlive it).
        ip netns exec "${PFX}op" "${CURL_TLS[@]}" --max-time 3600 "https://$SRV_NAME/bytes/$((64 << 20))" \
            >"$out/bulk.log" 2>&1 &
        bulk=$!
        sleep 2   # the queue builds
    fi
    if [[ $LAN_BULK == 1 ]]; then
        # The laptop's own download through the LAN line's buffer; it crosses the capture point.
        # From a server port of its own (9443), so that no scenario's flow pattern claims it.
        ip netns exec "${PFX}srv" "$PY" "$HELPERS/https_server.py" --bind "$SRV" --port 9443 \
            --cert "$STATE/tls/srv.crt" --key "$STATE/tls/srv.key" >"$out/lan_bulk_server.log" 2>&1 &
        lanbulksrv=$!
        wait_port srv "$SRV" 9443 15 || die "the LAN download's server on srv:9443 did not start"
        ip netns exec "${PFX}farm" "${CURL_TLS[@]}" --max-time 3600 --resolve "$SRV_NAME:9443:$SRV" \
            "https://$SRV_NAME:9443/bytes/$((1 << 30))" >"$out/lan_bulk.log" 2>&1 &
        lanbulk=$!
        sleep 2
    fi
    ip netns exec "${PFX}gw" tcpdump -i lan0 -n -U -s 0 -Z root -w "$out/gw.pcap" >"$out/tcpdump.log" 2>&1 </dev/null &
    cap=$!
    for _ in $(seq 50); do grep -q "listening on" "$out/tcpdump.log" 2>/dev/null && break; sleep 0.1; done
    sleep 0.3
    t0=$(date +%s.%N)
    # The scenario runs in a subshell (so set -e applies inside it); on exit
    # it stops its background processes and hands its metadata back via a file.
    set +e
    (
        set -e
        trap 'sleep 1; kill_run_pids; [[ -z $RUN_CLEANUP ]] || "$RUN_CLEANUP" || true; declare -p M_RELAYED M_APP M_KIND M_CTRL M_HUMAN M_EVENTS M_NOTE >"$out/.meta.sh"' EXIT
        "scn_$scn" "$out" "$seed"
    )
    rc=$?
    set -e
    t1=$(date +%s.%N)
    kill -INT "$cap" 2>/dev/null || true; wait "$cap" 2>/dev/null || true
    if [[ -n $bulk ]]; then kill "$bulk" 2>/dev/null || true; wait "$bulk" 2>/dev/null || true; fi
    if [[ -n $lanbulk ]]; then
        kill "$lanbulk" "$lanbulksrv" 2>/dev/null || true
        wait "$lanbulk" "$lanbulksrv" 2>/dev/null || true
    fi
    [[ $rc -eq 0 ]] || status="failed rc=$rc"
    [[ $rc -eq 3 ]] && status="skipped (dependency missing)"
    # shellcheck disable=SC1091
    [[ -f $out/.meta.sh ]] && source "$out/.meta.sh" && rm -f "$out/.meta.sh"
    [[ ! -f $STATE/srv_flight ]] || M_NOTE="$M_NOTE; $(cat "$STATE/srv_flight")"
    [[ $SRV_RATE_KBIT == 0 ]] || M_NOTE="$M_NOTE; srv's line at $SRV_RATE_KBIT kbit/s"
    [[ $SSH_CLIENT == ssh ]] || M_NOTE="$M_NOTE; ssh client $SSH_CLIENT: $("$SSH_CLIENT" -V 2>&1)"
    [[ -z $SSHD_BIN ]] || M_NOTE="$M_NOTE; sshd $SSHD_BIN: $("$SSHD_BIN" -V 2>&1 | head -n 1)"
    [[ -z $CLIENT_CPU_PCT ]] ||
        M_NOTE="$M_NOTE; ssh, HTTPS and browser clients limited to $CLIENT_CPU_PCT % of one CPU (RWLAB_CLIENT_CPU_PCT)"
    obfuscation=""
    [[ $M_APP == ssh && -n $M_EVENTS ]] && obfuscation="$(ssh_obfuscation)"
    "$PY" "$HELPERS/truth.py" --scenario "$scn" --spec "$SPEC" --pcap "$out/gw.pcap" --out "$out/truth.json" \
        --hosts "$HOSTS_JSON" --lan "$LAN_NET" --op-delay-ms "$d" --jitter-ms "$j" --near-delay-ms "$NEAR_DELAY_MS" --near-jitter-ms "$NEAR_JITTER_MS" \
        --lan-delay-ms "$LAN_DELAY_MS" --lan-jitter-ms "$LAN_JITTER_MS" --lan-rate-kbit "$LAN_RATE_KBIT" \
        --lan-queue-ms "$LAN_QUEUE_MS" --lan-bulk "$LAN_BULK" --loss-pct "$LOSS_PCT" --reorder-pct "$REORDER_PCT" --jitter-order "$JITTER_ORDER" --lan-loss-pct "$LAN_LOSS_PCT" \
        --op-rate-kbit "$OP_RATE_KBIT" --op-queue-ms "$OP_QUEUE_MS" --op-bulk "$OP_BULK" --seed "$seed" --relayed "$M_RELAYED" --app "$M_APP" --relay-kind "$M_KIND" --controlled "$M_CTRL" \
        --human-at "$M_HUMAN" --ping-hidden-ms "$ph" --ping-direct-ms "$pd" --started "$t0" --ended "$t1" \
        --events "$M_EVENTS" --ssh-obfuscation "$obfuscation" --status "$status" --note "$M_NOTE" >>"$out/scenario.log" 2>&1
    tail -n 1 "$out/scenario.log" >&2
    log "done $scn status=$status ($(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s)"
    # Result goes in RUN_RC, not the return status: calling run_one inside
    # `if`/`||` would make bash ignore `set -e` inside the scenario subshell.
    RUN_RC=$rc
}
RUN_RC=0

cmd_run() {
    [[ $# -ge 1 ]] || die "usage: $0 run SCENARIO|all [--op-delay-ms N] [--jitter-ms N] [--near-jitter-ms N] [--loss-pct P] [--reorder-pct P] [--jitter-order kept|free] [--lan-loss-pct P] [--lan-delay-ms N] [--lan-jitter-ms N] [--lan-rate-kbit N] [--lan-queue-ms N] [--lan-bulk] [--op-rate-kbit N] [--op-queue-ms N] [--op-bulk] [--seed N] [--out DIR]"
    local scn="$1"; shift
    local d=0 j=0 seed=1 out="" we_upped=0 s failed=0
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --op-delay-ms) d="$2"; shift 2 ;;
            --jitter-ms) j="$2"; shift 2 ;;
            --near-jitter-ms) NEAR_JITTER_MS="$2"; shift 2 ;;
            --loss-pct) LOSS_PCT="$2"; shift 2 ;;
            --reorder-pct) REORDER_PCT="$2"; shift 2 ;;
            --jitter-order) JITTER_ORDER="$2"; shift 2 ;;
            --lan-loss-pct) LAN_LOSS_PCT="$2"; shift 2 ;;
            --lan-delay-ms) LAN_DELAY_MS="$2"; shift 2 ;;
            --lan-jitter-ms) LAN_JITTER_MS="$2"; shift 2 ;;
            --lan-rate-kbit) LAN_RATE_KBIT="$2"; shift 2 ;;
            --lan-queue-ms) LAN_QUEUE_MS="$2"; shift 2 ;;
            --lan-bulk) LAN_BULK=1; shift ;;
            --op-rate-kbit) OP_RATE_KBIT="$2"; shift 2 ;;
            --op-queue-ms) OP_QUEUE_MS="$2"; shift 2 ;;
            --op-bulk) OP_BULK=1; shift ;;
            --seed) seed="$2"; shift 2 ;;
            --out) out="$2"; shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    [[ $d =~ ^[0-9]+$ && $seed =~ ^[0-9]+$ ]] || die "--op-delay-ms and --seed must be integers"
    local num='^[0-9]+(\.[0-9]+)?$'
    [[ -z $MAX_DOWNLOAD_BYTES || $MAX_DOWNLOAD_BYTES =~ ^[0-9]+$ ]] || die "RWLAB_MAX_DOWNLOAD_BYTES must be an integer"
    [[ $j =~ $num && $NEAR_JITTER_MS =~ $num && $NEAR_DELAY_MS =~ $num ]] ||
        die "--jitter-ms, --near-jitter-ms (RWLAB_NEAR_JITTER_MS) and RWLAB_NEAR_DELAY_MS must be numbers >= 0"
    [[ $LOSS_PCT =~ $num && $REORDER_PCT =~ $num && $LAN_LOSS_PCT =~ $num ]] &&
        awk -v l="$LOSS_PCT" -v r="$REORDER_PCT" -v w="$LAN_LOSS_PCT" 'BEGIN{exit !(l < 50 && r <= 100 && w < 50)}' ||
        die "--loss-pct (RWLAB_LOSS_PCT) and --lan-loss-pct (RWLAB_LAN_LOSS_PCT) must be numbers in [0, 50), --reorder-pct (RWLAB_REORDER_PCT) in [0, 100]"
    [[ $JITTER_ORDER == kept || $JITTER_ORDER == free ]] || die "--jitter-order (RWLAB_JITTER_ORDER) must be kept or free"
    [[ $LAN_DELAY_MS =~ $num && $LAN_JITTER_MS =~ $num ]] ||
        die "--lan-delay-ms (RWLAB_LAN_DELAY_MS) and --lan-jitter-ms (RWLAB_LAN_JITTER_MS) must be numbers >= 0"
    [[ $LAN_RATE_KBIT =~ ^[0-9]+$ && $LAN_QUEUE_MS =~ ^[0-9]+$ && $LAN_BULK =~ ^[01]$ ]] ||
        die "--lan-rate-kbit (RWLAB_LAN_RATE_KBIT) and --lan-queue-ms (RWLAB_LAN_QUEUE_MS) must be integers, RWLAB_LAN_BULK 0 or 1"
    [[ $LAN_BULK == 0 || $LAN_RATE_KBIT -gt 0 ]] || die "--lan-bulk needs --lan-rate-kbit: without a bottleneck there is no queue to fill"
    [[ $SRV_RATE_KBIT =~ ^[0-9]+$ ]] || die "RWLAB_SRV_RATE_KBIT must be an integer (kbit/s, 0: none)"
    [[ $OP_RATE_KBIT =~ ^[0-9]+$ && $OP_QUEUE_MS =~ ^[0-9]+$ && $OP_BULK =~ ^[01]$ ]] ||
        die "--op-rate-kbit (RWLAB_OP_RATE_KBIT) and --op-queue-ms (RWLAB_OP_QUEUE_MS) must be integers, RWLAB_OP_BULK 0 or 1"
    [[ $OP_BULK == 0 || $OP_RATE_KBIT -gt 0 ]] || die "--op-bulk needs --op-rate-kbit: without a bottleneck there is no queue to fill"
    # the LAN line is made by `up`: a lab already up without it cannot delay that link
    if is_up && [[ ! -f $STATE/lan_delay_line ]] || ! is_up && [[ ${RWLAB_LAN_DELAY_LINE:-0} != 1 ]]; then
        awk -v d="$LAN_DELAY_MS" -v j="$LAN_JITTER_MS" -v r="$LAN_RATE_KBIT" 'BEGIN{exit !(d == 0 && j == 0 && r == 0)}' ||
            die "--lan-delay-ms/--lan-jitter-ms/--lan-rate-kbit need the LAN delay line: bring the lab up with RWLAB_LAN_DELAY_LINE=1"
    fi
    if ! is_up; then cmd_up; we_upped=1; fi
    # shellcheck disable=SC2064
    trap "kill_run_pids; [[ $we_upped == 1 ]] && cmd_down" EXIT
    trap 'exit 130' INT TERM
    if [[ $scn == all ]]; then
        out="${out:-out/all-d$d-j$j-s$seed}"
        for s in "${SCENARIOS[@]}"; do
            run_one "$s" "$out/$s" "$d" "$j" "$seed"
            if [[ $RUN_RC -ne 0 ]]; then failed=$((failed + 1)); log "scenario $s failed (rc=$RUN_RC)"; fi
        done
        log "all: $(( ${#SCENARIOS[@]} - failed ))/${#SCENARIOS[@]} scenarios ok; results in $out"
        [[ $failed -eq 0 ]]
    else
        out="${out:-out/$scn-d$d-j$j-s$seed}"
        run_one "$scn" "$out" "$d" "$j" "$seed"
        return "$RUN_RC"
    fi
}

cmd_verify() {
    [[ $# -ge 1 ]] || die "usage: $0 verify RUN_DIR..."
    "$PY" "$HELPERS/verify.py" "$@"
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
        verify) cmd_verify "$@" ;;
        *) sed -n '2,5p' "$0"; exit 2 ;;
    esac
}
main "$@"
