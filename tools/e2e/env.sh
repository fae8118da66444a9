# shellcheck shell=bash
# The live tier's one network plan and paths; sourced by node.sh and cluster.sh. Every value
# can be overridden from the environment. Addresses are private ranges on a bridge this
# machine makes itself, with no uplink.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# The node's state (containerd's images, etcd, volumes) lives where every user can reach its
# parents: pods run as non-root users and must reach their volumes below it, which a work tree
# under a private home would not allow. One node per machine (its bridge and namespace names are
# global), so one fixed place.
: "${E2E_STATE:=/var/tmp/mlops-e2e/node}"
# The admin kubeconfig for Ansible and tests (outside the state, which down removes whole).
: "${E2E_KUBECONFIG:=$repo/build/e2e/kubeconfig}"
: "${E2E_NETNS:=mlops-e2e}"
: "${E2E_BRIDGE:=mlopse2e0}"
: "${E2E_HOST_ADDRESS:=10.234.0.1/24}"
: "${E2E_NODE_ADDRESS:=10.234.0.10/24}"
# LoadBalancer addresses: on the node's bridge, apart from the hosts' own addresses.
: "${E2E_LB_POOL:=10.234.0.200-10.234.0.220}"
: "${E2E_CLUSTER_CIDR:=10.235.0.0/16}"
: "${E2E_POD_CIDR:=10.235.0.0/24}" # this node's share of the cluster range
: "${E2E_SERVICE_CIDR:=10.236.0.0/16}"
: "${E2E_CLUSTER_DNS:=10.236.0.10}"
: "${E2E_NODE_NAME:=e2e-node}"
# The platform's images (make images): imported into the node's containerd when present.
: "${E2E_PLATFORM_IMAGES:=$repo/build/images}"
# Every cgroup of the node (kubelet QoS tree, pods, containers) sits under this name.
: "${E2E_CGROUP:=mlops-e2e}"
export E2E_STATE E2E_KUBECONFIG E2E_NETNS E2E_BRIDGE E2E_HOST_ADDRESS E2E_NODE_ADDRESS E2E_LB_POOL \
  E2E_CLUSTER_CIDR E2E_POD_CIDR E2E_SERVICE_CIDR E2E_CLUSTER_DNS E2E_NODE_NAME E2E_CGROUP E2E_PLATFORM_IMAGES
