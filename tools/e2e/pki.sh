#!/usr/bin/env bash
# The live tier's PKI and kubeconfigs, made with openssl and kubectl as kubeadm's certs and
# kubeconfig phases would make them (one CA; etcd listens on the node's loopback only).
#   pki.sh DIR KUBECTL NODE_NAME NODE_IP SERVICE_IP
# Writes DIR/*.crt|key, DIR/sa.{key,pub} and DIR/<user>.kubeconfig; keys are mode 0600.
set -euo pipefail
dir=$1 kubectl=$2 node_name=$3 node_ip=$4 service_ip=$5
mkdir -p "$dir"
cd "$dir"
umask 077
days=60  # a test cluster lives for minutes; over 30 days, when K3sCertificateExpiresSoon warns

openssl genrsa -out ca.key 2048 2>/dev/null
openssl req -x509 -new -key ca.key -subj "/CN=mlops-e2e-ca" -days "$days" -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

# name subject usage [subjectAltName]
cert() {
  local name=$1 subject=$2 usage=$3 san=${4:-}
  local ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$usage"
  [ -n "$san" ] && ext+=$'\n'"subjectAltName=$san"
  openssl genrsa -out "$name.key" 2048 2>/dev/null
  openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile <(echo "$ext") -out "$name.crt" 2>/dev/null
  rm "$name.csr"
}

cert apiserver "/CN=kube-apiserver" serverAuth \
  "IP:$node_ip,IP:$service_ip,IP:127.0.0.1,DNS:$node_name,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null

# user subject: a client certificate and a kubeconfig for it
kubeconfig() {
  local user=$1 subject=$2
  cert "$user" "$subject" clientAuth
  local file=$user.kubeconfig
  "$kubectl" --kubeconfig "$file" config set-cluster mlops-e2e --server "https://$node_ip:6443" \
    --certificate-authority ca.crt --embed-certs >/dev/null
  "$kubectl" --kubeconfig "$file" config set-credentials "$user" --client-certificate "$user.crt" \
    --client-key "$user.key" --embed-certs >/dev/null
  "$kubectl" --kubeconfig "$file" config set-context mlops-e2e --cluster mlops-e2e --user "$user" >/dev/null
  "$kubectl" --kubeconfig "$file" config use-context mlops-e2e >/dev/null
}
kubeconfig admin "/O=system:masters/CN=kubernetes-admin"
kubeconfig kubelet "/O=system:nodes/CN=system:node:$node_name"
kubeconfig controller-manager "/CN=system:kube-controller-manager"
kubeconfig scheduler "/CN=system:kube-scheduler"
kubeconfig kube-proxy "/CN=system:kube-proxy"
rm -f ca.srl
