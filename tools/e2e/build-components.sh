#!/usr/bin/env bash
# Builds the live tier's cluster components from their upstream Go modules (Kubernetes control
# plane, kubelet, kube-proxy and kubectl at the k3s role's minor; etcd; CoreDNS; MetalLB;
# local-path-provisioner) into a cache outside the work tree, keyed by the wrapper modules'
# go.mod/go.sum and this script.
# Prints the binary directory on stdout; progress and per-part times on stderr.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${MLOPS_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops-metal/e2e}
modules=(kube etcd coredns metallb localpath)
key=$(cd "$here" && cat "${modules[@]/%//go.mod}" "${modules[@]/%//go.sum}" etcd/main.go \
  build-components.sh | sha256sum | cut -c1-16)
out=$cache/bin-$key
if [ -f "$out/.complete" ]; then
  echo "components: cached in $out" >&2
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "components: Go (1.24+) is required to build the live tier" >&2; exit 1; }
mkdir -p "$out"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local

# Stamp what upstream's build stamps (hack/lib/version.sh); without it every binary reports
# v0.0.0-master, which the kubelet's and kubectl's version-skew checks then trip over.
kube_version=$(cd "$here/kube" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
[ -n "$kube_version" ] || { echo "components: no k8s.io/kubernetes version in kube/go.mod" >&2; exit 1; }
minor=${kube_version#v1.}; minor=${minor%%.*}
build_date=$(cd "$here/kube" && go mod download -json "k8s.io/kubernetes@$kube_version" |
  sed -n 's/.*"Time": "\(.*\)".*/\1/p' | head -n1)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

timed() {  # name, command...: runs the command, reports its wall time
  local name=$1 start=$SECONDS
  shift
  echo "components: building $name" >&2
  "$@" >&2
  echo "components: $name built in $((SECONDS - start)) s" >&2
}
# As upstream: static (CGO off) for everything but the kubelet; tags selinux,notest.
go_build() { local cgo=$1; shift; CGO_ENABLED=$cgo go build -trimpath -tags selinux,notest "$@"; }
( cd "$here/kube"
  timed "kube (static)" go_build 0 -ldflags "$ldflags" -o "$out/" \
    k8s.io/kubernetes/cmd/{kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy,kubectl}
  timed kubelet go_build 1 -ldflags "$ldflags" -o "$out/kubelet" k8s.io/kubernetes/cmd/kubelet )
( cd "$here/etcd" && timed etcd go_build 0 -ldflags "-s -w" -o "$out/etcd" . )
( cd "$here/coredns" && timed coredns go_build 0 -ldflags "-s -w" -o "$out/coredns" github.com/coredns/coredns )
( cd "$here/metallb" && timed metallb go_build 0 -ldflags "-s -w" -o "$out/" go.universe.tf/metallb/{controller,speaker} )
( cd "$here/localpath" && timed local-path-provisioner go_build 0 -ldflags "-s -w" -o "$out/local-path-provisioner" github.com/rancher/local-path-provisioner )
du -sh "$out" | sed 's/^/components: total size /' >&2
touch "$out/.complete"
# One set is kept: a changed pin or script makes the older set dead weight (~700 MB).
find "$cache" -maxdepth 1 -name 'bin-*' ! -path "$out" -exec rm -rf {} +
echo "$out"
