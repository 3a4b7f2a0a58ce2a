#!/bin/bash
# Builds node binaries into $REALNODE_DIR/bin. Times each build.
set -e
H=$(cd "$(dirname "$0")" && pwd); R=${REALNODE_DIR:-/tmp/realnode}; B=$R/bin; T=$H/../tools; mkdir -p $B $R/logs
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
t(){ local s=$(date +%s); "$@"; echo "TIME $(( $(date +%s)-s ))s: $*" >> $R/logs/buildtimes.txt; }
cd $T/containerd && t go build -trimpath -ldflags "-s -w" -o $B/ github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
mkdir -p $B/cni
cd $T/cni && t go build -trimpath -ldflags "-s -w" -o $B/cni/ github.com/containernetworking/plugins/plugins/main/bridge github.com/containernetworking/plugins/plugins/ipam/host-local github.com/containernetworking/plugins/plugins/main/loopback
LD="-s -w -X k8s.io/component-base/version.gitVersion=v1.34.4 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34"
cd $T/kubelet && t go build -trimpath -ldflags "$LD" -o $B/kubelet k8s.io/kubernetes/cmd/kubelet
cd $T/kubelet && t go build -trimpath -ldflags "$LD" -o $B/kube-proxy k8s.io/kubernetes/cmd/kube-proxy
echo BUILD-DONE >> $R/logs/buildtimes.txt
