#!/bin/bash
# Builds the pause image and the test image (static Go "tool" + static busybox, FROM scratch) as docker-archive tars.
set -euo pipefail
H=$(cd "$(dirname "$0")" && pwd); R=${REALNODE_DIR:-/tmp/realnode}; I=$R/images; mkdir -p $I; cd $H/images
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $I/pause ./pause
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $I/tool ./tool
cd $I; rm -rf ctx-pause ctx-tool; mkdir -p ctx-pause ctx-tool/rootfs/bin ctx-tool/rootfs/tmp
cp pause ctx-pause/; printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > ctx-pause/Containerfile
cp tool ctx-tool/rootfs/tool
[ -x /usr/bin/busybox ] || apt-get install -y busybox-static
cp /usr/bin/busybox ctx-tool/rootfs/bin/busybox
for a in $(/usr/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox ctx-tool/rootfs/bin/$a; done
printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nENTRYPOINT ["/tool"]\nCMD ["serve"]\n' > ctx-tool/Containerfile
PM="podman --cgroup-manager=cgroupfs --runtime runc"
$PM build -q -t localhost/realnode/pause:1 ctx-pause; $PM build -q -t localhost/realnode/tool:1 ctx-tool
rm -f pause.tar tool.tar
$PM save --format docker-archive -o pause.tar localhost/realnode/pause:1
$PM save --format docker-archive -o tool.tar localhost/realnode/tool:1
$PM rmi localhost/realnode/pause:1 localhost/realnode/tool:1 >/dev/null  # nothing left in podman storage
