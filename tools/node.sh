#!/usr/bin/env bash
# The real worker node of the embedded local environment: containerd + runc + CNI + kubelet +
# kube-proxy as plain processes, joined to the control plane that tools/cluster.sh starts. Pods run
# real containers from images imported without a registry (tools/image.sh).
#
#   tools/node.sh check      can a real node run here? (prints the reason when not; exit 1)
#   tools/node.sh net-up     the bridge, sysctls, an nft snapshot (before the API server starts)
#   tools/node.sh up         forwarders, containerd, the pause image, kubelet, kube-proxy
#   tools/node.sh down       removes every trace: processes, rules, bridge, veths, netns, cgroups,
#                            mounts, state directories; restores ip_forward and the nft ruleset
#   tools/node.sh status
#
# Network: the bridge holds the node's address (the first of MODELREG_NODE_CIDR, default
# 10.244.0.0/24) and the pods' range. Pods get no default route: only the bridge address and the
# Service range are reachable. The API server and the S3 server listen on 127.0.0.1; a forwarder
# on the bridge address at the same port makes them reachable from pods. Every registry resolves to
# a dead loopback port, so no pull can leave the machine.
set -euo pipefail
# What containerd unpacks and the kubelet writes must be readable by the containers' own users,
# whatever umask the caller had.
umask 022
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
# shellcheck source=/dev/null
. "$here/versions.env"
dev="$repo/.dev"
bin="$dev/bin"
node="$dev/node"
kubeconfig="$dev/kubeconfig"
pki="$dev/kwok/clusters/modelreg/pki"
cache=${MODELREG_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelreg/tools}
node_name=${MODELREG_NODE_NAME:-modelreg-node}
bridge=${MODELREG_NODE_BRIDGE:-mrbr0}
cidr=${MODELREG_NODE_CIDR:-10.244.0.0/24}
service_cidr=${MODELREG_SERVICE_CIDR:-10.96.0.0/16}
pause_ref=registry.k8s.io/pause:3.10.2
t0=$(date +%s.%N)

say() { printf 'node: %s\n' "$*"; }
die() { printf 'node: error: %s\n' "$*" >&2; exit 1; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}s')" "$t0" "$(date +%s.%N)"; }

# The node's address: the first host of the pod range, held by the bridge.
node_ip() { python3 -c "import ipaddress,sys; print(next(ipaddress.ip_network(sys.argv[1]).hosts()))" "$cidr"; }
prefix_len() { echo "${cidr#*/}"; }

