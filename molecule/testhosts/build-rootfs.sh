#!/usr/bin/env bash
# Build (once) the Debian 12 root filesystem our systemd test hosts boot: systemd as PID 1,
# python3 for Ansible, sshd. Cached as a tarball named after this script's hash, so a change
# here rebuilds it. Packages come from the apt mirror this machine is configured with.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${MLOPS_TESTHOST_CACHE:-/var/cache/mlops-metal/testhosts}
tag=$(sha256sum "$here/build-rootfs.sh" | cut -c1-12)
out="$cache/bookworm-systemd-$tag.tar"
if [ -s "$out" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache"
mirror=$("$here/net.sh" mirror-uri)
tmp="$out.partial"
# Keep apt lists so roles can install packages without an update; sshd regenerates host keys at boot.
mmdebstrap --variant=minbase --format=tar --skip=cleanup/apt/lists \
  --include=systemd,systemd-sysv,dbus,python3,python3-apt,iproute2,procps,openssh-server,ca-certificates,sudo,kmod \
  --customize-hook='chroot "$1" systemctl mask systemd-networkd-wait-online.service getty@tty1.service serial-getty@.service console-getty.service systemd-resolved.service 2>/dev/null || true' \
  --customize-hook='mkdir -p "$1/root/.ssh" && chmod 700 "$1/root/.ssh"' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*; mkdir -p "$1/etc/systemd/system/ssh.service.d"; printf "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n" > "$1/etc/systemd/system/ssh.service.d/keygen.conf"' \
  bookworm "$tmp" "deb $mirror bookworm main" "deb $mirror bookworm-updates main" >&2
mv "$tmp" "$out"
echo "$out"
