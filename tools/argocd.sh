#!/usr/bin/env bash
# The real Argo CD against the local control plane (tools/cluster.sh): redis, the repo-server and
# the application-controller of upstream Argo CD (tools/versions.env, built by tools/build.sh) as
# plain processes. Called by `make argocd-up` / `make argocd-down`; `make cluster-down` runs `down`
# first.
#
#   tools/argocd.sh up          start (idempotent: what runs is kept, what is missing is started;
#                               the objects in namespace argocd are re-applied)
#   tools/argocd.sh down        stop every process, delete namespace argocd, Argo CD's CRDs and its
#                               RBAC, remove .dev/argocd/ (git repositories included)
#   tools/argocd.sh status
#   tools/argocd.sh repo NAME   create the bare repository .dev/argocd/git/NAME.git (if missing; no
#                               force-push, no branch deletion) and
#                               print the URL an Application names (file://...)
#
# Network: the controller's metrics server binds 0.0.0.0 (hard-coded in Argo CD), so the three
# processes run in a private network namespace of their own, where every listener is on its own
# loopback. The API server is bridged in through a unix socket: socat on the host forwards
# .dev/argocd/run/kube.sock to the API server's 127.0.0.1 port, and socat in the namespace listens on
# the same port number on the namespace's loopback, so the kubeconfig stays valid. Nothing listens
# on a host port; git repositories are file:// URLs (the file system is shared). The namespace is
# held by a process, not by a mount under /run/netns: when the processes end, it is gone.
#
# The controller acts as the ServiceAccount argocd/argocd-application-controller (a token
# kubeconfig in .dev/argocd/), bound to a ClusterRole like upstream's; the destination is
# https://kubernetes.default.svc (ARGOCD_FAKE_IN_CLUSTER: that name means this kubeconfig).
#
# Environment (ports inside the private namespace, so they never collide with the host's):
#   MODELREG_ARGOCD_REDIS_PORT          redis (default 6379)
#   MODELREG_ARGOCD_REPO_PORT           repo-server gRPC (default 8081)
#   MODELREG_ARGOCD_REPO_METRICS_PORT   repo-server metrics (default 8084)
#   MODELREG_ARGOCD_METRICS_PORT        controller metrics and /healthz (default 8082)
#   MODELREG_ARGOCD_RESYNC              the controller's --app-resync in seconds (default 30)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
# shellcheck source=/dev/null
. "$here/versions.env"
dev="$repo/.dev"
bin="$dev/bin"
state="$dev/argocd"
kubeconfig="$dev/kubeconfig"
cache=${MODELREG_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelreg/tools}
acd="$cache/argocd-$ARGOCD_VERSION"
ns=argocd
redis_port=${MODELREG_ARGOCD_REDIS_PORT:-6379}
repo_port=${MODELREG_ARGOCD_REPO_PORT:-8081}
repo_metrics_port=${MODELREG_ARGOCD_REPO_METRICS_PORT:-8084}
metrics_port=${MODELREG_ARGOCD_METRICS_PORT:-8082}
resync=${MODELREG_ARGOCD_RESYNC:-30}
sock="$state/run/kube.sock"
t0=$(date +%s.%N)
# Processes in start order; `down` stops them in reverse.
procs=(netns bridge-host bridge-ns redis repo-server controller)

say() { printf 'argocd: %s\n' "$*"; }
die() { printf 'argocd: error: %s\n' "$*" >&2; exit 1; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}s')" "$t0" "$(date +%s.%N)"; }
kc() { "$bin/kubectl" --kubeconfig "$kubeconfig" --request-timeout=20s "$@"; }
kc_wait() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; } # for --wait, which --request-timeout would cut short

running() { # pid -> 0 when it runs (a zombie, which nobody may reap here, does not count)
  local s
  s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}
pid_of() { if [ -f "$state/pids/$1.pid" ]; then cat "$state/pids/$1.pid"; fi; }
alive() { local p; p=$(pid_of "$1"); [ -n "$p" ] && running "$p"; }
log_tail() { tail -n "${2:-5}" "$state/logs/$1.log" 2>/dev/null | tr '\n' ' ' || true; }