running() { # pid -> 0 when it runs (a zombie, which nobody may reap here, does not count)
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
pid_of() { [ -f "$node/pids/$1.pid" ] && cat "$node/pids/$1.pid" || true; }
alive() { local p; p=$(pid_of "$1"); [ -n "$p" ] && running "$p"; }

# Debian packages the node needs, by the command each provides.
declare -A debs=([runc]=runc [nft]=nftables [iptables]=iptables [socat]=socat [conntrack]=conntrack
  [openssl]=openssl [ip]=iproute2)

# ... and those that build its image with no registry (tools/image.sh), installed by `deps` too.
declare -A image_debs=([buildah]=buildah [mmdebstrap]=mmdebstrap)

missing_debs() { # [image]: also the image builder's
  local c out=()
  for c in "${!debs[@]}"; do command -v "$c" >/dev/null 2>&1 || out+=("${debs[$c]}"); done
  if [ "${1:-}" = image ]; then
    for c in "${!image_debs[@]}"; do command -v "$c" >/dev/null 2>&1 || out+=("${image_debs[$c]}"); done
  fi
  echo "${out[*]}"
}

# Why a real node cannot run here, or nothing when it can.
why_not() {
  [ "$(uname -s)" = Linux ] || { echo "a real node needs Linux (this is $(uname -s))"; return; }
  [ "$(id -u)" = 0 ] || { echo "a real node needs root (containers, a bridge, nft rules); run as root or set MODELREG_REAL_NODE=0"; return; }
  local m; m=$(missing_debs)
  [ -z "$m" ] || { echo "missing Debian packages: $m (install: apt-get install -y $m)"; return; }
  local b
  for b in containerd ctr containerd-shim-runc-v2 kubelet kube-proxy; do
    [ -x "$bin/$b" ] || { echo "$bin/$b is missing: run 'make tools'"; return; }
  done
  [ -w /proc/sys/net/ipv4/ip_forward ] || { echo "/proc/sys/net/ipv4/ip_forward is not writable (a container without CAP_NET_ADMIN?)"; return; }
  grep -qw overlay /proc/filesystems || { echo "the kernel has no overlayfs"; return; }
  return 0
}

# Install the missing Debian packages of the node and of the image build (as root with apt-get),
# saying so; otherwise say what to run.
deps() {
  local m; m=$(missing_debs image)
  [ -n "$m" ] || return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing the Debian packages the real node needs: $m"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $m >"$dev/apt-node.log" 2>&1 ||
      { apt-get update -q >>"$dev/apt-node.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $m >>"$dev/apt-node.log" 2>&1; } ||
      die "apt-get could not install $m; see $dev/apt-node.log: $(tail -n 2 "$dev/apt-node.log")"
  else
    say "the real node needs these Debian packages: $m (as root: apt-get install -y $m)"
  fi
}

check() {
  local r; r=$(why_not)
  if [ -n "$r" ]; then echo "$r"; return 1; fi
  echo "a real node can run here"
}

# --- network --------------------------------------------------------------------------------------


net_up() {
  local r; r=$(why_not); [ -z "$r" ] || die "$r"
  local ip; ip=$(node_ip)
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    # The address (or a route over its range) must not belong to anything else on the machine:
    # checked before anything is recorded or changed.
    # Captured first: `grep -q` quits at its first match, and under pipefail the SIGPIPE that
    # `ip` then gets (more interfaces, more output) would make a match look like none.
    local addrs routes
    addrs=$(ip -o addr show); routes=$(ip route show "$cidr")
    if grep -qw "inet $ip" <<<"$addrs"; then
      die "the bridge address $ip is already in use on $(grep -w "inet $ip" <<<"$addrs" | awk '{print $2}'): set MODELREG_NODE_CIDR to a free range"
    fi
    if [ -n "$routes" ]; then
      die "the pod range $cidr is already routed ($(ip route show "$cidr")): set MODELREG_NODE_CIDR to a free range"
    fi
  fi
  mkdir -p "$node/saved" "$node/pids" "$node/logs"
  # The machine's state before the node's first change, recorded once: `down` restores it.
  if [ ! -f "$node/saved/recorded" ]; then
    cat /proc/sys/net/ipv4/ip_forward >"$node/saved/ip_forward"
    nft list ruleset >"$node/saved/ruleset.nft"
    if [ -f /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
      cat /proc/sys/net/bridge/bridge-nf-call-iptables >"$node/saved/bridge-nf-call-iptables"
    fi
    # System paths the runtime cannot move: removed on `down` only if they were not there before.
    local d
    for d in /run/containerd /var/lib/cni /var/log/containers /var/log/pods; do
      [ ! -e "$d" ] || : >"$node/saved/had$(echo "$d" | tr / _)"
    done
    : >"$node/saved/recorded"
  fi
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    echo "$bridge" >"$node/saved/bridge"
    ip addr add "$ip/$(prefix_len)" dev "$bridge"
    ip link set "$bridge" up
  fi
  ip route replace "$service_cidr" dev "$bridge" src "$ip"
  echo 1 >/proc/sys/net/ipv4/ip_forward
  [ ! -f /proc/sys/net/bridge/bridge-nf-call-iptables ] || echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
  say "bridge $bridge $ip/$(prefix_len), Service range $service_cidr over it, ip_forward=1"
}

# --- processes ------------------------------------------------------------------------------------

start() { # name logfile command... (detached; the cluster lock's fd 9 is closed for it)
  local name=$1 log=$2; shift 2
  nohup "$@" >"$log" 2>&1 9>&- </dev/null &
  echo $! >"$node/pids/$name.pid"
}

stop() { # name [signal timeout]
  local p; p=$(pid_of "$1")
  [ -n "$p" ] || return 0
  if running "$p"; then
    kill "$p" 2>/dev/null || true
    local i
    for i in $(seq "${3:-50}"); do running "$p" || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  fi
  rm -f "$node/pids/$1.pid"
}

wait_for() { # description tries command...
  local what=$1 n=$2; shift 2
  local i
  for i in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

forward() { # name port: listen on the bridge address, forward to the same port on 127.0.0.1
  local name=$1 port=$2 ip; ip=$(node_ip)
  if alive "fwd-$name"; then return 0; fi
  start "fwd-$name" "$node/logs/fwd-$name.log" socat "TCP4-LISTEN:$port,bind=$ip,reuseaddr,fork,backlog=128" "TCP4:127.0.0.1:$port"
  # socat exits at once when the address is taken: only a forwarder still alive after it answered
  # is ours (a foreign listener would answer the probe too).
  if ! wait_for "$name forwarder" 50 bash -c "exec 3<>/dev/tcp/$ip/$port" || ! { sleep 0.3; alive "fwd-$name"; }; then
    die "could not listen on $ip:$port for the $name: $(tail -n 1 "$node/logs/fwd-$name.log" 2>/dev/null) (is the port taken on the bridge address?)"
  fi
}

# --- credentials ----------------------------------------------------------------------------------

client_cert() { # name CN O: a client certificate signed by the control plane's CA, and a kubeconfig
  local name=$1 cn=$2 org=$3 d="$node/pki"
  mkdir -p "$d"
  if [ ! -f "$d/$name.kubeconfig" ]; then
    [ -f "$pki/ca.key" ] || die "the control plane's CA key is missing in $pki (start the cluster first)"
    (umask 077
      openssl req -new -newkey rsa:2048 -nodes -keyout "$d/$name.key" -subj "/O=$org/CN=$cn" -out "$d/$name.csr" 2>/dev/null
      openssl x509 -req -in "$d/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
        -days 365 -out "$d/$name.crt" -extfile <(printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n') 2>/dev/null)
    local server; server=$("$bin/kubectl" --kubeconfig "$kubeconfig" config view -o jsonpath='{.clusters[0].cluster.server}')
    (umask 077; cat >"$d/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$server", certificate-authority: "$pki/ca.crt"}}]
users: [{name: $name, user: {client-certificate: "$d/$name.crt", client-key: "$d/$name.key"}}]
contexts: [{name: local, context: {cluster: local, user: $name}}]
current-context: local
EOF
    )
  fi
}

serving_cert() { # name CN SANs: a serving certificate signed by the control plane's CA
  local name=$1 cn=$2 san=$3 d="$node/pki"
  mkdir -p "$d"
  [ -f "$d/$name.crt" ] && return 0
  [ -f "$pki/ca.key" ] || die "the control plane's CA key is missing in $pki (start the cluster first)"
  (umask 077
    openssl req -new -newkey rsa:2048 -nodes -keyout "$d/$name.key" -subj "/CN=$cn" -out "$d/$name.csr" 2>/dev/null
    openssl x509 -req -in "$d/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
      -days 365 -out "$d/$name.crt" -extfile <(printf 'extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\nsubjectAltName=%s\n' "$san") 2>/dev/null)
}

# --- metrics-server -------------------------------------------------------------------------------
# The resource metrics API (metrics.k8s.io) that HorizontalPodAutoscalers read: metrics-server, an
# aggregated API server, runs on the host at the bridge address (port MODELREG_METRICS_PORT,
# default 4443) and scrapes this node's kubelet (/metrics/resource), whose serving certificate the
# cluster's CA signed for the bridge address. The API server reaches it through a Service without a
# selector and an EndpointSlice naming that address (kube-proxy routes the ClusterIP on the host).
# kwokctl configures no front-proxy CA: the API server's proxy presents its client certificate
# (CN kwok-admin, signed by the cluster's CA), so metrics-server trusts the user it forwards in
# X-Remote-User from that one name only, and authorizes the end user, as in a real cluster.
metrics_port=${MODELREG_METRICS_PORT:-4443}

metrics_server_manifest() { # ip port
  local ca; ca=$(base64 -w0 <"$pki/ca.crt")
  cat <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:metrics-server"}
rules:
  - {apiGroups: [""], resources: [nodes/metrics], verbs: [get]}
  - {apiGroups: [""], resources: [pods, nodes], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:metrics-server"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:metrics-server"}
subjects: [{kind: User, name: "system:metrics-server"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "metrics-server:system:auth-delegator"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}
subjects: [{kind: User, name: "system:metrics-server"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: "metrics-server-auth-reader", namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}
subjects: [{kind: User, name: "system:metrics-server"}]
---
apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system, labels: {app.kubernetes.io/name: metrics-server}}
spec:
  ports: [{name: https, port: 443, targetPort: $2, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: metrics-server-host
  namespace: kube-system
  labels: {kubernetes.io/service-name: metrics-server, endpointslice.kubernetes.io/managed-by: node.modelreg.dev}
addressType: IPv4
ports: [{name: https, port: $2, protocol: TCP}]
endpoints: [{addresses: ["$1"], conditions: {ready: true}}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  group: metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  service: {name: metrics-server, namespace: kube-system, port: 443}
  caBundle: $ca
EOF
}

metrics_available() {
  [ "$("$bin/kubectl" --kubeconfig "$kubeconfig" get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.status.conditions[?(@.type=="Available")].status}' 2>/dev/null)" = True ]
}

metrics_server_up() {
  [ -x "$bin/metrics-server" ] || die "$bin/metrics-server is missing: run 'make tools' (it builds metrics-server $METRICS_SERVER_VERSION once)"
  local ip; ip=$(node_ip)
  if ! alive metrics-server; then
    client_cert metrics-server system:metrics-server system:metrics-servers
    serving_cert metrics-server-serving metrics-server "DNS:metrics-server.kube-system.svc,DNS:metrics-server.kube-system.svc.cluster.local,IP:$ip"
    start metrics-server "$node/logs/metrics-server.log" "$bin/metrics-server" \
      --kubeconfig "$node/pki/metrics-server.kubeconfig" \
      --authentication-kubeconfig "$node/pki/metrics-server.kubeconfig" \
      --authorization-kubeconfig "$node/pki/metrics-server.kubeconfig" \
      --bind-address "$ip" --secure-port "$metrics_port" \
      --tls-cert-file "$node/pki/metrics-server-serving.crt" --tls-private-key-file "$node/pki/metrics-server-serving.key" \
      --requestheader-client-ca-file "$pki/ca.crt" --requestheader-allowed-names kwok-admin \
      --kubelet-certificate-authority "$pki/ca.crt" --kubelet-preferred-address-types InternalIP \
      --node-selector modelreg.dev/real-node=true --metric-resolution 10s --kubelet-request-timeout 5s
  fi
  metrics_server_manifest "$ip" "$metrics_port" | "$bin/kubectl" --kubeconfig "$kubeconfig" apply -f - >"$node/logs/metrics-server-apply.log" 2>&1 ||
    die "could not register metrics-server's APIService: $(tail -n 3 "$node/logs/metrics-server-apply.log")"
  local i
  for i in $(seq 300); do
    metrics_available && break
    alive metrics-server || die "metrics-server exited; see $node/logs/metrics-server.log: $(grep -m 3 -E '^(E[0-9]|Error)' "$node/logs/metrics-server.log")"
    sleep 0.2
  done
  metrics_available || die "the metrics.k8s.io APIService is not Available after 60s: $("$bin/kubectl" --kubeconfig "$kubeconfig" get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.status.conditions[0].message}'); see $node/logs/metrics-server.log"
}

# --- containerd -----------------------------------------------------------------------------------

containerd_sock() { echo "$node/run/containerd.sock"; }
ctr_() { "$bin/ctr" --address "$(containerd_sock)" -n k8s.io "$@"; }

write_containerd_config() {
  local c="$node/containerd"
  mkdir -p "$c/certs.d/_default" "$node/run" "$node/cni/net.d" "$node/cni/bin"
  # Every registry is a dead loopback port: an accidental pull fails at once, on this machine.
  cat >"$c/certs.d/_default/hosts.toml" <<'EOF'
server = "http://127.0.0.1:9"
[host."http://127.0.0.1:9"]
  capabilities = ["pull", "resolve"]
EOF
  local d
  for d in bridge host-local loopback portmap; do ln -sfn "$bin/$d" "$node/cni/bin/$d"; done
  cat >"$c/config.toml" <<EOF
# Config version 4: the sockets are server plugins (a top-level [grpc] block would be ignored).
version = 4
root = "$c/root"
state = "$c/state"

[plugins.'io.containerd.server.v1.grpc']
  address = "$(containerd_sock)"
[plugins.'io.containerd.server.v1.ttrpc']
  address = "$(containerd_sock).ttrpc"

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins.'io.containerd.cri.v1.runtime']
  # The sandbox's bounding set lacks CAP_SYS_RESOURCE: a negative oom_score_adj is refused.
  restrict_oom_score_adj = true
  # The CNI's network namespaces under the node's own state directory, not /run/netns.
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$node/cni/bin"]
    conf_dir = "$node/cni/net.d"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$node/runc"
        SystemdCgroup = false

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$pause_ref"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$c/certs.d"
EOF
  local ip; ip=$(node_ip)
  cat >"$node/cni/net.d/10-modelreg.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "modelreg",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$node/cni/ipam",
        "ranges": [[{"subnet": "$cidr", "gateway": "$ip"}]],
        "routes": [{"dst": "$service_cidr"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

# The pause image, FROM scratch around the binary built from k8s' own C source (tools/build.sh).
import_pause() {
  ctr_ images ls -q "name==$pause_ref" 2>/dev/null | grep -q . && return 0
  local p="$cache/pause-$KUBERNETES_VERSION/pause"
  [ -x "$p" ] || die "$p is missing: run 'make tools'"
  python3 "$here/oci_scratch.py" "$p" "$pause_ref" "$node/pause.oci.tar"
  ctr_ images import --no-unpack=false "$node/pause.oci.tar" >"$node/logs/pause-import.log" 2>&1 ||
    die "importing the pause image failed: $(tail -n 3 "$node/logs/pause-import.log")"
  ctr_ images ls -q "name==$pause_ref" 2>/dev/null | grep -q . || die "containerd does not list $pause_ref after importing it"
}

# --- kubelet and kube-proxy -----------------------------------------------------------------------

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

write_kubelet_config() {
  local ip; ip=$(node_ip)
  mkdir -p "$node/kubelet" "$node/pod-logs"
  : >"$node/resolv.conf"
  cat >"$node/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 here: 1.35+ refuses it unless told, and cgroupfs is the only driver without systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
# A negative oom_score_adj is refused in this sandbox.
oomScoreAdj: 0
containerRuntimeEndpoint: unix://$(containerd_sock)
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $(free_port)
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
# Signed by the cluster's CA for the bridge address: metrics-server verifies it.
tlsCertFile: $node/pki/kubelet-serving.crt
tlsPrivateKeyFile: $node/pki/kubelet-serving.key
registerWithTaints:
  - {key: modelreg.dev/real-node, value: "true", effect: NoSchedule}
resolvConf: $node/resolv.conf
podLogsDir: $node/pod-logs
failSwapOn: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
maxPods: 60
EOF
  cat >"$node/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
hostnameOverride: $node_name
clientConnection: {kubeconfig: $node/pki/kube-proxy.kubeconfig}
clusterCIDR: $cidr
nodePortAddresses: ["$ip/32"]
healthzBindAddress: 127.0.0.1:$(free_port)
metricsBindAddress: 127.0.0.1:$(free_port)
# Leave the machine's conntrack sysctls as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

node_ready() {
  [ "$("$bin/kubectl" --kubeconfig "$kubeconfig" get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

up() {
  [ -f "$kubeconfig" ] || die "no control plane: start it with 'tools/cluster.sh up'"
  local ip; ip=$(node_ip)
  ip link show "$bridge" >/dev/null 2>&1 || net_up
  local kport s3port
  kport=$("$bin/kubectl" --kubeconfig "$kubeconfig" config view -o jsonpath='{.clusters[0].cluster.server}' | sed 's/.*://')
  s3port=$(cat "$dev/s3/port" 2>/dev/null || true)
  forward apiserver "$kport"
  [ -z "$s3port" ] || forward s3 "$s3port"

  if alive kubelet && alive kube-proxy && alive containerd && node_ready && alive metrics-server && metrics_available; then
    say "already up ($(elapsed))"
    return 0
  fi
  client_cert kubelet "system:node:$node_name" system:nodes
  client_cert kube-proxy system:kube-proxy system:node-proxier
  serving_cert kubelet-serving "system:node:$node_name" "DNS:$node_name,IP:$ip"

  if ! alive containerd; then
    write_containerd_config
    PATH="$bin:$PATH" start containerd "$node/logs/containerd.log" "$bin/containerd" --config "$node/containerd/config.toml"
    wait_for containerd 150 ctr_ version ||
      die "containerd did not start; see $node/logs/containerd.log: $(tail -n 3 "$node/logs/containerd.log")"
  fi
  import_pause
  if [ -x "$here/image.sh" ] && [ -f "$dev/images/modelreg.oci.tar" ]; then
    "$here/image.sh" import || say "warning: importing the modelreg image failed (run 'make image')"
  fi

  write_kubelet_config
  if ! alive kubelet; then
    start kubelet "$node/logs/kubelet.log" "$bin/kubelet" --config "$node/kubelet.yaml" \
      --kubeconfig "$node/pki/kubelet.kubeconfig" --root-dir "$node/kubelet" --cert-dir "$node/kubelet/pki" \
      --hostname-override "$node_name" --node-ip "$ip" \
      --node-labels "modelreg.dev/real-node=true"
  fi
  if ! alive kube-proxy; then
    start kube-proxy "$node/logs/kube-proxy.log" "$bin/kube-proxy" --config "$node/kube-proxy.yaml"
  fi
  local i
  for i in $(seq 300); do
    node_ready && break
    alive kubelet || die "the kubelet exited; see $node/logs/kubelet.log: $(grep -E '^E|error' "$node/logs/kubelet.log" | tail -n 3)"
    alive kube-proxy || die "kube-proxy exited; see $node/logs/kube-proxy.log: $(tail -n 3 "$node/logs/kube-proxy.log")"
    sleep 0.2
  done
  node_ready || die "node $node_name is not Ready after 60s; see $node/logs/kubelet.log"
  metrics_server_up
  say "node $node_name Ready at $ip (containerd $CONTAINERD_VERSION, kubelet $KUBERNETES_VERSION, metrics-server $METRICS_SERVER_VERSION on $ip:$metrics_port) in $(elapsed); tainted modelreg.dev/real-node=true:NoSchedule"
}

# --- teardown -------------------------------------------------------------------------------------

kill_pods() { # every process in a kubepods cgroup, then the shims
  local f p
  for f in /sys/fs/cgroup/*/kubepods; do
    [ -d "$f" ] || continue
    # (cgroups vanish while we read them: a failing find is no error here)
    { find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null || true; } | sort -u |
      while read -r p; do kill -9 "$p" 2>/dev/null || true; done
  done
  pkill -9 -f "containerd-shim-runc-v2 .*-address $(containerd_sock)" 2>/dev/null || true
}

unmount_all() { # everything mounted under the node's directories, deepest first
  local m
  findmnt -rn -o TARGET | awk -v a="$node" -v b=/run/containerd -v c=/run/netns \
    'index($0, a) == 1 || index($0, b) == 1 || index($0, c "/cni-") == 1' | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done || true
}

down() {
  local any=0 n
  [ -d "$node" ] || { return 0; }
  for n in metrics-server kubelet kube-proxy; do alive "$n" && any=1; stop "$n"; done
  if [ -x "$bin/kube-proxy" ]; then "$bin/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
  kill_pods
  stop containerd
  for n in fwd-apiserver fwd-s3; do stop "$n"; done
  sleep 0.2
  kill_pods
  unmount_all
  # Network namespaces pinned by the CNI, their veths go with them; then the bridge and route.
  local ns
  for ns in /run/netns/cni-*; do [ -e "$ns" ] && { ip netns delete "$(basename "$ns")" 2>/dev/null || rm -f "$ns"; }; done
  rmdir /run/netns 2>/dev/null || true
  ip route del "$service_cidr" dev "$bridge" 2>/dev/null || true
  if [ -f "$node/saved/bridge" ] && ip link show "$bridge" >/dev/null 2>&1; then ip link del "$bridge"; any=1; fi
  # cgroups: the kubepods tree in every v1 hierarchy, deepest first.
  local f
  for f in /sys/fs/cgroup/*/kubepods; do
    [ -d "$f" ] && find "$f" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  # Paths the runtime cannot move out of system directories, unless they were there before.
  local d
  for d in /run/containerd /var/lib/cni; do
    [ -e "$node/saved/had$(echo "$d" | tr / _)" ] || rm -rf "$d"
  done
  for d in /var/log/containers /var/log/pods; do
    [ -e "$node/saved/had$(echo "$d" | tr / _)" ] || rm -rf "$d"
  done
  # Rules: the machine's own ruleset as it was before the node's first start.
  if [ -f "$node/saved/ruleset.nft" ] && command -v nft >/dev/null 2>&1; then
    nft flush ruleset
    nft -f "$node/saved/ruleset.nft"
  fi
  [ ! -f "$node/saved/ip_forward" ] || cat "$node/saved/ip_forward" >/proc/sys/net/ipv4/ip_forward
  [ ! -f "$node/saved/bridge-nf-call-iptables" ] || cat "$node/saved/bridge-nf-call-iptables" >/proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || true
  if ! rm -rf "$node" 2>/dev/null; then
    # A mount that was still busy a moment ago (a dying container's): once more, then say which.
    sleep 1; kill_pods; unmount_all
    rm -rf "$node" || die "could not remove $node; still mounted: $(findmnt -rn -o TARGET | grep -F "$node" | tr '\n' ' ')"
  fi
  [ $any = 0 ] || say "stopped the real node and removed its state in $(elapsed)"
}

status() {
  if alive kubelet && node_ready && alive metrics-server; then say "real node: up ($node_name at $(node_ip))"; else say "real node: down"; fi
}

case ${1:-} in
  check) check ;;
  deps) mkdir -p "$dev"; deps ;;
  net-up) net_up ;;
  up) up ;;
  down) down ;;
  status) status ;;
  ip) node_ip ;;
  *) echo "usage: $0 check|deps|net-up|up|down|status|ip" >&2; exit 2 ;;
esac
