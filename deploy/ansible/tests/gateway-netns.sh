#!/usr/bin/env bash
# The gateway tier run for real, in network namespaces on this machine:
# the gateway role's files rendered by Ansible (tests/render.yml,
# tests/netns-inventory.yml), then
#
#   psn-gw1..3   keepalived + HAProxy + WireGuard (boringtun) each, as
#                rendered for netns-gw-1..3
#   psn-api1..3  API-server stand-ins: HTTPS on 6443, answering their name
#   psn-node     a host of the private network (a kubelet's view of the VIP)
#   psn-router   the OpenStack router and floating IP: 198.19.0.1:51820/udp
#                is the VIP's WireGuard port, nothing else from the public
#                side reaches the private network
#   psn-op       the operator, on the public side, with a WireGuard peer
#
# private network 198.18.0.0/24 (VIP .10, gateways .11-.13, stand-ins
# .21-.23, node .31), tunnel 198.18.100.0/24, public side 198.19.0.0/24:
# addresses of the benchmarking range that exist only inside these
# namespaces; nothing else is contacted. Prints what it measured:
#   - the VIP and a stand-in answering through the tunnel, and nothing
#     reachable from the public side without it;
#   - a stand-in stopped: HAProxy's time to take it out, the requests lost;
#   - the MASTER gateway's keepalived stopped (TRIALS times), a gateway cut
#     off the network, HAProxy stopped on the MASTER: the time until the VIP
#     is on another gateway, until the node and until the operator (through
#     the tunnel) get answers again.
#
# Needs root. Installs what is missing: Debian's haproxy, keepalived,
# wireguard-tools, nftables, socat; boringtun-cli from crates.io (cargo);
# the Ansible of terraform/checks/install-tools. Everything it creates is
# removed when it ends, on failure too.
#   deploy/ansible/tests/gateway-netns.sh [TRIALS]     (KEEP_LOGS=1 keeps the logs)
set -euo pipefail

TRIALS=${1:-3}
VIP=198.18.0.10
PUBLIC=198.19.0.1
TUNNEL_OP=198.18.100.2
NS=(psn-sw psn-router psn-op psn-node psn-gw1 psn-gw2 psn-gw3 psn-api1 psn-api2 psn-api3)

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
ansible_dir=$(cd "$here/.." && pwd)
root=$(cd "$ansible_dir/../.." && pwd)
venv=$root/.pagestream/infra-cluster/venv

if ((EUID != 0)); then
    echo "gateway-netns: needs root (network namespaces)" >&2
    exit 2
fi

