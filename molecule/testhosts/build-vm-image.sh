#!/usr/bin/env bash
# Build (once) a bootable Debian 12 disk image for test VMs, where the kernel matters
# (nfsd, NFS client, iSCSI, kernel modules, sysctls, swap). No installer: mmdebstrap into a
# directory, then mkfs.ext4 -d into a raw image; kernel and initrd are kept beside it for
# QEMU's direct kernel boot. Cached under a name derived from the hash of the files it uses.
# Prints the directory holding base.raw, vmlinuz, initrd.img and the ssh key id_ed25519.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${MLOPS_TESTHOST_CACHE:-/var/cache/mlops-metal/testhosts}
tag=$(cat "$here/build-vm-image.sh" "$here/keep-installed-in-apt-lists.sh" "$here/shipped_code_pyc.py" | sha256sum | cut -c1-12)
out="$cache/vm-$tag"
mkdir -p "$out"
# One build at a time: a second caller waits, then finds the image (a build deletes and
# recreates its root filesystem directory, under any caller running alongside).
exec 9>"$out/.lock"
flock 9
if [ -s "$out/base.raw" ]; then echo "$out"; exit 0; fi
mirror=$("$here/net.sh" mirror-uri)
[ -f "$out/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C mlops-metal-testvm -f "$out/id_ed25519"
rootfs="$out/rootfs"
rm -rf "$rootfs"
# Preinstalled: every Debian package the host roles declare (roles/*/vars/{main,Debian}.yml; a unit
# test keeps this list in step). Under software emulation an apt install in a VM costs minutes
# per package set; here they cost one apt run at build time, cached. The roles' install tasks
# still run in the VMs and find them present. Every service is installed but off, as on a host
# nobody configured yet (firewalld, nfs-server, iscsid, multipathd, keepalived): the roles turn them on, and
# no node runs an NFS server it never asked for. No initiator name either: each VM's iscsi role
# generates its own, as on hosts cloned from one template.
# The initrd holds only what mounting /dev/vda needs (MODULES=list: virtio_pci, virtio_blk,
# ext4): 7 MB instead of 30 MB to unpack and run under emulation. update_initramfs=no:
# regenerating it in a VM costs minutes, and the VMs boot the kernel and initrd kept outside.
# apt's binary cache is built here, not by the first apt task in each VM (18 s there).
mmdebstrap --variant=minbase --mode=root --skip=cleanup/apt/lists,cleanup/apt/cache \
  --include=linux-image-amd64,initramfs-tools,zstd,systemd,systemd-sysv,dbus,udev,kmod,openssh-server,python3,python3-apt,iproute2,procps,ca-certificates,sudo,netbase,chrony,curl,tar,conntrack,socat,nfs-common,firewalld,python3-firewall,open-iscsi,multipath-tools,nfs-kernel-server,keepalived \
  --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d"; printf "COMPRESS=zstd\nMODULES=list\n" > "$1/etc/initramfs-tools/conf.d/testvm"' \
  --customize-hook='rm -f "$1/etc/hostname"; printf "/dev/vda / ext4 defaults,errors=remount-ro 0 1\n" > "$1/etc/fstab"' \
  --customize-hook='chroot "$1" systemctl enable systemd-networkd systemd-network-generator' \
  --customize-hook='chroot "$1" systemctl disable firewalld nfs-server iscsid.socket iscsid open-iscsi multipathd.socket multipathd keepalived' \
  --customize-hook='rm -f "$1/etc/iscsi/initiatorname.iscsi"' \
  --customize-hook='chroot "$1" systemctl mask systemd-networkd-wait-online.service getty@tty1.service apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service' \
  --customize-hook='mkdir -p "$1/root/.ssh"; chmod 700 "$1/root/.ssh"' \
  --customize-hook="install -m 0600 '$out/id_ed25519.pub' \"\$1/root/.ssh/authorized_keys\"" \
  --customize-hook='printf "virtio_pci\nvirtio_blk\next4\n" >> "$1/etc/initramfs-tools/modules"; kver=$(ls "$1/lib/modules"); chroot "$1" mkinitramfs -o "/boot/initrd.img-$kver" "$kver"' \
  --customize-hook='sed -i "s/^update_initramfs=.*/update_initramfs=no/" "$1/etc/initramfs-tools/update-initramfs.conf"' \
  --customize-hook="install -D -m 0644 '$here/shipped_code_pyc.py' \"\$1/usr/local/lib/python3.11/dist-packages/shipped_code_pyc.py\"" \
  --customize-hook='echo "import shipped_code_pyc" > "$1/usr/local/lib/python3.11/dist-packages/shipped_code_pyc.pth"' \
  --customize-hook='printf "Acquire::Languages \"none\";\n" > "$1/etc/apt/apt.conf.d/99nolang"' \
  --customize-hook="$here/keep-installed-in-apt-lists.sh" \
  --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb; chroot "$1" apt-cache gencaches' \
  bookworm "$rootfs" "deb $mirror bookworm main" "deb $mirror bookworm-updates main" >&2
# stdout carries only the result path: callers read it.
cp -L "$rootfs/vmlinuz" "$out/vmlinuz"
cp -L "$rootfs/initrd.img" "$out/initrd.img"
mkfs.ext4 -q -F -L vmroot -d "$rootfs" "$out/base.raw.partial" 4G >&2
rm -rf "$rootfs"
mv "$out/base.raw.partial" "$out/base.raw"
echo "$out"
