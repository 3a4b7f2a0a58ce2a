#!/bin/bash
# Generates the CA and every certificate for the realnode plane into $1 (default $REALNODE_DIR/pki, /tmp/realnode/pki).
set -euo pipefail
P=${1:-${REALNODE_DIR:-/tmp/realnode}/pki}; mkdir -p $P; cd $P
[ -f ca.crt ] && exit 0
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=realnode-ca" 2>/dev/null
sign() { # name subj [san]
  local n=$1 subj=$2 san=${3:-}
  openssl req -newkey rsa:2048 -nodes -keyout $n.key -out $n.csr -subj "$subj" 2>/dev/null
  if [ -n "$san" ]; then printf "subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n" "$san" > $n.ext
  else printf "extendedKeyUsage=clientAuth\n" > $n.ext; fi
  openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $n.crt -days 30 -extfile $n.ext 2>/dev/null
  rm -f $n.csr $n.ext
}
sign apiserver "/CN=kube-apiserver" "IP:127.0.0.1,IP:10.250.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign admin "/O=system:masters/CN=kubernetes-admin"
sign controller-manager "/CN=system:kube-controller-manager"
sign scheduler "/CN=system:kube-scheduler"
sign kubelet "/O=system:nodes/CN=system:node:realnode-1"
sign kube-proxy "/CN=system:kube-proxy"
sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
openssl genrsa -out sa.key 2048 2>/dev/null; openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
