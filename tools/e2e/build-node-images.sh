#!/usr/bin/env bash
# Builds the live tier node's own images, with no registry: the pause (sandbox) image compiled
# from the C source that ships in the k8s.io/kubernetes module, a probe image (Debian's
# busybox-static) for smoke pods and helper pods, and the cluster add-ons from the binaries
# build-components.sh made (CoreDNS, MetalLB, local-path-provisioner). Each is an OCI archive
# that containerd imports.
#   build-node-images.sh BIN_DIR    prints the image directory: <name>.tar per image, images.txt (ref digest)
# Tags are derived from content; commits use a fixed timestamp, so the same inputs give the
# same digest.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${MLOPS_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops-metal/e2e}
registry=${MLOPS_E2E_REGISTRY:-registry.local/mlops-e2e}
bin=${1:?usage: build-node-images.sh BIN_DIR (from build-components.sh)}
for tool in buildah gcc; do
  command -v $tool >/dev/null || { echo "node images: $tool is required (make e2e-deps)" >&2; exit 1; }
done
[ -x /bin/busybox ] || { echo "node images: /bin/busybox (busybox-static) is required" >&2; exit 1; }

# dir module [field]: a field of a wrapper module's requirement (its version by default).
module_version() { (cd "$here/$1" && GOFLAGS=-mod=mod go list -m -f "{{.${3:-Version}}}" "$2"); }
# The add-on images: name, binary in BIN_DIR, user, version.
addons=(
  "coredns coredns 65532 $(module_version coredns github.com/coredns/coredns)"
  "metallb-controller controller 65534 $(module_version metallb go.universe.tf/metallb)"
  # The speaker answers ARP through a raw socket: root with NET_RAW alone (see its DaemonSet).
  "metallb-speaker speaker 0 $(module_version metallb go.universe.tf/metallb)"
  "local-path-provisioner local-path-provisioner 65534 $(module_version localpath github.com/rancher/local-path-provisioner)"
)
pause_src=$(module_version kube k8s.io/kubernetes Dir)/build/pause
pause_tag=$(sed -n 's/^TAG ?= //p' "$pause_src/Makefile")
key=$( (cat "$pause_src/linux/pause.c" /bin/busybox "${BASH_SOURCE[0]}"
  for addon in "${addons[@]}"; do read -r _ binary _ _ <<<"$addon"; cat "$bin/$binary"; done
  echo "$registry" "${addons[@]}") | sha256sum | cut -c1-16)
out=$cache/node-images-$key
if [ -f "$out/.complete" ]; then echo "$out"; exit 0; fi
rm -rf "$out" && mkdir -p "$out"
work=$(mktemp -d)
# buildah keeps its own store in the cache (vfs: no overlay mounts left behind).
store=(--root "$cache/buildah/root" --runroot "$work/run" --storage-driver vfs)
trap 'buildah "${store[@]}" rm --all >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

# name tag entrypoint user file...: one layer of the given files (src:dest), from scratch.
image() {
  local name=$1 tag=$2 entrypoint=$3 user=$4 ctr ref
  shift 4
  ref=$registry/$name:$tag
  ctr=$(buildah "${store[@]}" from scratch)
  for spec in "$@"; do buildah "${store[@]}" copy "$ctr" "${spec%%:*}" "${spec#*:}" >/dev/null; done
  buildah "${store[@]}" config --entrypoint "$entrypoint" --user "$user" \
    --label org.opencontainers.image.source=mlops-metal "$ctr"
  buildah "${store[@]}" commit --quiet --rm --timestamp 0 "$ctr" "$ref" >/dev/null
  buildah "${store[@]}" push --quiet --digestfile "$work/digest" "$ref" "oci-archive:$out/$name.tar:$ref"
  buildah "${store[@]}" rmi "$ref" >/dev/null
  echo "$ref $(cat "$work/digest")" >>"$out/images.txt"
  echo "node images: $ref $(du -h "$out/$name.tar" | cut -f1)" >&2
}

# As upstream's build/pause/Makefile: static, -Os, version stamped.
gcc -Os -Wall -Werror -static -DVERSION="v$pause_tag-mlops" -o "$work/pause" "$pause_src/linux/pause.c"
strip "$work/pause"
image pause "$pause_tag-$(sha256sum "$work/pause" | cut -c1-12)" '["/pause"]' 65535:65535 "$work/pause:/pause"

mkdir -p "$work/probe/bin"
cp /bin/busybox "$work/probe/bin/busybox"
for applet in sh httpd wget nslookup cat ls mkdir rm sleep nc; do ln -s busybox "$work/probe/bin/$applet"; done
busybox_version=$(/bin/busybox 2>&1 | sed -n '1s/^BusyBox v\([0-9.]*\).*/\1/p')
image probe "$busybox_version-$(sha256sum /bin/busybox | cut -c1-12)" '["/bin/sh"]' 65534:65534 "$work/probe/bin:/bin"
for addon in "${addons[@]}"; do
  read -r name binary user version <<<"$addon"
  image "$name" "${version#v}-$(sha256sum "$bin/$binary" | cut -c1-12)" "[\"/$binary\"]" "$user:$user" "$bin/$binary:/$binary"
done
touch "$out/.complete"
find "$cache" -maxdepth 1 -name 'node-images-*' ! -path "$out" -exec rm -rf {} +
echo "$out"
