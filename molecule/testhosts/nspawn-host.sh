#!/usr/bin/env bash
# Real systemd test hosts as systemd-nspawn containers on a private bridge.
#   nspawn-host.sh start NAME IP PUBKEY   boot NAME at IP (in 10.231.0.0/24), root ssh with PUBKEY
#   nspawn-host.sh stop NAME
# Works on a host whose PID 1 is not systemd (--keep-unit --register=no, own cgroup per guest).
# The bridge lets guests reach each other, this machine and the Debian mirror (net.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bridge=mmbr0 bridge_ip=10.231.0.1
state=/run/mlops-testhosts
cmd=$1 name=$2
dir=/var/lib/machines/$name
mkdir -p "$state"

bridge_up() { "$here/net.sh" up "$bridge" "$bridge_ip/24"; }

cgroups() { for h in unified systemd; do [ -d "/sys/fs/cgroup/$h" ] && echo "/sys/fs/cgroup/$h/mlops-testhosts/$name"; done; }

case $cmd in
start)
  ip=$3 pubkey=$4
  rootfs=$("$here/build-rootfs.sh")
  bridge_up
  "$0" stop "$name" >/dev/null 2>&1 || true
  mkdir -p "$dir" && tar -C "$dir" -xf "$rootfs"
  echo "$name" >"$dir/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 %s\n%s\n' "$name" "$("$here/net.sh" hosts-line)" >"$dir/etc/hosts"
  install -m 0600 "$pubkey" "$dir/root/.ssh/authorized_keys"
  for cg in $(cgroups); do mkdir -p "$cg"; done
  (
    for cg in $(cgroups); do echo $BASHPID >"$cg/cgroup.procs"; done
    exec setsid systemd-nspawn --boot --keep-unit --register=no -M "$name" -D "$dir" \
      --network-bridge="$bridge" --capability=CAP_NET_ADMIN,CAP_NET_RAW --resolv-conf=off \
      </dev/null >"$state/$name.log" 2>&1
  ) &
  echo $! >"$state/$name.pid"
  leader=""
  for _ in $(seq 200); do leader=$(pgrep -P "$(cat "$state/$name.pid")" | head -1 || true); [ -n "$leader" ] && break; sleep 0.05; done
  [ -n "$leader" ] || { echo "nspawn-host: $name did not start; see $state/$name.log" >&2; exit 1; }
  echo "$leader" >"$state/$name.leader"
  for _ in $(seq 200); do nsenter -t "$leader" -n ip link show host0 >/dev/null 2>&1 && break; sleep 0.05; done
  nsenter -t "$leader" -n ip addr add "$ip/24" dev host0
  nsenter -t "$leader" -n ip link set host0 up
  nsenter -t "$leader" -n ip route add default via "$bridge_ip"
  status=""
  for _ in $(seq 600); do
    status=$(nsenter -t "$leader" -a systemctl is-system-running 2>/dev/null || true)
    case $status in running | degraded) break ;; esac
    sleep 0.1
  done
  echo "$name: $ip, systemd $status"
  ;;
stop)
  if [ -f "$state/$name.pid" ]; then
    pid=$(cat "$state/$name.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  for cg in $(cgroups); do find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true; done
  rm -rf "$dir" "$state/$name".*
  ;;
*)
  echo "usage: $0 start NAME IP PUBKEY | stop NAME" >&2
  exit 2
  ;;
esac