# --- tools --------------------------------------------------------------
debs=()
command -v haproxy >/dev/null || debs+=(haproxy)
command -v keepalived >/dev/null || debs+=(keepalived)
command -v wg >/dev/null || debs+=(wireguard-tools)
command -v nft >/dev/null || debs+=(nftables)
command -v socat >/dev/null || debs+=(socat)
if ((${#debs[@]})); then
    echo "gateway-netns: installing ${debs[*]} (Debian; no service is started)"
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        remove_policy=1
    fi
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${debs[@]}" >/dev/null
    [[ -n ${remove_policy:-} ]] && rm -f /usr/sbin/policy-rc.d
fi
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v boringtun-cli >/dev/null; then
    echo "gateway-netns: installing boringtun-cli 0.7.1 (crates.io)"
    cargo install boringtun-cli --version 0.7.1 --locked -j 1 --quiet
fi
[[ -x $venv/bin/ansible-playbook ]] || "$root/terraform/checks/install-tools"

# --- set-up and clean-up -------------------------------------------------
work=$(mktemp -d /run/gateway-netns.XXXXXX)
chmod 0700 "$work"
cleanup() {
    local ns
    cat "$work"/*.pid 2>/dev/null | xargs -r kill 2>/dev/null || true
    sleep 0.3
    for ns in "${NS[@]}"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -f /var/run/wireguard/wg-psn-*.sock
    if [[ -n ${KEEP_LOGS:-} ]]; then echo "gateway-netns: logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nsx() { # NS COMMAND...
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

for ns in "${NS[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    nsx "$ns" ip link set lo up
done
# Two bridges nsx psn-sw: the private network and the public side.
nsx psn-sw ip link add br-priv type bridge
nsx psn-sw ip link add br-pub type bridge
nsx psn-sw ip link set br-priv up
nsx psn-sw ip link set br-pub up
link() { # NS IFNAME BRIDGE ADDRESS/PREFIX
    local ns=$1 ifname=$2 bridge=$3 addr=$4 peer="v-${1#psn-}-$2"
    ip link add "$peer" netns psn-sw type veth peer name "$ifname" netns "$ns"
    nsx psn-sw ip link set "$peer" master "$bridge" up
    nsx "$ns" ip addr add "$addr" dev "$ifname"
    nsx "$ns" ip link set "$ifname" up
}
link psn-router eth0 br-priv 198.18.0.1/24
link psn-router eth1 br-pub "$PUBLIC/24"
link psn-op eth0 br-pub 198.19.0.50/24
link psn-node eth0 br-priv 198.18.0.31/24
for i in 1 2 3; do
    link "psn-gw$i" eth0 br-priv "198.18.0.1$i/24"
    link "psn-api$i" eth0 br-priv "198.18.0.2$i/24"
done
for ns in psn-node psn-gw1 psn-gw2 psn-gw3 psn-api1 psn-api2 psn-api3; do
    nsx "$ns" ip route add default via 198.18.0.1
done
# What terraform's subnet route does: the tunnel's addresses via the VIP.
for ns in psn-node psn-api1 psn-api2 psn-api3; do
    nsx "$ns" ip route add 198.18.100.0/24 via "$VIP"
done
nsx psn-op ip route add default via "$PUBLIC"

# The router: the floating IP's WireGuard port is the VIP's, public packets
# reach nothing else. boringtun answers from the gateway's own address
# where the kernel's WireGuard answers from the one it was reached on (the
# VIP), so the translation is stateless both ways: a gateway's answer
# leaves as the floating IP's whichever gateway sends it.
nsx psn-router sysctl -qw net.ipv4.ip_forward=1
nsx psn-router nft -f - <<EOF
table ip floating {
    chain raw {
        type filter hook prerouting priority raw; policy accept;
        udp dport 51820 notrack
        udp sport 51820 notrack
    }
    chain in {
        type filter hook prerouting priority mangle; policy accept;
        iifname "eth1" ip daddr $PUBLIC udp dport 51820 ip daddr set $VIP
    }
    chain out {
        type filter hook postrouting priority mangle; policy accept;
        oifname "eth1" udp sport 51820 ip saddr set $PUBLIC
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        iifname "eth1" oifname "eth0" ip daddr $VIP udp dport 51820 accept
        iifname "eth0" oifname "eth1" accept
        ct state established,related accept
    }
}
EOF

# --- the gateway role's files -------------------------------------------
gw_key=$(wg genkey)
op_key=$(wg genkey)
cat >"$work/vars.json" <<EOF
{
  "vault_wireguard_private_key": "$gw_key",
  "gateway_wireguard_peers": [
    {"name": "operator", "public_key": "$(echo "$op_key" | wg pubkey)", "address": "$TUNNEL_OP"}
  ]
}
EOF
echo "gateway-netns: rendering the gateway role's files (ansible, connection local)"
(cd "$ansible_dir" && "$venv/bin/ansible-playbook" -i tests/netns-inventory.yml tests/render.yml \
    --limit gateways -e render_dir="$work/render" -e @"$work/vars.json" >"$work/ansible.log") || {
    cat "$work/ansible.log" >&2
    exit 1
}
for i in 1 2 3; do
    haproxy -c -q -f "$work/render/netns-gw-$i/haproxy.cfg"
    keepalived --config-test -f "$work/render/netns-gw-$i/keepalived.conf"
done
echo "gateway-netns: haproxy -c and keepalived --config-test accept the 3 gateways' files"

# --- API-server stand-ins -------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=kube-apiserver -keyout "$work/api.key" -out "$work/api.crt" 2>/dev/null
cat >"$work/api.py" <<'EOF'
import http.server, ssl, sys
name = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{name}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # HAProxy's checks close without a TLS close_notify
server = Server(("0.0.0.0", 6443), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
EOF
# (ip netns exec execs the program: $! is its process.)
start_api() { # N
    ip netns exec "psn-api$1" python3 "$work/api.py" "api$1" "$work/api.crt" "$work/api.key" \
        2>>"$work/api$1.log" &
    echo $! >"$work/api$1.pid"
}

# --- gateways -------------------------------------------------------------
start_haproxy() { # N: -n 4000, as the open-files limit here is below what maxconn 20000 needs
    nsx "psn-gw$1" haproxy -D -n 4000 -f "$work/render/netns-gw-$1/haproxy.cfg" -p "$work/haproxy$1.pid"
}
start_keepalived() { # N
    ip netns exec "psn-gw$1" keepalived -n -l -f "$work/render/netns-gw-$1/keepalived.conf" \
        -p "$work/keepalived$1.main" -r "$work/keepalived$1.vrrp" -c "$work/keepalived$1.check" \
        >>"$work/keepalived$1.log" 2>&1 &
    echo $! >"$work/keepalived$1.pid"
}
start_wireguard() { # NS IFNAME
    WG_SUDO=1 nsx "$1" boringtun-cli "$2" --disable-drop-privileges --log "$work/$2.log"
    sleep 0.2
}
for i in 1 2 3; do start_api "$i"; done
for i in 1 2 3; do
    nsx "psn-gw$i" sysctl -q -p "$work/render/netns-gw-$i/sysctl.conf"
    start_haproxy "$i"
    start_wireguard "psn-gw$i" "wg-psn-gw$i"
    nsx "psn-gw$i" wg setconf "wg-psn-gw$i" <(wg-quick strip "$work/render/netns-gw-$i/wg.conf" 2>/dev/null)
    nsx "psn-gw$i" ip addr add "$(sed -n 's/^Address = //p' "$work/render/netns-gw-$i/wg.conf")" dev "wg-psn-gw$i"
    nsx "psn-gw$i" ip link set "wg-psn-gw$i" up
    pgrep -f "boringtun-cli wg-psn-gw$i" >"$work/wg$i.pid"
done
for i in 1 2 3; do start_keepalived "$i"; done
# The operator's peer: the gateways' key, at the floating IP.
start_wireguard psn-op wg-psn-op
nsx psn-op wg set wg-psn-op private-key <(echo "$op_key") \
    peer "$(echo "$gw_key" | wg pubkey)" endpoint "$PUBLIC:51820" \
    allowed-ips 198.18.0.0/24,198.18.100.0/24 persistent-keepalive 5
nsx psn-op ip addr add "$TUNNEL_OP/24" dev wg-psn-op
nsx psn-op ip link set wg-psn-op up
nsx psn-op ip route add 198.18.0.0/24 dev wg-psn-op
pgrep -f "boringtun-cli wg-psn-op" >"$work/wgop.pid"

holder() { # which gateway has the VIP (1 2 3), or nothing
    local i
    for i in 1 2 3; do
        nsx "psn-gw$i" ip -4 -o addr show dev eth0 | grep -q " $VIP/" && echo "$i"
    done
    return 0
}
get() { # NS URL [TIMEOUT]: the body, or nothing
    nsx "$1" curl -sk --max-time "${3:-1}" "$2" 2>/dev/null || true
}
wait_until() { # LIMIT_S COMMAND...: poll every 0.05 s; the seconds it took, or "timeout"
    local start limit=$1
    start=$(now)
    shift
    while ! "$@"; do
        if awk -v s="$(since "$start")" -v l="$limit" 'BEGIN { exit !(s > l) }'; then
            echo timeout
            return 1
        fi
        sleep 0.05
    done
    since "$start"
}
answers() { [[ -n $(get "$1" "https://$VIP:6443/" 0.5) ]]; }
one_holder() { [[ $(holder | wc -w) == 1 ]]; }

echo "gateway-netns: waiting for a MASTER"
wait_until 15 one_holder >/dev/null
wait_until 30 answers psn-op >/dev/null || { echo "the VIP does not answer through the tunnel" >&2; exit 1; }

# --- 1. through the tunnel, and not without it ----------------------------
echo
echo "== WireGuard: the only way in"
m=$(holder)
seen=$(for _ in 1 2 3 4 5 6; do get psn-op "https://$VIP:6443/"; done | sort | uniq -c | awk '{printf "%s x%s ", $2, $1}')
printf '  VIP %s:6443 through the tunnel (MASTER netns-gw-%s), 6 requests: %s\n' "$VIP" "$m" "$seen"
printf '  a stand-in (198.18.0.22:6443) through the tunnel:          %s\n' "$(get psn-op https://198.18.0.22:6443/ 2)"
nsx psn-op ip route replace 198.18.0.0/24 via "$PUBLIC"
for target in "$VIP:6443" 198.18.0.22:6443 "$PUBLIC:6443"; do
    start=$(now)
    out=$(get psn-op "https://$target/" 3)
    printf '  without the tunnel, https://%-18s %s after %ss\n' "$target:" "${out:-no answer}" "$(since "$start")"
    [[ -z $out ]] || { echo "reached the private network without the tunnel" >&2; exit 1; }
done
nsx psn-op ip route replace 198.18.0.0/24 dev wg-psn-op

# --- 2. a stand-in stops ----------------------------------------------------
echo
echo "== HAProxy: an API server stops"
m=$(holder)
state() { # N SERVER: UP or DOWN in gateway N's HAProxy
    echo "show stat" | nsx "psn-gw$1" socat - "UNIX-CONNECT:$work/render/netns-gw-$1/admin.sock" |
        awk -F, -v s="$2" '$1 == "kube-api" && $2 == s { print $18 }'
}
is_state() { [[ $(state "$1" "$2") == "$3"* ]]; }
kill "$(cat "$work/api2.pid")"
down=$(wait_until 15 is_state "$m" master-2 DOWN) || true
after=$(for _ in 1 2 3 4 5 6; do get psn-node "https://$VIP:6443/"; done | sort | uniq -c | awk '{printf "%s x%s ", $2, $1}')
printf '  api2 stopped: marked DOWN by netns-gw-%s after %ss (inter 2s, fall 2)\n' "$m" "$down"
printf '  then 6 requests to the VIP: %s\n' "$after"
start_api 2
up=$(wait_until 15 is_state "$m" master-2 UP)
printf '  api2 started again: UP after %ss (rise 2)\n' "$up"

lost_requests() { # during the checks' detection: requests that failed
    local ok=0 lost=0 i
    for i in $(seq 30); do
        if [[ -n $(get psn-node "https://$VIP:6443/" 1) ]]; then ok=$((ok + 1)); else lost=$((lost + 1)); fi
        sleep 0.1
    done
    echo "$lost of $((ok + lost))"
}
kill "$(cat "$work/api3.pid")"
printf '  api3 stopped, 30 requests at 0.1 s intervals meanwhile: %s failed (retries 2, redispatch)\n' "$(lost_requests)"
start_api 3
wait_until 15 is_state "$m" master-3 UP >/dev/null

# --- 3. failover of the VIP -------------------------------------------------
echo
echo "== keepalived: the VIP moves"
results=()
trial() { # KIND: stop (SIGTERM keepalived), cut (the MASTER's link down), haproxy (kill HAProxy)
    local kind=$1 m t_vip t_node t_op start
    wait_until 30 one_holder >/dev/null
    wait_until 30 answers psn-op >/dev/null
    m=$(holder)
    start=$(now)
    case $kind in
        stop) kill "$(cat "$work/keepalived$m.pid")" ;;
        cut) nsx "psn-gw$m" ip link set eth0 down ;;
        haproxy) kill "$(cat "$work/haproxy$m.pid")" ;;
    esac
    other_holder() { local h; h=$(holder | tr -d "$m" | tr -d ' \n'); [[ -n $h ]]; }
    t_vip=$(wait_until 20 other_holder) || true
    t_node=$(awk -v s="$(since "$start")" 'BEGIN { printf "%.2f", s }')
    t_node=$(wait_until 20 answers psn-node | awk -v base="$t_node" '$1 != "timeout" { printf "%.2f", $1 + base } $1 == "timeout" { print }') || true
    t_op=$(awk -v s="$(since "$start")" 'BEGIN { printf "%.2f", s }')
    t_op=$(wait_until 40 answers psn-op | awk -v base="$t_op" '$1 != "timeout" { printf "%.2f", $1 + base } $1 == "timeout" { print }') || true
    printf '  %-8s netns-gw-%s -> netns-gw-%s: VIP moved %6ss, node answered %6ss, operator (tunnel) %6ss\n' \
        "$kind" "$m" "$(holder | tr -d "$m" | tr -d ' \n')" "$t_vip" "$t_node" "$t_op"
    results+=("$kind $t_vip $t_node $t_op")
    # Back to three gateways (nopreempt: the restored one stays BACKUP).
    case $kind in
        stop) start_keepalived "$m" ;;
        cut)
            # The link's routes went with it; a real host gets them back from DHCP.
            nsx "psn-gw$m" ip link set eth0 up
            nsx "psn-gw$m" ip route replace default via 198.18.0.1
            ;;
        haproxy) start_haproxy "$m" ;;
    esac
    sleep 3
}
for _ in $(seq "$TRIALS"); do trial stop; done
trial haproxy
trial cut

echo
echo "== summary (seconds; operator = through the WireGuard tunnel)"
printf '%s\n' "${results[@]}" | awk '
    { n[$1]++; v[$1] += $2; nd[$1] += $3; op[$1] += $4; if ($4 > mx[$1]) mx[$1] = $4 }
    END { for (k in n) printf "  %-8s %d trial(s): VIP %.2f, node %.2f, operator %.2f (max %.2f) on average\n", k, n[k], v[k] / n[k], nd[k] / n[k], op[k] / n[k], mx[k] }'
echo "gateway-netns: done"
