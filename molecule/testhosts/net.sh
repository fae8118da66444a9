#!/usr/bin/env bash
# Private bridge for test hosts, with egress limited to the configured Debian apt mirror.
#   net.sh up BRIDGE GATEWAY_IP/24     net.sh down BRIDGE
#   net.sh hosts-line                  "IP NAME" of the mirror, for a guest's /etc/hosts
#   net.sh mirror-uri                  the Debian mirror this machine's apt uses
# Guests get no DNS (the host's resolver is not theirs to use): the mirror is pinned instead.
# Guests talk to each other and to this machine; leaving the bridge they may reach only the
# apt mirror on tcp 80/443 (NAT). Everything else is dropped: tests send no traffic elsewhere.
set -euo pipefail
cmd=$1 bridge=${2:-}
chain=MM-${bridge^^}
mirror_uri() {
  local uri
  uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '/^deb / && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || { echo "net.sh: no Debian mirror found in /etc/apt" >&2; return 1; }
  echo "$uri"
}
mirror_host() { mirror_uri | sed -E 's#^[a-z]+://([^/:]+).*#\1#'; }
mirror_ips() {
  local host
  host=$(mirror_host)
  [ -n "$host" ] && getent ahostsv4 "$host" | awk '{print $1}' | sort -u
}
case $cmd in
up|down)
  # Scenarios side by side each bring the bridge up: one at a time, so no call flushes the
  # chain while another is filling it.
  mkdir -p /run/lock
  exec 8>"/run/lock/mlops-net-$bridge.lock"
  flock 8
  ;;
esac
case $cmd in
up)
  gateway=$3
  net=$(python3 -c "import ipaddress,sys; print(ipaddress.ip_interface(sys.argv[1]).network)" "$gateway")
  ip link show "$bridge" >/dev/null 2>&1 || ip link add "$bridge" type bridge
  ip addr replace "$gateway" dev "$bridge"
  ip link set "$bridge" up
  sysctl -qw net.ipv4.ip_forward=1
  iptables -t nat -C POSTROUTING -s "$net" ! -o "$bridge" -j MASQUERADE 2>/dev/null ||
    iptables -t nat -A POSTROUTING -s "$net" ! -o "$bridge" -j MASQUERADE
  iptables -N "$chain" 2>/dev/null || iptables -F "$chain"
  iptables -C FORWARD -j "$chain" 2>/dev/null || iptables -I FORWARD 1 -j "$chain"
  iptables -A "$chain" -i "$bridge" -o "$bridge" -j ACCEPT
  iptables -A "$chain" -o "$bridge" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  for ip in $(mirror_ips); do
    iptables -A "$chain" -i "$bridge" -d "$ip" -p tcp -m multiport --dports 80,443 -j ACCEPT
  done
  iptables -A "$chain" -i "$bridge" -j DROP
  iptables -A "$chain" -o "$bridge" -j DROP
  ;;
mirror-uri) mirror_uri ;;
hosts-line)
  host=$(mirror_host)
  for ip in $(mirror_ips); do echo "$ip $host"; break; done
  ;;
down)
  ip link del "$bridge" 2>/dev/null || true
  iptables -D FORWARD -j "$chain" 2>/dev/null || true
  iptables -F "$chain" 2>/dev/null || true
  iptables -X "$chain" 2>/dev/null || true
  ;;
*)
  echo "usage: $0 up BRIDGE GATEWAY/PREFIX | down BRIDGE" >&2
  exit 2
  ;;
esac
