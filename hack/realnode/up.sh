#!/bin/bash
# Brings up: own control plane (etcd 26790/26791, apiserver 127.0.0.1:19443) + a REAL node
# (containerd + runc + CNI bridge + kubelet + kube-proxy nftables) named realnode-1 on bridge pai-br0 10.250.0.1/24.
set -euo pipefail
H=$(cd "$(dirname "$0")" && pwd); R=${REALNODE_DIR:-/tmp/realnode}; B=$R/bin; S=$R/state; C=$R/conf; L=$R/logs; P=$R/pki
CP=${PERSONALAI_BIN_DIR:-$(cd "$H/../.." && PYTHONPATH=hack .venv/bin/python -m devcluster build)}  # the control plane's pinned binaries
KUBECTL="$CP/kubectl --kubeconfig $C/admin.kubeconfig"
NODE=realnode-1; BR=pai-br0; NODEIP=10.250.0.1; PODCIDR=10.250.0.0/24; SVCCIDR=10.96.0.0/16; APIPORT=19443
export PATH=$B:$PATH
T0=$(date +%s)
log(){ echo "[up $(( $(date +%s)-T0 ))s] $*"; }
start(){ # name cmd... : own session, pid file, log
  local n=$1; shift
  setsid "$@" > $L/$n.log 2>&1 < /dev/null & echo $! > $S/run/$n.pid
  sleep 0.3; kill -0 $(cat $S/run/$n.pid) || { tail -20 $L/$n.log; exit 1; }
}
waitfor(){ local what=$1 t=$2; shift 2; for i in $(seq $t); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done; echo "timeout: $what"; exit 1; }

