#!/usr/bin/env bash
# Real test VMs under QEMU (software emulation: /dev/kvm here cannot run a stock kernel).
#   vm-host.sh start NAME IP [NAME IP ...]
#                                boot each NAME at its IP (in 10.232.0.0/24) from a copy-on-write
#                                overlay, all at once; returns when every one answers on ssh
#   vm-host.sh stop NAME         stop QEMU and delete the overlay
#   vm-host.sh key               print the ssh private key that logs in as root
# Direct kernel boot; the guest's network comes from the kernel command line. Everything the
# tests do not use is left out, since under emulation each probed device and loaded driver
# costs boot time: no default devices (VGA, parallel port, CD drive), no drivers for the
# emulated CPU's virtualisation extensions, watchdog or PC speaker, and `quiet` (every console
# byte is an emulated serial write). One VM alone: 62 s -> 52 s to booted.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bridge=mmvmbr0 bridge_ip=10.232.0.1
state=/run/mlops-testvms
mkdir -p "$state"
ssh_opts=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=2)
cmd=$1
case $cmd in
key) echo "$("$here/build-vm-image.sh")/id_ed25519" ;;
start)
  shift
  [ $# -ge 2 ] && [ $(($# % 2)) -eq 0 ] || { echo "usage: $0 start NAME IP [NAME IP ...]" >&2; exit 2; }
  # Shared by every VM of this call: worked out once, before they start side by side.
  image=$("$here/build-vm-image.sh")
  ssh_opts+=(-i "$image/id_ed25519")
  "$here/net.sh" up "$bridge" "$bridge_ip/24"
  mirror_hosts_line=$("$here/net.sh" hosts-line)
  # Each VM boots in the background; this returns once all answer on ssh, or fails if any
  # does not (its console log tail is printed).
  start_one() {
    local name=$1 ip=$2
    "$0" stop "$name" >/dev/null 2>&1 || true
    tap="mmt-$name"
    tap=${tap:0:15}
    ip link show "$tap" >/dev/null 2>&1 || ip tuntap add dev "$tap" mode tap
    ip link set "$tap" master "$bridge" up
    qemu-img create -q -f qcow2 -b "$image/base.raw" -F raw "$state/$name.qcow2"
    mac=52:54:00:$(printf '%s' "$name" | md5sum | sed -E 's/^(..)(..)(..).*/\1:\2:\3/')
    qemu-system-x86_64 -nodefaults -accel tcg,thread=multi,tb-size=128 -cpu max -machine q35 -smp "${VM_CPUS:-1}" -m "${VM_MEMORY:-1024}" \
      -name "$name" -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
      -append "root=/dev/vda rw console=ttyS0 quiet modprobe.blacklist=kvm,kvm_amd,kvm_intel,iTCO_wdt,cfg80211,pcspkr net.ifnames=0 systemd.hostname=$name ip=$ip::$bridge_ip:255.255.255.0:$name:eth0:off" \
      -drive "file=$state/$name.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap" \
      -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" -device "virtio-net-pci,netdev=n0,mac=$mac" \
      -device virtio-rng-pci -display none -serial "file:$state/$name.console.log" -monitor none \
      -pidfile "$state/$name.pid" -daemonize
    # No DNS for guests: pin the apt mirror, the only address they may reach outside. Writing
    # that is also the readiness probe, so a slow second login on a loaded host cannot fail it.
    pin_mirror="printf '127.0.0.1 localhost\n127.0.1.1 %s\n%s\n' $name '$mirror_hosts_line' >/etc/hosts && : >/etc/resolv.conf"
    deadline=$(( $(date +%s) + ${VM_BOOT_TIMEOUT:-300} ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
      if ssh "${ssh_opts[@]}" "root@$ip" "$pin_mirror" 2>/dev/null; then
        echo "$name: $ip, ssh ready"
        return 0
      fi
      kill -0 "$(cat "$state/$name.pid")" 2>/dev/null || { echo "$name: qemu exited" >&2; tail -20 "$state/$name.console.log" >&2; return 1; }
      sleep 1
    done
    echo "$name: no ssh after ${VM_BOOT_TIMEOUT:-300} s" >&2
    tail -30 "$state/$name.console.log" >&2
    return 1
  }
  pids=()
  while [ $# -ge 2 ]; do
    start_one "$1" "$2" &
    pids+=($!)
    shift 2
  done
  failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  exit $failed
  ;;
stop)
  name=$2
  # No clean shutdown: the overlay is deleted right after, so nothing in the guest is worth
  # flushing, and an emulated poweroff cost ~20 s per scenario. QEMU exits on SIGTERM.
  if [ -f "$state/$name.pid" ]; then
    pid=$(cat "$state/$name.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  tap="mmt-$name"
  ip link del "${tap:0:15}" 2>/dev/null || true
  rm -f "$state/$name".*
  ;;
*)
  echo "usage: $0 start NAME IP | stop NAME | key" >&2
  exit 2
  ;;
esac