kube_ready() {
  [ -s "$kubeconfig" ] && "$bin/kubectl" --kubeconfig "$kubeconfig" --request-timeout=3s get --raw /readyz >/dev/null 2>&1
}

need_tools() {
  local b
  for b in argocd argocd-application-controller argocd-repo-server kustomize helm kubectl; do
    [ -x "$bin/$b" ] || die "$bin/$b is missing: Argo CD $ARGOCD_VERSION is not built; run 'make argocd-up' or 'tools/build.sh argocd' (a cold build takes about 6 min)"
  done
  for b in git-verify-wrapper.sh gpg-wrapper.sh crds/application-crd.yaml crds/appproject-crd.yaml; do
    [ -e "$acd/$b" ] || die "$acd/$b is missing (the tool cache is incomplete): run 'tools/build.sh argocd'"
  done
}

# Debian packages, by the command each provides. redis-server is installed when missing (as root
# with apt-get), like tools/node.sh installs the node's; it stays installed, as those do.
declare -A debs=([redis-server]=redis-server [socat]=socat [git]=git [ip]=iproute2 [nsenter]=util-linux [unshare]=util-linux)

deps() {
  local c m=()
  for c in "${!debs[@]}"; do command -v "$c" >/dev/null 2>&1 || m+=("${debs[$c]}"); done
  [ ${#m[@]} -gt 0 ] || return 0
  mapfile -t m < <(printf '%s\n' "${m[@]}" | sort -u)
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing: ${m[*]} (Argo CD needs redis-server; install: apt-get install -y ${m[*]})"
  fi
  say "installing the Debian packages Argo CD needs: ${m[*]}"
  # The package's own redis service must not start (it would listen on 127.0.0.1:6379 of the
  # host, and outlive `down`): whatever redis-server the install started is stopped again.
  local before after p
  before=$(pgrep -x redis-server || true)
  mkdir -p "$dev"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${m[@]}" >"$dev/apt-argocd.log" 2>&1 ||
    { apt-get update -q >>"$dev/apt-argocd.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${m[@]}" >>"$dev/apt-argocd.log" 2>&1; } ||
    die "apt-get could not install ${m[*]}; see $dev/apt-argocd.log: $(tail -n 2 "$dev/apt-argocd.log")"
  after=$(pgrep -x redis-server || true)
  for p in $after; do
    grep -qx "$p" <<<"$before" && continue
    say "stopping the redis service that the package started (pid $p)"
    { command -v invoke-rc.d >/dev/null 2>&1 && invoke-rc.d redis-server stop >>"$dev/apt-argocd.log" 2>&1; } || kill "$p" 2>/dev/null || true
  done
  printf '%s\n' "${m[@]}" >>"$dev/apt-argocd.installed"
  command -v redis-server >/dev/null 2>&1 || die "redis-server is still missing after apt-get install; see $dev/apt-argocd.log"
}

# --- the private network namespace ----------------------------------------------------------------

netns_path() { echo "/proc/$(pid_of netns)/ns/net"; }
in_ns() { nsenter --net="$(netns_path)" -- "$@"; }

start_ns() { # name command...: detached, in the namespace, fds of the locks closed
  local name=$1; shift
  nohup nsenter --net="$(netns_path)" -- "$@" >"$state/logs/$name.log" 2>&1 8>&- 9>&- </dev/null &
  echo $! >"$state/pids/$name.pid"
}

start_netns() {
  # A holder process owns the namespace; its argv names the state directory, so that a leftover is
  # seen by `ps` (tools/hostcheck.sh) and found by `down`.
  nohup unshare --net -- bash -c "ip link set lo up && exec -a 'modelreg-argocd-netns $state' sleep infinity" \
    >"$state/logs/netns.log" 2>&1 8>&- 9>&- </dev/null &
  echo $! >"$state/pids/netns.pid"
  local p=$! i
  for i in $(seq 50); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = sleep ] && break
    running "$p" || die "could not create a private network namespace (unshare --net): $(log_tail netns)"
    sleep 0.1
  done
  [ "$(readlink "/proc/$p/ns/net")" != "$(readlink /proc/self/ns/net)" ] || die "the holder process is not in a network namespace of its own"
}

port_free_in_ns() { # port -> 0 when nothing listens on it in the namespace
  in_ns python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
s.close()
EOF
}

probe_ns() { # what port [path]: a TCP connect, or an HTTP GET of path, on the namespace's loopback
  in_ns python3 - "$@" <<'EOF'
import socket, sys, urllib.request
what, port = sys.argv[1], int(sys.argv[2])
if what == "redis":
    s = socket.create_connection(("127.0.0.1", port), timeout=1)
    s.sendall(b"PING\r\n")
    sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
if what == "http":
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{sys.argv[3]}", timeout=1) as r:
        sys.exit(0 if r.status == 200 else 1)
socket.create_connection(("127.0.0.1", port), timeout=1).close()
EOF
}

wait_ns() { # name tries probe-args...: until the probe answers; dies with the log if the process exits
  local name=$1 n=$2; shift 2
  local i
  for i in $(seq "$n"); do
    probe_ns "$@" >/dev/null 2>&1 && return 0
    alive "$name" || die "$name exited at start; see $state/logs/$name.log: $(log_tail "$name")"
    sleep 0.2
  done
  die "$name did not answer on port $2 in Argo CD's network namespace after $((n / 5))s; see $state/logs/$name.log: $(log_tail "$name")"
}

check_port() { # port variable
  [ "$1" != "$kport" ] || die "port $1 ($2) is the API server's, which the namespace forwards: pick another"
  port_free_in_ns "$1" || die "port $1 ($2) is already in use in Argo CD's network namespace: pick another"
}

# --- Kubernetes objects ---------------------------------------------------------------------------

apply_objects() {
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $ns
  labels: {app.kubernetes.io/part-of: argocd}
EOF
  # The ApplicationSet CRD is larger than the last-applied annotation allows: server-side apply.
  kc apply --server-side --force-conflicts --field-manager=modelreg-argocd -f "$acd/crds/" >/dev/null
  # (`kubectl wait` errors out while a new CRD has no conditions yet.)
  local crd i
  for crd in applications.argoproj.io appprojects.argoproj.io; do
    for i in $(seq 120); do
      [ "$(kc get crd "$crd" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ] && break
      [ "$i" != 120 ] || die "the CRD $crd is not Established after 60s"
      sleep 0.5
    done
  done
  # The controller's identity and permissions: upstream's ClusterRole, with its verbs listed.
  # Upstream grants verbs ["*"], which also grants modelreg's custom verb "promote": the chart's
  # approval policy could then not tell Argo CD from an approver, whatever
  # admission.allowedServiceAccounts says. bind and escalate let it create the chart's RBAC.
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ServiceAccount
metadata:
  name: argocd-application-controller
  namespace: $ns
  labels: {app.kubernetes.io/name: argocd-application-controller, app.kubernetes.io/part-of: argocd}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: argocd-application-controller
  labels: {app.kubernetes.io/name: argocd-application-controller, app.kubernetes.io/part-of: argocd}
rules:
  - apiGroups: ["*"]
    resources: ["*"]
    verbs: [get, list, watch, create, update, patch, delete, deletecollection]
  - apiGroups: [rbac.authorization.k8s.io]
    resources: [roles, clusterroles]
    verbs: [bind, escalate]
  - nonResourceURLs: ["*"]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: argocd-application-controller
  labels: {app.kubernetes.io/name: argocd-application-controller, app.kubernetes.io/part-of: argocd}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: argocd-application-controller}
subjects:
  - {kind: ServiceAccount, name: argocd-application-controller, namespace: $ns}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-rbac-cm
  namespace: $ns
  labels: {app.kubernetes.io/name: argocd-rbac-cm, app.kubernetes.io/part-of: argocd}
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata:
  name: default
  namespace: $ns
spec:
  sourceRepos: ["*"]
  destinations: [{namespace: "*", server: "*"}]
  clusterResourceWhitelist: [{group: "*", kind: "*"}]
EOF
  # argocd-cm: its own keys, then modelreg's Lua health checks merged in exactly as
  # manifests/argocd/argocd-cm.yaml tells users to (a merge patch leaves other keys alone).
  kc apply --server-side --field-manager=modelreg-argocd -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: $ns
  labels: {app.kubernetes.io/name: argocd-cm, app.kubernetes.io/part-of: argocd}
data:
  timeout.reconciliation: ${resync}s
EOF
  kc -n "$ns" patch configmap argocd-cm --type merge --patch-file "$repo/manifests/argocd/argocd-cm.yaml" >/dev/null
  if ! kc -n "$ns" get secret argocd-secret >/dev/null 2>&1; then
    local key; key=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
    kc -n "$ns" create secret generic argocd-secret --from-literal=server.secretkey="$key" >/dev/null
    kc -n "$ns" label secret argocd-secret app.kubernetes.io/name=argocd-secret app.kubernetes.io/part-of=argocd >/dev/null
  fi
}

write_kubeconfig() { # the controller's: its ServiceAccount's token, the API server's address and CA
  local server ca token
  server=$(kc config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
  ca=$(kc config view --raw --minify --flatten -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  token=$(kc -n "$ns" create token argocd-application-controller --duration=8760h)
  (umask 077; cat >"$state/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: argocd-application-controller, user: {token: "$token"}}]
contexts: [{name: local, context: {cluster: local, user: argocd-application-controller, namespace: $ns}}]
current-context: local
EOF
  )
}

# --- up / down ------------------------------------------------------------------------------------

all_alive() { local p; for p in "${procs[@]}"; do alive "$p" || return 1; done; }

stop() { # name
  local p; p=$(pid_of "$1")
  [ -n "$p" ] || return 0
  if running "$p"; then
    kill "$p" 2>/dev/null || true
    local i
    for i in $(seq 50); do running "$p" || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  fi
  rm -f "$state/pids/$1.pid"
}

stop_all() {
  local i
  for ((i = ${#procs[@]} - 1; i >= 0; i--)); do stop "${procs[i]}"; done
  # Whatever lost its pid file (a killed run): every process naming the state directory or the
  # Argo CD binaries in its argv.
  local left
  left=$(pgrep -f "$state/|$state\$|$bin/argocd-" || true)
  if [ -n "$left" ]; then
    # shellcheck disable=SC2086
    kill $left 2>/dev/null || true
    sleep 1
    # shellcheck disable=SC2086
    kill -9 $left 2>/dev/null || true
    say "killed leftover processes: $(tr '\n' ' ' <<<"$left")"
  fi
  rm -f "$sock"
}

on_failed_start() {
  local rc=$?
  if [ $rc != 0 ]; then stop_all >/dev/null 2>&1; say "stopped the processes this failed start had begun"; fi
  exit $rc
}

up() {
  need_tools
  [ "$(id -u)" = 0 ] || die "Argo CD runs in a private network namespace (its controller's metrics server binds 0.0.0.0), which needs root (unshare --net)"
  deps
  kube_ready || die "the cluster is not up ($kubeconfig does not answer): run 'make cluster-up' first"
  local server hostport
  server=$(kc config view --minify -o jsonpath='{.clusters[0].cluster.server}')
  hostport=${server#https://}
  case $hostport in
    127.0.0.1:*|localhost:*) kport=${hostport##*:} ;;
    *) die "the API server ($server) is not on 127.0.0.1: tools/argocd.sh bridges only a loopback API server into its namespace" ;;
  esac
  local dup p
  dup=$(printf '%s\n' "$redis_port" "$repo_port" "$repo_metrics_port" "$metrics_port" | sort | uniq -d | tr '\n' ' ')
  [ -z "$dup" ] || die "port ${dup% } is given twice among MODELREG_ARGOCD_REDIS_PORT, _REPO_PORT, _REPO_METRICS_PORT, _METRICS_PORT: pick distinct ports"
  for p in "$redis_port" "$repo_port" "$repo_metrics_port" "$metrics_port"; do
    if ! [[ $p =~ ^[0-9]+$ ]] || [ "$p" -lt 1 ] || [ "$p" -gt 65535 ]; then die "'$p' is not a port number (MODELREG_ARGOCD_*_PORT)"; fi
  done
  mkdir -p "$state"/{pids,logs,run,git,home,tmp,tls,ssh,gnupg,gpg-data,plugins,redis}
  [ ${#sock} -lt 100 ] || die "the socket path $sock is too long for a unix socket (${#sock} chars): use a checkout at a shorter path"
  apply_objects
  # Running, but for another cluster (restarted on another port, or with a new CA): start afresh.
  if all_alive && { [ "$(cat "$state/run/kport" 2>/dev/null)" != "$kport" ] ||
    ! "$bin/kubectl" --kubeconfig "$state/kubeconfig" --request-timeout=5s auth whoami >/dev/null 2>&1; }; then
    say "the running Argo CD was started for another API server or credentials: restarting it"
    stop_all
  fi
  if all_alive; then
    say "already up ($(elapsed)); objects in namespace $ns re-applied"
    return 0
  fi
  # Something is missing (a killed run, or the first start): the processes start afresh, keeping
  # the objects, the git repositories and the controller's kubeconfig.
  stop_all
  # A start that fails half-way stops what it had started (the objects stay).
  trap on_failed_start EXIT
  write_kubeconfig
  echo "$kport" >"$state/run/kport"
  start_netns
  nohup socat "UNIX-LISTEN:$sock,fork,mode=600,unlink-early" "TCP4:127.0.0.1:$kport" \
    >"$state/logs/bridge-host.log" 2>&1 8>&- 9>&- </dev/null &
  echo $! >"$state/pids/bridge-host.pid"
  for _ in $(seq 50); do [ -S "$sock" ] && break; alive bridge-host || break; sleep 0.1; done
  [ -S "$sock" ] || die "the API server bridge did not start: $(log_tail bridge-host)"
  start_ns bridge-ns socat "TCP4-LISTEN:$kport,bind=127.0.0.1,reuseaddr,fork,backlog=128" "UNIX-CONNECT:$sock"
  wait_ns bridge-ns 50 tcp "$kport"
  check_port "$redis_port" MODELREG_ARGOCD_REDIS_PORT
  check_port "$repo_port" MODELREG_ARGOCD_REPO_PORT
  check_port "$repo_metrics_port" MODELREG_ARGOCD_REPO_METRICS_PORT
  check_port "$metrics_port" MODELREG_ARGOCD_METRICS_PORT
  start_ns redis redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
    --protected-mode yes --daemonize no --dir "$state/redis"
  wait_ns redis 50 redis "$redis_port"
  # The repo-server runs git-verify-wrapper.sh and gpg-wrapper.sh from PATH on every manifest
  # generation, even with GPG off; helm and kustomize come from .dev/bin. --revision-cache-expiration
  # is how long it trusts its last ls-remote of a branch: upstream sets it from timeout.reconciliation
  # (ARGOCD_RECONCILIATION_TIMEOUT); left at its 3m default, a push waits up to 3 minutes to be seen.
  local env=(env "HOME=$state/home" "TMPDIR=$state/tmp" "PATH=$acd:$bin:$PATH" ARGOCD_GPG_ENABLED=false
    "ARGOCD_TLS_DATA_PATH=$state/tls" "ARGOCD_SSH_DATA_PATH=$state/ssh" "ARGOCD_GNUPGHOME=$state/gnupg"
    "ARGOCD_GPG_DATA_PATH=$state/gpg-data" "ARGOCD_PLUGINSOCKFILEPATH=$state/plugins")
  start_ns repo-server "${env[@]}" "$bin/argocd-repo-server" --address 127.0.0.1 --port "$repo_port" \
    --metrics-address 127.0.0.1 --metrics-port "$repo_metrics_port" --redis "127.0.0.1:$redis_port" \
    --revision-cache-expiration "${resync}s" --logformat text
  wait_ns repo-server 300 tcp "$repo_port"
  # --persist-resource-health: without it v3 keeps per-resource health in redis only, and
  # .status.resources[].health stays empty for kubectl.
  start_ns controller "${env[@]}" "KUBECONFIG=$state/kubeconfig" ARGOCD_FAKE_IN_CLUSTER=true \
    "$bin/argocd-application-controller" --kubeconfig "$state/kubeconfig" --namespace "$ns" \
    --redis "127.0.0.1:$redis_port" --repo-server "127.0.0.1:$repo_port" --metrics-port "$metrics_port" \
    --app-resync "$resync" --persist-resource-health=true --logformat text
  wait_ns controller 300 http "$metrics_port" /healthz
  trap - EXIT
  say "Argo CD $ARGOCD_VERSION up in $(elapsed): controller, repo-server and redis in a private network namespace (pid $(pid_of netns)), the API server bridged in on 127.0.0.1:$kport"
  say "Applications go in namespace $ns, destination https://kubernetes.default.svc; repositories: tools/argocd.sh repo NAME (file://$state/git/NAME.git); logs in $state/logs/"
}

down() {
  local any=0
  if [ -d "$state/pids" ]; then
    local p
    for p in "${procs[@]}"; do alive "$p" && any=1; done
  fi
  stop_all
  if kube_ready; then
    if kc get namespace "$ns" >/dev/null 2>&1; then
      any=1
      # The controller is gone: nobody would honour Argo CD's finalizers, and the namespace would
      # never go. The resources the Applications deployed stay (they are the cluster's, not Argo CD's).
      local a
      for a in $(kc -n "$ns" get applications.argoproj.io -o name 2>/dev/null || true) \
        $(kc -n "$ns" get appprojects.argoproj.io -o name 2>/dev/null || true); do
        kc -n "$ns" patch "$a" --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
      done
      kc_wait delete namespace "$ns" --wait --timeout=90s >/dev/null ||
        die "namespace $ns was not deleted within 90s: $(kc get namespace "$ns" -o jsonpath='{.status.conditions}' 2>/dev/null)"
      say "deleted namespace $ns"
    fi
    if kc get crd applications.argoproj.io >/dev/null 2>&1 || kc get clusterrole argocd-application-controller >/dev/null 2>&1; then
      any=1
      [ ! -d "$acd/crds" ] || kc_wait delete --ignore-not-found --wait --timeout=60s -f "$acd/crds/" >/dev/null
      kc delete --ignore-not-found clusterrolebinding/argocd-application-controller clusterrole/argocd-application-controller >/dev/null
      say "deleted Argo CD's CRDs and ClusterRole"
    fi
  fi
  [ ! -d "$state" ] || { any=1; rm -rf "$state"; }
  if [ $any = 0 ]; then say "nothing was running"; else say "down in $(elapsed)"; fi
}

status() {
  local p
  for p in "${procs[@]}"; do
    if alive "$p"; then say "$p: up (pid $(pid_of "$p"))"; else say "$p: down"; fi
  done
  if kube_ready && kc get namespace "$ns" >/dev/null 2>&1; then
    say "applications: $(kc -n "$ns" get applications.argoproj.io -o jsonpath='{range .items[*]}{.metadata.name}={.status.sync.status}/{.status.health.status} {end}' 2>/dev/null)"
  fi
}

make_repo() { # name
  local name=${1:-}
  [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "usage: $0 repo NAME (letters, digits, . _ -)"
  mkdir -p "$state/git"
  local d="$state/git/$name.git"
  if [ ! -d "$d" ]; then
    git init -q --bare --initial-branch=main "$d"
    # Like a protected branch on a git host: history Argo CD has synced is never rewritten
    # (a force-push or a push of a diverged clone is rejected, with git's own message).
    git -C "$d" config receive.denyNonFastForwards true
    git -C "$d" config receive.denyDeletes true
  fi
  echo "file://$d"
}

# One up or down at a time (fd 8; tools/cluster.sh holds fd 9).
mkdir -p "$dev"
exec 8>"$dev/argocd.lock"
flock -w 600 8 || die "another 'tools/argocd.sh' holds $dev/argocd.lock for more than 10 minutes"

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  repo) make_repo "${2:-}" ;;
  *) echo "usage: $0 up|down|status|repo NAME" >&2; exit 2 ;;
esac