for c in runc:runc nft:nftables socat:socat podman:podman openssl:openssl curl:curl busybox:busybox-static; do
  command -v ${c%%:*} >/dev/null || apt-get install -y ${c#*:}; done
[ -x $B/kubelet ] && [ -x $B/kube-proxy ] && [ -x $B/containerd ] && [ -x $B/cni/bridge ] || $H/build.sh
mkdir -p $S/run $S/etcd $S/kubelet $S/podlogs $S/cni/net.d $S/cni/ipam $C $L
$H/pki.sh $P
[ -f $R/images/pause.tar ] && [ -f $R/images/tool.tar ] || $H/images.sh

# ---- saved host settings (restored by down.sh) ----
[ -f $S/sysctl.saved ] || sysctl -e net.ipv4.ip_forward kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom \
   kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.bridge.bridge-nf-call-iptables | sed 's/ = /=/' > $S/sysctl.saved

[ -f $S/nft-tables.before ] || nft list tables > $S/nft-tables.before
# ---- host network: bridge + guard ----
if ! ip link show $BR >/dev/null 2>&1; then
  ip link add $BR type bridge; ip addr add $NODEIP/24 dev $BR; ip link set $BR up
fi
sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
nft delete table inet realnode-guard 2>/dev/null || true
nft -f - <<NFT
table inet realnode-guard {
  chain forward { type filter hook forward priority -10; policy accept;
    iifname "$BR" oifname != "$BR" counter drop comment "pods may not leave 10.250.0.0/24"
    oifname "$BR" iifname != "$BR" counter drop comment "nothing from outside into pods"
  }
}
NFT

# ---- kubeconfigs ----
kc(){ cat > $C/$1.kubeconfig <<KC
apiVersion: v1
kind: Config
clusters: [{name: realnode, cluster: {server: "https://127.0.0.1:$APIPORT", certificate-authority: $P/ca.crt}}]
users: [{name: $1, user: {client-certificate: $P/$1.crt, client-key: $P/$1.key}}]
contexts: [{name: realnode, context: {cluster: realnode, user: $1}}]
current-context: realnode
KC
}
for u in admin controller-manager scheduler kubelet kube-proxy; do kc $u; done

# ---- control plane ----
log "etcd"
start etcd $CP/etcd --name=default --data-dir=$S/etcd --listen-client-urls=http://127.0.0.1:26790 --advertise-client-urls=http://127.0.0.1:26790 \
  --listen-peer-urls=http://127.0.0.1:26791 --initial-advertise-peer-urls=http://127.0.0.1:26791 --initial-cluster=default=http://127.0.0.1:26791 \
  --listen-metrics-urls="" --log-level=warn --unsafe-no-fsync
waitfor etcd 30 curl -sf http://127.0.0.1:26790/health
log "kube-apiserver"
start kube-apiserver $CP/kube-apiserver --etcd-servers=http://127.0.0.1:26790 \
  --bind-address=127.0.0.1 --advertise-address=$NODEIP --secure-port=$APIPORT \
  --tls-cert-file=$P/apiserver.crt --tls-private-key-file=$P/apiserver.key --client-ca-file=$P/ca.crt \
  --kubelet-client-certificate=$P/apiserver-kubelet-client.crt --kubelet-client-key=$P/apiserver-kubelet-client.key \
  --kubelet-preferred-address-types=InternalIP \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file=$P/sa.pub --service-account-signing-key-file=$P/sa.key \
  --service-cluster-ip-range=$SVCCIDR --allow-privileged=true --profiling=false --v=1
# relay: pods reach the apiserver (bound to loopback) at the advertised $NODEIP:$APIPORT -> kubernetes Service endpoint
start api-relay socat TCP-LISTEN:$APIPORT,bind=$NODEIP,fork,reuseaddr TCP:127.0.0.1:$APIPORT
waitfor apiserver 120 sh -c "$KUBECTL get --raw /readyz | grep -qx ok"
log "controller-manager, scheduler"
start kube-controller-manager $CP/kube-controller-manager --kubeconfig=$C/controller-manager.kubeconfig \
  --authentication-kubeconfig=$C/controller-manager.kubeconfig --authorization-kubeconfig=$C/controller-manager.kubeconfig \
  --leader-elect=false --use-service-account-credentials=true --service-account-private-key-file=$P/sa.key \
  --root-ca-file=$P/ca.crt --cluster-signing-cert-file=$P/ca.crt --cluster-signing-key-file=$P/ca.key \
  --controllers=*,-nodeipam --secure-port=0 --profiling=false --v=1
start kube-scheduler $CP/kube-scheduler --kubeconfig=$C/scheduler.kubeconfig --authentication-kubeconfig=$C/scheduler.kubeconfig \
  --authorization-kubeconfig=$C/scheduler.kubeconfig --leader-elect=false --secure-port=0 --profiling=false --v=1

# ---- node: containerd ----
cat > $C/containerd.toml <<TOML
version = 3
root = '$S/containerd/root'
state = '$S/containerd/state'
[grpc]
  address = '$S/containerd/containerd.sock'
[ttrpc]
  address = '$S/containerd/containerd.sock.ttrpc'
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = 'localhost/realnode/pause:1'
  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '$(command -v runc)'
          Root = '$S/runc'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['$B/cni']
      conf_dir = '$S/cni/net.d'
      max_conf_num = 1
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '$NODEIP'
    stream_server_port = '0'
TOML
cat > $S/cni/net.d/10-realnode.conflist <<JSON
{ "cniVersion": "1.0.0", "name": "realnode",
  "plugins": [ { "type": "bridge", "bridge": "$BR", "isGateway": true, "isDefaultGateway": true,
                 "ipMasq": false, "hairpinMode": true,
                 "ipam": { "type": "host-local", "dataDir": "$S/cni/ipam",
                           "ranges": [[{ "subnet": "$PODCIDR", "rangeStart": "10.250.0.10", "rangeEnd": "10.250.0.250", "gateway": "$NODEIP" }]] } } ] }
JSON
log "containerd"
start containerd $B/containerd --config $C/containerd.toml
CTR="$B/ctr --address $S/containerd/containerd.sock -n k8s.io"
waitfor containerd 30 $CTR version
$CTR images import --local $R/images/pause.tar >/dev/null 2>&1 || $CTR images import $R/images/pause.tar
$CTR images import $R/images/tool.tar >/dev/null
$CTR images ls -q | grep realnode

# ---- node: kubelet ----
printf 'nameserver 127.0.0.1\noptions ndots:1\n' > $C/resolv.conf
cat > $C/kubelet.yaml <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODEIP
port: 10250
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$S/containerd/containerd.sock
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
podCIDR: $PODCIDR
podLogsDir: $S/podlogs
resolvConf: $C/resolv.conf
clusterDomain: cluster.local
maxPods: 50
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
makeIPTablesUtilChains: false   # else kubelet adds KUBE-FIREWALL/CANARY chains to ip/ip6 filter,nat,mangle
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
YAML
log "kubelet"
TK=$(date +%s)
start kubelet $B/kubelet --config=$C/kubelet.yaml --kubeconfig=$C/kubelet.kubeconfig --root-dir=$S/kubelet \
  --cert-dir=$S/kubelet/pki --hostname-override=$NODE --node-ip=$NODEIP --v=1

# ---- node: kube-proxy ----
cat > $C/kube-proxy.yaml <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: $C/kube-proxy.kubeconfig}
hostnameOverride: $NODE
clusterCIDR: $PODCIDR
healthzBindAddress: $NODEIP:10256
metricsBindAddress: $NODEIP:10249
nodePortAddresses: ["$NODEIP/32"]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
YAML
log "kube-proxy"
start kube-proxy $B/kube-proxy --config=$C/kube-proxy.yaml --v=1

waitfor "node Ready" 120 sh -c "$KUBECTL get node $NODE -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
log "node $NODE Ready $(( $(date +%s)-TK ))s after kubelet start"
waitfor "default ServiceAccount" 60 $KUBECTL get sa default
log "done. export KUBECONFIG=$C/admin.kubeconfig"
