#!/bin/bash
# Removes everything up.sh created: processes, containers, shims, mounts, netns, bridge, nft tables, cgroups, sysctls, state.
H=$(cd "$(dirname "$0")" && pwd); R=${REALNODE_DIR:-/tmp/realnode}; S=$R/state; L=$R/logs
B=$R/bin
stop(){ local f=$S/run/$1.pid; [ -f $f ] || return 0; local p=$(cat $f)
  if kill -0 $p 2>/dev/null; then kill -TERM -- -$p 2>/dev/null || kill -TERM $p
    for i in $(seq 50); do kill -0 $p 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- -$p 2>/dev/null; fi; rm -f $f; }
stop kube-proxy; stop kubelet
# containers: kill via runc (our own runc root), then the shims (found by our socket path in their cmdline)
if [ -d $S/runc ]; then for ns in $S/runc/*; do [ -d "$ns" ] || continue
  for id in $(runc --root $ns list -q 2>/dev/null); do runc --root $ns kill $id KILL 2>/dev/null; runc --root $ns delete -f $id 2>/dev/null; done; done; fi
for d in /proc/[0-9]*; do
  if tr '\0' ' ' 2>/dev/null < $d/cmdline | grep -q -- "containerd-shim-runc-v2 .*-address $S/containerd/containerd.sock"; then kill -KILL ${d#/proc/} 2>/dev/null; fi
done
stop containerd
stop kube-scheduler; stop kube-controller-manager; stop api-relay; stop kube-apiserver; stop etcd
# mounts (tmpfs volumes, overlay rootfs, netns bind mounts, shm) under our state dir, deepest first
for i in 1 2 3; do awk '{print $2}' /proc/mounts | grep "^$S/" | sort -r | while read m; do umount "$m" 2>/dev/null || umount -l "$m"; done; done
# network
ip link show pai-br0 >/dev/null 2>&1 && ip link del pai-br0
for t in "inet realnode-guard" "ip kube-proxy" "ip6 kube-proxy"; do nft delete table $t 2>/dev/null; done
# iptables-nft tables kubelet creates when makeIPTablesUtilChains is true: drop them if they did not exist before up.sh
for t in "ip mangle" "ip filter" "ip nat" "ip6 mangle" "ip6 filter" "ip6 nat"; do
  nft list tables 2>/dev/null | grep -qx "table $t" || continue
  if [ -f $S/nft-tables.before ] && ! grep -qx "table $t" $S/nft-tables.before; then nft delete table $t; fi
done
# cgroups created by runc for our pods (cgroupsPath /k8s.io/<id> under each v1 hierarchy)
for h in /sys/fs/cgroup/*/; do [ -d $h/k8s.io ] || continue; find $h/k8s.io -depth -type d -exec rmdir {} \; 2>/dev/null; done
# sysctls kubelet/bridge plugin/up.sh changed
[ -f $S/sysctl.saved ] && while IFS== read k v; do sysctl -qw "$k=$v" 2>/dev/null; done < $S/sysctl.saved
rm -rf $S
echo "down: done"
