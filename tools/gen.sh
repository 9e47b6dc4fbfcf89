#!/usr/bin/env bash
# Regenerates the wrapper Go module of each pinned tool (tools/<tool>/go.mod, go.sum) from
# tools/versions.env. Run it after changing a version; tools/build.sh only builds what is
# committed, so a build never resolves dependencies on its own.
#
# k8s.io/kubernetes requires every staging module at v0.0.0, which does not exist on the
# module proxy; the replace list is derived from that module's own go.mod, never typed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
. "$here/versions.env"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local

init() { # dir module-path
  rm -f "$here/$1/go.mod" "$here/$1/go.sum"
  (cd "$here/$1" && go mod init "modelreg.dev/tools/$1" >/dev/null 2>&1)
}

gen_k8s() {
  init k8s
  cd "$here/k8s"
  go mod edit -require="k8s.io/kubernetes@$KUBERNETES_VERSION"
  local gomod staging
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  staging="v0.${KUBERNETES_VERSION#v1.}"
  # Each "k8s.io/<name> v0.0.0" requirement is a staging module published as v0.<minor>.<patch>.
  grep -E '^[[:space:]]+k8s\.io/[a-z0-9/-]+ v0\.0\.0([[:space:]]|$)' "$gomod" | awk '{print $1}' | sort -u |
    while read -r mod; do go mod edit -replace="$mod=$mod@$staging"; done
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
    go mod edit -tool="k8s.io/kubernetes/cmd/$cmd"
  done
  go mod tidy
}

gen_simple() { # dir module version tool-packages...
  local dir=$1 mod=$2 ver=$3; shift 3
  init "$dir"
  cd "$here/$dir"
  go mod edit -require="$mod@$ver"
  for p in "$@"; do go mod edit -tool="$p"; done
  go mod tidy
}

gen_etcd() {
  # The etcd server module replaces its sibling modules with relative paths; outside its repo
  # those must come from the proxy at the same version.
  init etcd
  cd "$here/etcd"
  for m in server/v3 api/v3 client/pkg/v3 client/v3 pkg/v3; do
    go mod edit -require="go.etcd.io/etcd/$m@$ETCD_VERSION"
  done
  go mod edit -tool=go.etcd.io/etcd/server/v3
  go mod tidy
}

gen_containerd() {
  # containerd's daemon, ctr and the runc shim (v2) for the real worker node.
  (gen_simple containerd github.com/containerd/containerd/v2 "$CONTAINERD_VERSION" \
    github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2)
}

targets=${*:-k8s etcd kwok helm versitygw containerd cni}
for t in $targets; do
  echo "== generating tools/$t"
  case $t in
    k8s) (gen_k8s) ;;
    etcd) (gen_etcd) ;;
    kwok) (gen_simple kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl) ;;
    helm) (gen_simple helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm) ;;
    containerd) gen_containerd ;;
    cni) (gen_simple cni github.com/containernetworking/plugins "$CNI_PLUGINS_VERSION" \
      github.com/containernetworking/plugins/plugins/main/bridge github.com/containernetworking/plugins/plugins/main/loopback \
      github.com/containernetworking/plugins/plugins/ipam/host-local github.com/containernetworking/plugins/plugins/meta/portmap) ;;
    versitygw) (gen_simple versitygw github.com/versity/versitygw "$VERSITYGW_VERSION" github.com/versity/versitygw/cmd/versitygw) ;;
    *) echo "unknown tool $t" >&2; exit 2 ;;
  esac
done
