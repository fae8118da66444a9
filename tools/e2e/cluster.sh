#!/usr/bin/env bash
# The live tier's single-node cluster: the node (node.sh) plus the add-ons a K3s cluster of the
# cluster layer has (CoreDNS, a StorageClass that provisions, MetalLB layer 2), then a kubeconfig
# for Ansible at E2E_KUBECONFIG.
#   cluster.sh up      bring it up (components and images built or taken from the cache)
#   cluster.sh down    remove it and everything it made
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tools/e2e/env.sh
source "$here/env.sh"

up() {
  local start=$SECONDS
  "$here/node.sh" up
  echo "cluster: node up in $((SECONDS - start)) s" >&2
  local images metallb_dir vars
  images=$(cat "$E2E_STATE/etc/images-dir")
  metallb_dir=$(cd "$here/metallb" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' go.universe.tf/metallb)
  vars=$(METALLB_DIR=$metallb_dir python3 - "$images/images.txt" <<'EOF'
import json, os, sys
refs = [line.split()[0] for line in open(sys.argv[1]) if line.strip()]
print(json.dumps({
    "e2e_images": {ref.rsplit("/", 1)[1].split(":")[0]: ref for ref in refs},
    "e2e_kubeconfig": os.environ["E2E_KUBECONFIG"],
    "e2e_cluster_dns": os.environ["E2E_CLUSTER_DNS"],
    "e2e_lb_pool": os.environ["E2E_LB_POOL"],
    "e2e_service_cidr": os.environ["E2E_SERVICE_CIDR"],
    "e2e_node_ip": os.environ["E2E_NODE_ADDRESS"].split("/")[0],
    "e2e_local_path_root": os.path.join(os.environ["E2E_STATE"], "local-path"),
    "e2e_metallb_crds": os.path.join(os.environ["METALLB_DIR"], "config", "crd", "bases"),
}))
EOF
)
  local addons_start=$SECONDS
  ansible-playbook "$here/addons.yml" -e "$vars" >&2
  echo "cluster: add-ons ready in $((SECONDS - addons_start)) s; up in $((SECONDS - start)) s" >&2
  echo "cluster: kubeconfig $E2E_KUBECONFIG" >&2
}

case ${1:-} in
up) up ;;
down) "$here/node.sh" down ;;
*)
  sed -n '2,6p' "${BASH_SOURCE[0]}" >&2
  exit 2
  ;;
esac
