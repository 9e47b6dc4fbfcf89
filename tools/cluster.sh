#!/usr/bin/env bash
# The embedded local environment: a real Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok fake nodes) run by kwokctl's binary runtime, a
# real S3-compatible server (versitygw), all on 127.0.0.1, and a real worker node (containerd,
# runc, CNI, kubelet, kube-proxy: tools/node.sh) where the machine allows it. Called by
# `make cluster-up` / `make cluster-down` and by the e2e fixtures when nothing is running.
#
#   tools/cluster.sh up|down|status
#
# `up` is idempotent and recovers from a stale .dev/ left by a killed run. It writes
# .dev/kubeconfig and .dev/s3.env. Environment:
#   MODELREG_KUBE_PORT  kube-apiserver port (default: a free port)
#   MODELREG_S3_PORT    S3 server port (default: a free port)
#   MODELREG_NODES      fake nodes (default 2)
#   MODELREG_REAL_NODE  auto (default): a real node when tools/node.sh check passes, else kwok only,
#                       saying why; 1 (the default with CI=true): a real node or an error; 0: none
#
# With the real node, the API server and the S3 server also listen on the node's bridge address
# (a forwarder at the same port), and .dev/s3.env names the S3 server by that address, which the
# host and the pods both reach.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
# shellcheck source=/dev/null
. "$here/versions.env"
dev="$repo/.dev"
bin="$dev/bin"
name=modelreg
export KWOK_WORKDIR="$dev/kwok"
kubeconfig="$dev/kubeconfig"
s3dir="$dev/s3"
nodes=${MODELREG_NODES:-2}
if [ "${CI:-}" = true ]; then real_node=${MODELREG_REAL_NODE:-1}; else real_node=${MODELREG_REAL_NODE:-auto}; fi
case $real_node in auto|0|1) ;; *) echo "cluster: error: MODELREG_REAL_NODE must be auto, 0 or 1 (got '$real_node')" >&2; exit 2 ;; esac
cache=${MODELREG_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelreg/tools}
t0=$(date +%s.%N)

say() { printf 'cluster: %s\n' "$*"; }
die() { printf 'cluster: error: %s\n' "$*" >&2; exit 1; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}s')" "$t0" "$(date +%s.%N)"; }

need_tools() {
  local b
  for b in kubectl kwokctl kwok kube-apiserver kube-controller-manager kube-scheduler etcd versitygw; do
    [ -x "$bin/$b" ] || die "$bin/$b is missing: run 'make tools' first (it builds the pinned binaries once)"
  done
}

free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

port_busy() { # port -> 0 when something already listens there
  python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
s.close()
sys.exit(1)
EOF
}

kube_ready() {
  [ -f "$kubeconfig" ] && "$bin/kubectl" --kubeconfig "$kubeconfig" --request-timeout=3s get --raw /readyz >/dev/null 2>&1
}

