#!/usr/bin/env bash
# Proves that `make cluster-down` restores the machine: a snapshot of the host state a cluster and
# its real node touch, taken before `make cluster-up`, compared after `make cluster-down`.
#
#   tools/hostcheck.sh snapshot FILE   record the state
#   tools/hostcheck.sh compare FILE    fail (exit 1) naming every difference
#
# Compared: the nft ruleset, network interfaces and routes, network namespaces, mounts, kubepods
# cgroups, ip_forward, listening sockets, and the environment's processes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

state() {
  echo "## nft"
  if command -v nft >/dev/null 2>&1; then nft list ruleset 2>/dev/null; fi
  echo "## links"
  ip -o link show | awk '{print $2}' | sed 's/@.*//' | sort
  echo "## addresses"
  ip -o addr show | awk '{print $2, $4}' | sort
  echo "## routes"
  ip route show | sort
  echo "## netns"
  ls /run/netns 2>/dev/null | sort || true
  echo "## mounts"
  findmnt -rn -o TARGET | grep -E "^($repo|/run/containerd|/run/netns|/var/lib/kubelet|/var/lib/cni)" | sort || true
  echo "## cgroups"
  ls -d /sys/fs/cgroup/*/kubepods 2>/dev/null || true
  echo "## sysctl"
  echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
  echo "## dirs"
  ls -d /run/containerd /var/lib/cni /var/log/containers /var/log/pods 2>/dev/null || true
  echo "## listeners"
  ss -ltnH | awk '{print $4}' | sort -u
  # Live processes only: nobody reaps orphans in this sandbox, so a stopped daemon may linger as a
  # zombie, which holds nothing.
  echo "## processes"
  ps -eo stat=,args= | awk -v d="$repo/.dev" '$1 !~ /^Z/ && index($0, d) && !/hostcheck|awk/ {$1=""; print}' | sort
  ps -eo stat=,comm= | awk '$1 !~ /^Z/ {print $2}' |
    grep -x -E 'kubelet|kube-proxy|containerd|containerd-shim|containerd-shim-runc-v2|socat|versitygw|kube-apiserver|kube-controller|kube-scheduler|etcd|kwok|kwok-controller|runc' |
    sort | sed 's/^/running: /' || true
}

case ${1:-} in
  snapshot) state >"$2"; echo "hostcheck: recorded the host's state in $2" ;;
  compare)
    if diff -u "$2" <(state) >"$2.diff"; then
      echo "hostcheck: the host is as it was before the cluster (no process, rule, interface, mount or cgroup left)"
    else
      echo "hostcheck: error: the host differs from before the cluster:" >&2
      cat "$2.diff" >&2
      exit 1
    fi ;;
  *) echo "usage: $0 snapshot|compare FILE" >&2; exit 2 ;;
esac
