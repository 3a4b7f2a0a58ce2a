#!/bin/bash
# Success-criteria checks against the node brought up by up.sh.
set -u
H=$(cd "$(dirname "$0")" && pwd); R=${REALNODE_DIR:-/tmp/realnode}; export KUBECONFIG=$R/conf/admin.kubeconfig
K=${PERSONALAI_BIN_DIR:-$(cd "$H/../.." && PYTHONPATH=hack .venv/bin/python -m devcluster build)}/kubectl
ok(){ echo "PASS: $*"; }; bad(){ echo "FAIL: $*"; FAILS=$((FAILS+1)); }; FAILS=0
$K get node realnode-1 -o wide
T=$(date +%s%N); $K apply -f $H/pods.yaml >/dev/null
$K wait --for=condition=Ready pod/web pod/client --timeout=90s >/dev/null && ok "pods Ready in $(( ($(date +%s%N)-T)/1000000 ))ms" || bad "pods not Ready"
$K get pods -o wide
IP=$($K get pod web -o jsonpath='{.status.podIP}')
[[ $IP == 10.250.0.* ]] && ok "web pod IP $IP in 10.250.0.0/24" || bad "pod IP $IP"
curl -sf -m 5 http://$IP:8080/ | grep -q "uid=10001" && ok "host -> pod $IP:8080: $(curl -s -m5 http://$IP:8080/)" || bad "host curl pod"
$K logs web | grep -q "serving on :8080 as uid=10001" && ok "kubectl logs" || bad "kubectl logs"
out=$($K exec web -- /tool id); echo "$out" | grep -q "^uid=10001" && echo "$out" | grep -q "CapEff:	0000000000000000" && echo "$out" | grep -q "NoNewPrivs:	1" && ok "kubectl exec (uid 10001, no caps, NoNewPrivs)" || bad "exec: $out"
$K exec web -- sh -c 'touch /x' 2>&1 | grep -q "Read-only" && ok "root filesystem read-only" || bad "rootfs writable"
sleep 1; $K logs client | grep -q "GET https://10.96.0.1:443/api -> 200 OK" && ok "client pod -> kubernetes Service 10.96.0.1:443 /api with SA token: 200" || { bad "apiget"; $K logs client; }
$K exec client -- /tool apiget /api/v1/namespaces/default/pods | grep -q 'User \\"system:serviceaccount:default:default\\"' && ok "API server authenticates the pod as system:serviceaccount:default:default" || bad "SA identity"
SVC=$($K get svc web -o jsonpath='{.spec.clusterIP}')
$K exec client -- /tool get http://$SVC/ | grep -q "200 OK hello from web" && ok "client pod -> Service web ClusterIP $SVC:80 (kube-proxy nftables)" || bad "service from pod"
$K exec web -- /tool get http://$SVC/ | grep -q "200 OK" && ok "hairpin: web pod -> own Service" || bad "hairpin"
curl -sf -m 5 http://$SVC/ >/dev/null && ok "host -> Service ClusterIP" || bad "host -> ClusterIP"
echo hi | $K exec -i client -- sh -c 'cat; echo stdin-ok' | grep -q stdin-ok && ok "kubectl exec -i (stdin streaming)" || bad "exec -i"
setsid $K port-forward pod/web --address 127.0.0.1 :8080 > $R/logs/pf.out 2>&1 & PF=$!; sleep 2
PFP=$(grep -o '127.0.0.1:[0-9]*' $R/logs/pf.out | head -1)
curl -sf -m5 http://$PFP/ | grep -q "hello from web" && ok "kubectl port-forward ($PFP -> web:8080)" || bad "port-forward"; kill $PF
echo "FAILS=$FAILS"