running() { # pid -> 0 when it runs (a zombie, which nobody may reap here, does not count)
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

cluster_alive() { # any process of the cluster still running?
  local f
  for f in "$KWOK_WORKDIR/clusters/$name"/pids/*.pid; do
    [ -f "$f" ] && running "$(cat "$f")" && return 0
  done
  return 1
}

s3_pid() { [ -f "$s3dir/pid" ] && cat "$s3dir/pid" || true; }
s3_alive() { local p; p=$(s3_pid); [ -n "$p" ] && running "$p"; }
s3_ready() {
  s3_alive || return 1
  [ -f "$dev/s3.env" ] && [ -f "$s3dir/port" ] || return 1
  curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$(cat "$s3dir/port")" 2>/dev/null
}

stop_s3() {
  local p; p=$(s3_pid)
  if [ -n "$p" ] && running "$p"; then
    kill "$p" 2>/dev/null || true
    for _ in $(seq 50); do running "$p" || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    say "stopped the S3 server (pid $p)"
  fi
  rm -f "$s3dir/pid" "$s3dir/port"
}

start_s3() {
  # A versioning directory lets a bucket turn S3 versioning on (the 'models' bucket does not; the
  # tests that need VersionIds create their own versioned bucket).
  mkdir -p "$s3dir/data" "$s3dir/versions"
  local port=${MODELREG_S3_PORT:-}
  if [ -n "$port" ]; then
    port_busy "$port" && die "port $port (MODELREG_S3_PORT) is already in use on 127.0.0.1: free it or pick another"
  else
    port=$(free_port)
  fi
  local ak sk
  if [ -f "$s3dir/credentials" ]; then
    # shellcheck source=/dev/null
    . "$s3dir/credentials"
    ak=$AK; sk=$SK
  else
    ak="modelreg$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    sk="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    (umask 077; printf 'AK=%s\nSK=%s\n' "$ak" "$sk" >"$s3dir/credentials")
  fi
  # Credentials go through the environment, not argv, so `ps` does not show them.
  ROOT_ACCESS_KEY="$ak" ROOT_SECRET_KEY="$sk" VGW_PORT="127.0.0.1:$port" VGW_REGION=us-east-1 \
    VGW_VERSIONING_DIR="$s3dir/versions" nohup "$bin/versitygw" posix "$s3dir/data" >"$s3dir/log" 2>&1 9>&- &
  echo $! >"$s3dir/pid"
  echo "$port" >"$s3dir/port"
  # With a real node the pods must reach the store too: name it by the bridge address, which
  # tools/node.sh forwards to this loopback port (the host reaches that address as well).
  local host=127.0.0.1
  [ ! -f "$dev/node-mode" ] || host=$("$here/node.sh" ip)
  # Only this file is private: a umask set for the whole script would reach the daemons started
  # after it (containerd would unpack image layers that no non-root container can read).
  (umask 077
  cat >"$dev/s3.env" <<EOF
MODELREG_S3_ENDPOINT=http://$host:$port
MODELREG_S3_BUCKET=models
AWS_ACCESS_KEY_ID=$ak
AWS_SECRET_ACCESS_KEY=$sk
AWS_REGION=us-east-1
EOF
  )
  for _ in $(seq 100); do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port"; then break; fi
    s3_alive || die "the S3 server exited at start; see $s3dir/log: $(tail -n 3 "$s3dir/log" 2>/dev/null)"
    sleep 0.1
  done
  # The bucket is a directory of the posix backend.
  mkdir -p "$s3dir/data/models"
  say "S3 server (versitygw $VERSITYGW_VERSION) on 127.0.0.1:$port, bucket 'models', pid $(s3_pid)"
}

write_config() {
  local port=${MODELREG_KUBE_PORT:-}
  if [ -n "$port" ]; then
    port_busy "$port" && die "port $port (MODELREG_KUBE_PORT) is already in use on 127.0.0.1: free it or pick another"
  else
    port=$(free_port)
  fi
  mkdir -p "$dev"
  cat >"$dev/kwokctl.yaml" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  bindAddress: 127.0.0.1
  kubeApiserverPort: $port
  kubeVersion: $KUBERNETES_VERSION
  kubeAuthorization: true
  kubeAdmission: true
  enableCRDs: [Stage]
  kubeApiserverBinary: $bin/kube-apiserver
  kubeControllerManagerBinary: $bin/kube-controller-manager
  kubeSchedulerBinary: $bin/kube-scheduler
  kubectlBinary: $bin/kubectl
  etcdBinary: $bin/etcd
  kwokControllerBinary: $bin/kwok
  kubeAuditPolicy: $dev/audit-policy.yaml
EOF
  local pki="$KWOK_WORKDIR/clusters/$name/pki"
  if [ -f "$dev/node-mode" ]; then
    # In-cluster clients (the operator pod) reach the API server through the kubernetes Service
    # (10.96.0.1) and the bridge address: both must be in its certificate.
    cat >>"$dev/kwokctl.yaml" <<EOF
  kubeApiserverCertSANs: [10.96.0.1, $("$here/node.sh" ip)]
EOF
  fi
  cat >>"$dev/kwokctl.yaml" <<EOF
componentsPatches:
  # kwokctl's binary runtime has kwok manage every node; the real node must be left to its kubelet
  # (kwok would mark its pods Ready before they are). Nodes made by kwokctl carry this annotation.
  - name: kwok-controller
    extraArgs:
      - key: manage-all-nodes
        value: "false"
      - key: manage-nodes-with-annotation-selector
        value: kwok.x-k8s.io/node=fake
  # The default Service range is a /24: 254 ClusterIPs for every test and benchmark together.
  - name: kube-apiserver
    extraArgs:
      - key: service-cluster-ip-range
        value: 10.96.0.0/16
      # The front proxy, as kubeadm configures it: the aggregator presents kwokctl's proxy client
      # certificate (CN kwok-admin, signed by the cluster's CA) and names the end user in these
      # headers. The API server publishes them in kube-system/extension-apiserver-authentication,
      # where aggregated API servers (modelreg's custom metrics API) learn whom to believe.
      - key: requestheader-client-ca-file
        value: $pki/ca.crt
      - key: requestheader-allowed-names
        value: kwok-admin
      - key: requestheader-username-headers
        value: X-Remote-User
      - key: requestheader-group-headers
        value: X-Remote-Group
      - key: requestheader-extra-headers-prefix
        value: X-Remote-Extra-
EOF
  if [ -f "$dev/node-mode" ]; then
    # The kubernetes Service's endpoint is the bridge address (forwarded to loopback); the API
    # server authenticates to the kubelet (logs, exec) with the admin certificate.
    cat >>"$dev/kwokctl.yaml" <<EOF
      - key: advertise-address
        value: $("$here/node.sh" ip)
      - key: kubelet-client-certificate
        value: $pki/admin.crt
      - key: kubelet-client-key
        value: $pki/admin.key
      # The node's name resolves nowhere: reach the kubelet at its InternalIP (the bridge address).
      - key: kubelet-preferred-address-types
        value: InternalIP
EOF
  fi
  # Metadata-level audit of modelreg's own calls: the benchmarks count API requests per version.
  cat >"$dev/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    userGroups: ["system:nodes", "system:serviceaccounts:kube-system"]
  - level: None
    users: ["system:kube-controller-manager", "system:kube-scheduler", "system:apiserver"]
  - level: Metadata
EOF
}

apply_stages() {
  # kwok's own default node and pod stages, taken from the pinned kwok module (tools/build.sh copies
  # them into the tool cache). As Stage objects, tests can add their own beside them, e.g. one that
  # keeps the pods of a label unready.
  local dir="$cache/kwok-$KWOK_VERSION/stages"
  [ -d "$dir" ] || die "kwok stages missing in $dir: run 'make tools'"
  local i
  for i in $(seq 60); do
    "$bin/kubectl" --kubeconfig "$kubeconfig" apply -f "$dir" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  "$bin/kubectl" --kubeconfig "$kubeconfig" apply -f "$dir"
}

# Decide whether this cluster gets a real node (recorded in .dev/node-mode at creation, because the
# API server's certificate and advertised address depend on it).
decide_node() {
  [ "$real_node" != 0 ] || { rm -f "$dev/node-mode"; return 0; }
  local why
  if why=$("$here/node.sh" check 2>&1); then
    echo real >"$dev/node-mode"
  elif [ "$real_node" = 1 ]; then
    die "MODELREG_REAL_NODE=1 but a real node cannot run here: $why"
  else
    say "no real node: $why. The kwok-only cluster still works; tests that need real pods fail with this reason."
    echo "$why" >"$dev/no-node-reason"
    rm -f "$dev/node-mode"
  fi
}

node_up() {
  [ -f "$dev/node-mode" ] || return 0
  "$here/node.sh" up
}

up() {
  need_tools
  if kube_ready && s3_ready && { [ ! -f "$dev/node-mode" ] || "$here/node.sh" status | grep -q ': up'; }; then
    say "already up ($(elapsed)): KUBECONFIG=$kubeconfig, S3 in $dev/s3.env"
    return 0
  fi
  if ! kube_ready && cluster_alive; then
    # Running but not answering (starting, or an API server restart): wait, never tear it down.
    say "the control plane is running but not ready yet: waiting up to 90s"
    for _ in $(seq 180); do kube_ready && break; sleep 0.5; done
    kube_ready || die "the control plane's processes run but the API server does not answer; see $KWOK_WORKDIR/clusters/$name/logs/ or run 'make cluster-down' first"
  fi
  if ! kube_ready; then
    if [ -d "$KWOK_WORKDIR/clusters/$name" ]; then
      say "found a stale cluster in $KWOK_WORKDIR (a killed run: its processes are gone): removing it"
      # A stale node's certificates were signed by the old cluster's CA: it goes too.
      [ ! -d "$dev/node" ] || "$here/node.sh" down
      "$bin/kwokctl" delete cluster --name "$name" --kubeconfig "$kubeconfig" >/dev/null 2>&1 || true
      rm -rf "$KWOK_WORKDIR/clusters/$name"
    fi
    rm -f "$dev/no-node-reason"
    decide_node
    [ ! -f "$dev/node-mode" ] || "$here/node.sh" net-up
    write_config
    say "starting kube-apiserver, etcd, controller-manager, scheduler, kwok (Kubernetes $KUBERNETES_VERSION) ..."
    "$bin/kwokctl" create cluster --name "$name" --config "$dev/kwokctl.yaml" \
      --kubeconfig "$kubeconfig" --runtime binary --wait 3m >"$dev/kwokctl-create.log" 2>&1 9>&- ||
      die "kwokctl create cluster failed; see $dev/kwokctl-create.log: $(tail -n 5 "$dev/kwokctl-create.log")"
    apply_stages
    "$bin/kwokctl" scale node --name "$name" --replicas "$nodes" >/dev/null 2>&1 ||
      die "could not create $nodes kwok nodes"
    "$bin/kubectl" --kubeconfig "$kubeconfig" wait --for=condition=Ready node --all --timeout=120s >/dev/null ||
      die "the kwok nodes did not become Ready"
    # The default ServiceAccount appears asynchronously; pods cannot be created before it.
    for _ in $(seq 100); do
      "$bin/kubectl" --kubeconfig "$kubeconfig" -n default get serviceaccount default >/dev/null 2>&1 && break
      sleep 0.2
    done
    say "control plane up on $("$bin/kubectl" --kubeconfig "$kubeconfig" config view -o jsonpath='{.clusters[0].cluster.server}'), $nodes nodes Ready"
  fi
  if ! s3_ready; then
    stop_s3
    start_s3
  fi
  node_up
  say "up in $(elapsed): export KUBECONFIG=$kubeconfig; source $dev/s3.env"
}

down() {
  local any=0
  # The node first: its pods and kubelet still talk to the API server while they stop.
  local node_failed=0
  if [ -d "$dev/node" ]; then any=1; "$here/node.sh" down || node_failed=1; fi
  rm -f "$dev/node-mode" "$dev/no-node-reason"
  if [ -d "$KWOK_WORKDIR/clusters/$name" ]; then
    any=1
    if [ -x "$bin/kwokctl" ]; then
      "$bin/kwokctl" delete cluster --name "$name" --kubeconfig "$kubeconfig" >/dev/null 2>&1 || true
    fi
    rm -rf "$KWOK_WORKDIR/clusters/$name"
    say "deleted the control plane"
  fi
  if s3_alive; then any=1; fi
  stop_s3
  # Leave nothing behind, even if kwokctl lost track of a process (a killed run).
  local left
  left=$(pgrep -f "$KWOK_WORKDIR/clusters/$name" || true)
  if [ -n "$left" ]; then
    any=1
    # shellcheck disable=SC2086
    kill $left 2>/dev/null || true
    sleep 1
    # shellcheck disable=SC2086
    kill -9 $left 2>/dev/null || true
    say "killed leftover processes: $(echo $left | tr '\n' ' ')"
  fi
  rm -f "$dev/s3.env"
  [ $any = 1 ] || say "nothing was running"
  [ $node_failed = 0 ] || die "the real node did not come down cleanly (see above); run 'make cluster-down' again"
  say "down in $(elapsed)"
}

status() {
  if kube_ready; then say "control plane: up ($kubeconfig)"; else say "control plane: down"; fi
  if s3_ready; then say "S3 server: up ($(grep ENDPOINT "$dev/s3.env"))"; else say "S3 server: down"; fi
  if [ -f "$dev/node-mode" ]; then "$here/node.sh" status; else say "real node: none (MODELREG_REAL_NODE=$real_node)"; fi
}

# One `up` or `down` at a time: test sessions started in parallel share this environment.
mkdir -p "$dev"
exec 9>"$dev/cluster.lock"
flock -w 600 9 || die "another 'tools/cluster.sh' holds $dev/cluster.lock for more than 10 minutes"

# CLUSTER=kind: a kind cluster (needs Docker and kind on PATH) instead of the embedded control
# plane; the S3 server still runs here on loopback. Untested on machines without a Docker engine.
kind_up() {
  command -v kind >/dev/null 2>&1 || die "CLUSTER=kind needs 'kind' on PATH (go install sigs.k8s.io/kind@latest) and a running Docker engine"
  docker info >/dev/null 2>&1 || die "CLUSTER=kind needs a running Docker engine ('docker info' fails)"
  kind get clusters 2>/dev/null | grep -qx "$name" ||
    kind create cluster --name "$name" --wait 120s 9>&- || die "kind create cluster failed"
  kind get kubeconfig --name "$name" >"$kubeconfig"
  if docker build -q -t ghcr.io/modelreg/modelreg:0.1.0 "$repo" >/dev/null 9>&-; then
    kind load docker-image --name "$name" ghcr.io/modelreg/modelreg:0.1.0 9>&- >/dev/null
  else
    say "warning: could not build the modelreg image; serving pods will not start (the demo's pod emulation still works)"
  fi
  s3_ready || { stop_s3; start_s3; }
  say "kind cluster '$name' up in $(elapsed): export KUBECONFIG=$kubeconfig; source $dev/s3.env"
}

kind_down() {
  command -v kind >/dev/null 2>&1 && kind delete cluster --name "$name" >/dev/null 2>&1 || true
  stop_s3
  rm -f "$dev/s3.env"
  say "down in $(elapsed)"
}

if [ "${CLUSTER:-local}" = kind ]; then
  case ${1:-} in
    up) kind_up; exit 0 ;;
    down) kind_down; exit 0 ;;
  esac
fi

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
