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
  mkdir -p "$here/$1"
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

# The one source directory of Argo CD that no registry serves: argo-cd v3.5.x requires the nested
# module github.com/argoproj/argo-cd/gitops-engine with `replace => ./gitops-engine`, a directory
# that is not in the argo-cd module zip (and the proxy refuses the nested module). It lives outside
# the repository, in shared/vendor/ beside the checkout (CI clones elsewhere with a copy of shared/
# beside the clone). MODELREG_VENDOR_DIR names another place.
vendor=${MODELREG_VENDOR_DIR:-$(dirname "$here")/../shared/vendor}
# What the committed tools/argocd/go.mod names: that default, relative to tools/argocd/. build.sh
# never relies on it; it rewrites the replace to the absolute path of MODELREG_VENDOR_DIR.
gitops_engine_default=../../../shared/vendor/argo-cd-gitops-engine

gitops_engine_dir() { # -> the vendored gitops-engine directory (absolute), or a clear error
  local d="$vendor/argo-cd-gitops-engine"
  if [ ! -f "$d/go.mod" ] || ! grep -qx 'module github.com/argoproj/argo-cd/gitops-engine' "$d/go.mod"; then
    echo "error: the vendored Argo CD gitops-engine source is missing: $d/go.mod (module" >&2
    echo "       github.com/argoproj/argo-cd/gitops-engine at $ARGOCD_VERSION) not found. It is shared/vendor/" >&2
    echo "       beside the checkout; set MODELREG_VENDOR_DIR to the directory that holds argo-cd-gitops-engine/." >&2
    exit 3
  fi
  (cd "$d" && pwd)
}

gen_argocd() {
  # Argo CD's go.mod replaces k8s.io/* and a few others, and maps its nested gitops-engine module
  # to ./gitops-engine. Every replace is copied from that go.mod (read with `go mod edit -json`,
  # never typed); the one local path is pointed at the vendored directory.
  local engine; engine=$(gitops_engine_dir)
  init argocd
  cd "$here/argocd"
  go mod edit -require="github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION"
  local gomod
  gomod=$(go mod download -json "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  local replaces r n=0
  replaces=$(go mod edit -json "$gomod" | ENGINE="$engine" python3 -c '
import json, os, sys
for r in json.load(sys.stdin).get("Replace") or []:
    old, new = r["Old"], r["New"]
    lhs = old["Path"] + ("@" + old["Version"] if old.get("Version") else "")
    if new.get("Version"):
        print(lhs + "=" + new["Path"] + "@" + new["Version"])
    elif old["Path"] == "github.com/argoproj/argo-cd/gitops-engine" and new["Path"] == "./gitops-engine":
        print(lhs + "=" + os.environ["ENGINE"])
    else:
        sys.exit("error: argo-cd go.mod replaces " + lhs + " with the local path " + new["Path"] + ", which no registry serves")
')
  while read -r r; do go mod edit -replace="$r"; n=$((n + 1)); done <<<"$replaces"
  echo "   $n replace directives from argo-cd's go.mod ($gomod)"
  go mod edit -tool=github.com/argoproj/argo-cd/v3/cmd
  go mod tidy
  # Committed with the default location; tidy needed the real one.
  go mod edit -replace="github.com/argoproj/argo-cd/gitops-engine=$gitops_engine_default"
}

gen_containerd() {
  # containerd's daemon, ctr and the runc shim (v2) for the real worker node.
  (gen_simple containerd github.com/containerd/containerd/v2 "$CONTAINERD_VERSION" \
    github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2)
}

targets=${*:-k8s etcd kwok helm versitygw containerd cni metrics-server argocd kustomize}
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
    argocd) (gen_argocd) ;;
    kustomize) (gen_simple kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION" sigs.k8s.io/kustomize/kustomize/v5) ;;
    metrics-server) (gen_simple metrics-server sigs.k8s.io/metrics-server "$METRICS_SERVER_VERSION" sigs.k8s.io/metrics-server/cmd/metrics-server) ;;
    versitygw) (gen_simple versitygw github.com/versity/versitygw "$VERSITYGW_VERSION" github.com/versity/versitygw/cmd/versitygw) ;;
    *) echo "unknown tool $t" >&2; exit 2 ;;
  esac
done
