#!/usr/bin/env bash
# The live tier's node: Debian's containerd, runc and CNI plugins plus etcd and Kubernetes
# built from upstream, in namespaces of their own so the machine is left as it was found.
#   node.sh up [--standalone]   start the node: etcd, the control plane, the kubelet and
#                               kube-proxy (--standalone: containerd and a kubelet with static pods only)
#   node.sh down                stop it: processes, mounts, interfaces, cgroups and state go
#   node.sh exec CMD...         run CMD inside the node (its network, mounts and PIDs)
#   node.sh ctr ARGS...         containerd's ctr against the node's containerd (k8s.io namespace)
#
# Layout: a bridge on this machine (E2E_BRIDGE, E2E_HOST_ADDRESS) and a network namespace
# (E2E_NETNS) whose eth0 (E2E_NODE_ADDRESS) is plugged into it; inside, a PID and mount
# namespace whose first process supervises everything else. Killing that process kills all
# in the PID namespace, and its mounts die with it. Traffic never leaves this machine: the
# bridge has no uplink and no NAT.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tools/e2e/env.sh
source "$here/env.sh"
sock=$E2E_STATE/run/containerd/containerd.sock
# Paths the kubelet, containerd's shims and CNI write whatever their configuration says: inside
# the node each is a bind mount of a folder of the state, so nothing lands on this machine. Those
# that did not exist are made as mount points by up and removed by down.
host_paths=(/var/lib/kubelet /var/lib/cni /var/log/containers /var/log/pods /run/containerd)
pidfile=$E2E_STATE/init.pid
pki=$E2E_STATE/pki
node_ip=${E2E_NODE_ADDRESS%/*}
log() { echo "node: $*" >&2; }
die() {
  log "$*"
  exit 1
}

# Polls until a command succeeds (the real condition) or the deadline passes.
wait_for() { # seconds description command...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out waiting for $what"
    sleep 0.5
  done
}

init_pid() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && cat "$pidfile"; }
enter() { # the node's network, mount, UTS and PID namespaces
  local pid
  pid=$(init_pid) || die "the node is not running (node.sh up)"
  nsenter --target "$pid" --mount --net --pid --uts -- "$@"
}

write_containerd_config() { # pause-image
  cat >"$E2E_STATE/etc/containerd.toml" <<EOF
version = 2
root = "$E2E_STATE/containerd"
state = "$E2E_STATE/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$1"
  # No CAP_SYS_RESOURCE here: a negative oom_score_adj (the kubelet asks -998 for sandboxes)
  # cannot be set, so it is clamped to containerd's own score instead of failing runc.
  restrict_oom_score_adj = true
  # Pod network namespaces are pinned under the state (removed by down), not in this machine's
  # /run/netns, where their mount points would outlive the node's mount namespace.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$E2E_STATE/cni/net.d"
EOF
  cat >"$E2E_STATE/cni/net.d/10-mlops-e2e.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "mlops-e2e", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$E2E_STATE/cni/ipam",
            "ranges": [[{"subnet": "$E2E_POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
}

write_kubelet_config() { # mode
  # cgroup v1 and no systemd on this host: cgroupfs driver, failCgroupV1 off (1.35 flips it).
  # No system-reserved cgroups exist, so node allocatable is not enforced.
  cat >"$E2E_STATE/etc/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /$E2E_CGROUP
failCgroupV1: false
failSwapOn: false
enforceNodeAllocatable: []
containerRuntimeEndpoint: unix://$sock
staticPodPath: $E2E_STATE/manifests
podLogsDir: $E2E_STATE/pod-logs
address: $node_ip
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
EOF
  if [ "$1" = standalone ]; then
    # No API server: the read-only port is how the test reads pod status.
    cat >>"$E2E_STATE/etc/kubelet.yaml" <<EOF
readOnlyPort: 10255
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
EOF
  else
    cat >>"$E2E_STATE/etc/kubelet.yaml" <<EOF
readOnlyPort: 0
clusterDNS: [$E2E_CLUSTER_DNS]
clusterDomain: cluster.local
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
EOF
  fi
}

write_kube_proxy_config() {
  # The conntrack sysctls are this machine's, not the namespace's: kube-proxy leaves them alone.
  cat >"$E2E_STATE/etc/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $pki/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $E2E_CLUSTER_CIDR
hostnameOverride: $E2E_NODE_NAME
bindAddress: $node_ip
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

write_configs() { # bin-dir images-dir mode
  local bin=$1 images=$2 mode=$3
  mkdir -p "$E2E_STATE"/{etc,run,log,manifests,cni/net.d,cni/ipam,kubelet,pod-logs}
  write_containerd_config "$(awk '$1 ~ /\/pause:/ {print $1}' "$images/images.txt")"
  write_kubelet_config "$mode"
  if [ "$mode" = cluster ]; then
    write_kube_proxy_config
    "$here/pki.sh" "$pki" "$bin/kubectl" "$E2E_NODE_NAME" "$node_ip" \
      "$(python3 -c 'import ipaddress, sys; print(ipaddress.ip_network(sys.argv[1])[1])' "$E2E_SERVICE_CIDR")"
  fi
  echo "$bin" >"$E2E_STATE/etc/bin-dir"
  echo "$images" >"$E2E_STATE/etc/images-dir"
  echo "$mode" >"$E2E_STATE/etc/mode"
}

# Starts a program of the node in the background, its output in log/NAME.log.
run() { # name program args...
  local name=$1
  shift
  "$@" >"$E2E_STATE/log/$name.log" 2>&1 &
}

start_control_plane() { # bin-dir
  local bin=$1
  # etcd on the node's loopback only: nothing outside the node can reach it.
  run etcd "$bin/etcd" --name "$E2E_NODE_NAME" --data-dir "$E2E_STATE/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$E2E_NODE_NAME=http://127.0.0.1:2380" --quota-backend-bytes 1073741824
  wait_for 60 "etcd's health" curl -sf http://127.0.0.1:2379/health
  run kube-apiserver "$bin/kube-apiserver" --etcd-servers http://127.0.0.1:2379 \
    --advertise-address "$node_ip" --secure-port 6443 --service-cluster-ip-range "$E2E_SERVICE_CIDR" \
    --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --allow-privileged=true \
    --kubelet-preferred-address-types InternalIP \
    --profiling=false
  wait_for 120 "the API server to be ready" curl -sf --cacert "$pki/ca.crt" "https://$node_ip:6443/readyz"
  local component
  for component in controller-manager scheduler; do
    local kubeconfig=$pki/$component.kubeconfig args=()
    [ $component = controller-manager ] && args=(
      --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt"
      --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key"
      --use-service-account-credentials)
    run "kube-$component" "$bin/kube-$component" --kubeconfig "$kubeconfig" \
      --authentication-kubeconfig "$kubeconfig" --authorization-kubeconfig "$kubeconfig" \
      --leader-elect=false --bind-address 127.0.0.1 --profiling=false "${args[@]}"
  done
  run kube-proxy "$bin/kube-proxy" --config "$E2E_STATE/etc/kube-proxy.yaml"
}

# The first process of the node's PID namespace: starts everything, then supervises.
node_init() {
  local bin images mode
  bin=$(cat "$E2E_STATE/etc/bin-dir") images=$(cat "$E2E_STATE/etc/images-dir") mode=$(cat "$E2E_STATE/etc/mode")
  # A sysfs of the node's own network namespace, with this machine's cgroup hierarchies carried
  # over (the kubelet finds its cgroups through the mounts under /sys/fs/cgroup).
  mkdir -p "$E2E_STATE/run/cgroup"
  mount --rbind /sys/fs/cgroup "$E2E_STATE/run/cgroup"
  mount -t sysfs sysfs /sys
  mount --move "$E2E_STATE/run/cgroup" /sys/fs/cgroup
  local path
  for path in "${host_paths[@]}"; do
    mkdir -p "$E2E_STATE/host$path"
    mount --bind "$E2E_STATE/host$path" "$path"
  done
  # kubelet needs shared mount propagation; this namespace's mounts are its own.
  mount --make-rshared /
  hostname "$E2E_NODE_NAME"
  ip link set lo up
  run containerd containerd --config "$E2E_STATE/etc/containerd.toml"
  wait_for 60 "containerd's socket" ctr --address "$sock" version
  local archive platform=()
  [ "$mode" = cluster ] && [ -f "$E2E_PLATFORM_IMAGES/images.txt" ] && platform=("$E2E_PLATFORM_IMAGES"/*.tar)
  for archive in "$images"/*.tar "${platform[@]}"; do
    ctr --address "$sock" -n k8s.io images import "$archive" >>"$E2E_STATE/log/import.log" 2>&1 ||
      die "import of $archive failed (see $E2E_STATE/log/import.log)"
  done
  # The kubelet's cgroup root must exist in every v1 hierarchy; cpuset's needs its CPUs and
  # memory nodes set before anything can join it.
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/; do
    [ "$hierarchy" = /sys/fs/cgroup/unified/ ] && continue
    mkdir -p "$hierarchy$E2E_CGROUP"
  done
  cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$E2E_CGROUP/cpuset.cpus"
  cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$E2E_CGROUP/cpuset.mems"
  local kubelet_args=()
  if [ "$mode" = cluster ]; then
    start_control_plane "$bin"
    kubelet_args=(--kubeconfig "$pki/kubelet.kubeconfig")
  fi
  run kubelet "$bin/kubelet" --config "$E2E_STATE/etc/kubelet.yaml" --root-dir "$E2E_STATE/kubelet" \
    --hostname-override "$E2E_NODE_NAME" --node-ip "$node_ip" "${kubelet_args[@]}"
  # A program of the node that exits takes the node down with it: a half node is no test.
  wait -n
  die "a program of the node exited; see $E2E_STATE/log/"
}

up() {
  local mode=cluster bin images
  [ "${1:-}" = --standalone ] && mode=standalone
  [ "$(id -u)" = 0 ] || die "the node needs root (namespaces, cgroups, mounts)"
  for tool in containerd containerd-shim-runc-v2 runc ctr nsenter unshare ip curl openssl; do
    command -v $tool >/dev/null || die "$tool is missing (make e2e-deps)"
  done
  [ -x /usr/lib/cni/bridge ] || die "CNI plugins are missing in /usr/lib/cni (make e2e-deps)"
  ! init_pid >/dev/null || die "the node is already running (node.sh down first)"
  bin=$("$here/build-components.sh")
  images=$("$here/build-node-images.sh" "$bin")
  rm -rf "$E2E_STATE"
  write_configs "$bin" "$images" "$mode"
  local path
  for path in "${host_paths[@]}"; do
    [ -e "$path" ] || { mkdir -p "$path" && echo "$path" >>"$E2E_STATE/etc/made-paths"; }
  done

  ip link add "$E2E_BRIDGE" type bridge
  ip addr add "$E2E_HOST_ADDRESS" dev "$E2E_BRIDGE"
  ip link set "$E2E_BRIDGE" up
  ip netns add "$E2E_NETNS"
  ip link add "${E2E_BRIDGE}h" type veth peer name eth0 netns "$E2E_NETNS"
  ip link set "${E2E_BRIDGE}h" master "$E2E_BRIDGE" up
  ip -n "$E2E_NETNS" addr add "$E2E_NODE_ADDRESS" dev eth0
  ip -n "$E2E_NETNS" link set eth0 up
  # No default route: nothing in the node can reach past the bridge, not even by mistake. A
  # packet the node itself sends to a ClusterIP needs a usable route before kube-proxy's DNAT
  # (in OUTPUT) rewrites it to a pod. This kernel has no dummy links and a blackhole route
  # fails the connect, so the range points at one end of a veth pair whose other end stays
  # down: what no rule rewrites is dropped there.
  ip -n "$E2E_NETNS" link add svc0 type veth peer name svc1
  ip -n "$E2E_NETNS" link set svc0 up
  ip -n "$E2E_NETNS" route add "$E2E_SERVICE_CIDR" dev svc0
  # setsid: the node outlives this shell. nsenter and unshare each exec the next, so the
  # background job is unshare, and its one child is the PID namespace's first process.
  # (Not ip netns exec: it remounts /sys and so hides the cgroup hierarchies.)
  setsid nsenter --net="/run/netns/$E2E_NETNS" unshare --mount --uts --pid --fork --mount-proc --propagation private \
    "${BASH_SOURCE[0]}" _init </dev/null >"$E2E_STATE/log/init.log" 2>&1 &
  local unshare_pid=$!
  wait_for 10 "the node's first process" pgrep -P "$unshare_pid"
  pgrep -P "$unshare_pid" >"$pidfile"
  if [ "$mode" = cluster ]; then
    wait_for 180 "the API server" curl -sf --cacert "$pki/ca.crt" "https://$node_ip:6443/readyz"
    mkdir -p "$(dirname "$E2E_KUBECONFIG")"
    install -m 0600 "$pki/admin.kubeconfig" "$E2E_KUBECONFIG"
    wait_for 180 "node $E2E_NODE_NAME to be Ready" "$bin/kubectl" --kubeconfig "$E2E_KUBECONFIG" \
      wait --for condition=Ready "node/$E2E_NODE_NAME" --timeout 5s
  fi
  log "up ($mode): namespace pid $(cat "$pidfile"), node address $node_ip, state $E2E_STATE"
}

down() {
  local pid cg path
  if pid=$(init_pid); then
    kill -KILL "$pid" # the PID namespace's first process: the kernel kills the rest
    wait_for 60 "the node's processes to exit" bash -c "! kill -0 $pid"
  fi
  ip netns del "$E2E_NETNS" 2>/dev/null || true
  ip link del "$E2E_BRIDGE" 2>/dev/null || true
  for cg in /sys/fs/cgroup/*/"$E2E_CGROUP"; do
    [ -d "$cg" ] || continue
    wait_for 30 "the tasks of $cg to exit" bash -c "! find '$cg' -name tasks -exec cat {} + | grep -q ."
    find "$cg" -depth -type d -exec rmdir {} +
  done
  local made=()
  [ -f "$E2E_STATE/etc/made-paths" ] && mapfile -t made <"$E2E_STATE/etc/made-paths"
  rm -rf "$E2E_STATE" "$E2E_KUBECONFIG"
  for path in "${made[@]}"; do rmdir "$path" 2>/dev/null || true; done
  rmdir "$(dirname "$E2E_STATE")" 2>/dev/null || true # its parent too, if nothing else is there
  log "down: nothing of the node is left"
}

case ${1:-} in
up)
  shift
  up "$@"
  ;;
down) down ;;
exec)
  shift
  enter "$@"
  ;;
ctr)
  shift
  enter ctr --address "$sock" -n k8s.io "$@"
  ;;
_init) node_init ;;
*)
  sed -n '2,8p' "${BASH_SOURCE[0]}" >&2
  exit 2
  ;;
esac
