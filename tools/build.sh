#!/usr/bin/env bash
# Builds the pinned local-control-plane tools from their wrapper modules (tools/<tool>/) into a
# cache outside the work tree, keyed by tool and version, and links them into .dev/bin/.
# Only what is missing is built. Called by `make tools`.
#
#   MODELREG_TOOLS_CACHE  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/modelreg/tools)
#   MODELREG_BIN_DIR      where links go (default: <repo>/.dev/bin)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
# shellcheck source=/dev/null
. "$here/versions.env"
cache=${MODELREG_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelreg/tools}
bindir=${MODELREG_BIN_DIR:-$repo/.dev/bin}

need_go() { # only when something must be built: cached tools need no Go at all
  if ! command -v go >/dev/null 2>&1; then
    echo "error: the Go toolchain is not on PATH. It is needed once, to build the pinned control-plane" >&2
    echo "       tools (tools/versions.env). Install Go >= 1.26 (https://go.dev/doc/install) and rerun 'make tools'." >&2
    exit 3
  fi
  local gov
  gov=$(go env GOVERSION)
  case $gov in
    go1.2[6-9]*|go1.[3-9][0-9]*) ;;
    *) echo "error: $gov is too old: kwok $KWOK_VERSION needs Go >= 1.26" >&2; exit 3 ;;
  esac
}
# Never fetch another toolchain: the machines here reach the module proxy, not toolchain downloads.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
builddate=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# build NAME VERSION "BINARIES" -- go build args...  (OUT: the -o name; MODDIR: build in that copy
# of the wrapper module instead of tools/NAME)
build() {
  local name=$1 ver=$2 bins=$3; shift 3
  local dest="$cache/$name-$ver" ok=1 b
  for b in $bins; do [ -x "$dest/$b" ] || ok=0; done
  if [ $ok = 1 ]; then
    echo "tools: $name $ver cached in $dest"
  else
    need_go
    echo "tools: building $name $ver ($bins) ..."
    local t0=$SECONDS tmp="$dest.tmp.$$"
    rm -rf "$tmp"; mkdir -p "$tmp"
    (cd "${MODDIR:-$here/$name}" && go build -trimpath -o "$tmp/${OUT:-}" "$@")
    rm -rf "$dest"; mv "$tmp" "$dest"
    echo "tools: built $name $ver in $((SECONDS - t0))s"
  fi
  mkdir -p "$bindir"
  for b in $bins; do ln -sfn "$dest/$b" "$bindir/$b"; done
}

k8s_minor=${KUBERNETES_VERSION#v1.}; k8s_minor=${k8s_minor%%.*}
vpkg=k8s.io/component-base/version
build k8s "$KUBERNETES_VERSION" "kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy" \
  -ldflags "-s -w -X $vpkg.gitVersion=$KUBERNETES_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$k8s_minor -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=$builddate" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy

# etcd's main package is the root of its server module, so go would name the binary "server".
OUT=etcd build etcd "$ETCD_VERSION" "etcd" -ldflags "-s -w" go.etcd.io/etcd/server/v3

kpkg=sigs.k8s.io/kwok/pkg/consts
build kwok "$KWOK_VERSION" "kwok kwokctl" \
  -ldflags "-s -w -X $kpkg.Version=${KWOK_VERSION#v} -X $kpkg.KubeVersion=${KUBERNETES_VERSION#v}" \
  sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl

# kwok's default node and pod stages, from the pinned module: tools/cluster.sh applies them as Stage
# objects so that tests can add their own stages beside them.
stages="$cache/kwok-$KWOK_VERSION/stages"
if [ ! -f "$stages/pod-ready.yaml" ]; then
  need_go
  kdir=$(cd "$here/kwok" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$stages"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    cp "$kdir/kustomize/stage/$f" "$stages/"
  done
  chmod 644 "$stages"/*.yaml
fi

hpkg=helm.sh/helm/v3
build helm "$HELM_VERSION" "helm" \
  -ldflags "-s -w -X $hpkg/internal/version.version=$HELM_VERSION -X $hpkg/internal/version.gitTreeState=clean -X $hpkg/pkg/chartutil.k8sVersionMajor=1 -X $hpkg/pkg/chartutil.k8sVersionMinor=$k8s_minor -X $hpkg/pkg/lint/rules.k8sVersionMajor=1 -X $hpkg/pkg/lint/rules.k8sVersionMinor=$k8s_minor" \
  helm.sh/helm/v3/cmd/helm

build versitygw "$VERSITYGW_VERSION" "versitygw" \
  -ldflags "-s -w -X main.Version=$VERSITYGW_VERSION -X main.Build=release" \
  github.com/versity/versitygw/cmd/versitygw
# The real worker node: containerd with its runc shim, the CNI plugins, and the pause image's binary.
cpkg=github.com/containerd/containerd/v2
build containerd "$CONTAINERD_VERSION" "containerd ctr containerd-shim-runc-v2" \
  -tags "no_btrfs no_devmapper" \
  -ldflags "-s -w -X $cpkg/version.Version=$CONTAINERD_VERSION -X $cpkg/version.Package=github.com/containerd/containerd/v2" \
  $cpkg/cmd/containerd $cpkg/cmd/ctr $cpkg/cmd/containerd-shim-runc-v2

npkg=github.com/containernetworking/plugins
build cni "$CNI_PLUGINS_VERSION" "bridge host-local loopback portmap" \
  -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" \
  $npkg/plugins/main/bridge $npkg/plugins/ipam/host-local $npkg/plugins/main/loopback $npkg/plugins/meta/portmap

# The resource metrics API for the HorizontalPodAutoscaler (tools/cluster.sh runs it).
mpkg=k8s.io/client-go/pkg/version  # where metrics-server's Makefile sets its version
build metrics-server "$METRICS_SERVER_VERSION" "metrics-server" \
  -ldflags "-s -w -X $mpkg.gitVersion=$METRICS_SERVER_VERSION -X $mpkg.gitTreeState=clean -X $mpkg.buildDate=$builddate" \
  sigs.k8s.io/metrics-server/cmd/metrics-server

# The pause image's one binary, from its C source in the pinned k8s.io/kubernetes module
# (tools/cluster.sh packages it FROM scratch as containerd's sandbox image).
pause="$cache/pause-$KUBERNETES_VERSION"
if [ ! -x "$pause/pause" ]; then
  need_go
  command -v gcc >/dev/null 2>&1 || { echo "error: gcc is needed once to build the pause binary (apt-get install gcc libc6-dev)" >&2; exit 3; }
  kdir=$(cd "$here/k8s" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$pause.tmp.$$"
  gcc -Os -static -Wall -Werror -DVERSION=$KUBERNETES_VERSION -o "$pause.tmp.$$/pause" "$kdir/build/pause/linux/pause.c"
  strip "$pause.tmp.$$/pause" 2>/dev/null || true
  rm -rf "$pause"; mv "$pause.tmp.$$" "$pause"
  echo "tools: built pause from k8s.io/kubernetes@$KUBERNETES_VERSION build/pause/linux/pause.c"
fi
# Argo CD and kustomize are built only when asked (`tools/build.sh argocd`, which `make argocd-up`
# runs): nothing in `make test` needs them yet, and a machine without the vendored gitops-engine
# source can still build everything else.
if [ "${1:-}" = argocd ]; then
# Argo CD (tools/argocd.sh): one multi-call binary that picks its role from argv[0], linked as
# argocd, argocd-application-controller and argocd-repo-server; beside it the two scripts the
# repo-server runs from PATH on every manifest generation (hack/ in the module) and the CRDs.
#
# Its wrapper module replaces the nested gitops-engine module with a directory outside the repo
# (tools/gen.sh). The committed go.mod names the default place relative to tools/argocd/, which holds
# only when shared/ is beside the checkout. So the build never uses it as it is: it copies go.mod and
# go.sum into a throwaway directory and rewrites that one replace to the absolute path of
# $MODELREG_VENDOR_DIR/argo-cd-gitops-engine (go.sum holds no hash for a directory replacement, so
# the copy verifies exactly as the committed module does). The repo is never written to, and
# -trimpath keeps the path out of the binary and the build cache keys.
vendor=${MODELREG_VENDOR_DIR:-$repo/../shared/vendor}
acd="$cache/argocd-$ARGOCD_VERSION"
amod=""
trap '[ -z "$amod" ] || rm -rf "$amod"' EXIT
argocd_complete() {
  local f
  for f in argocd argocd-application-controller argocd-repo-server git-verify-wrapper.sh gpg-wrapper.sh; do
    [ -x "$acd/$f" ] || return 1
  done
  [ -f "$acd/crds/application-crd.yaml" ] && [ -f "$acd/crds/appproject-crd.yaml" ]
}
argocd_module() { # sets amod: the throwaway copy of tools/argocd
  local engine="$vendor/argo-cd-gitops-engine"
  if [ ! -f "$engine/go.mod" ]; then
    echo "error: building Argo CD $ARGOCD_VERSION needs the vendored gitops-engine source, and $engine/go.mod" >&2
    echo "       does not exist. It is shared/vendor/argo-cd-gitops-engine beside the checkout; set MODELREG_VENDOR_DIR" >&2
    echo "       to the directory that holds argo-cd-gitops-engine/ (see shared/vendor/README.md)." >&2
    exit 3
  fi
  engine=$(cd "$engine" && pwd)
  amod=$(mktemp -d "${TMPDIR:-/tmp}/modelreg-argocd-module.XXXXXX")
  cp "$here/argocd/go.mod" "$here/argocd/go.sum" "$amod/"
  (cd "$amod" && go mod edit -replace="github.com/argoproj/argo-cd/gitops-engine=$engine")
}
apkg=github.com/argoproj/argo-cd/v3/common
aflags="-s -w"
if ! argocd_complete; then
  need_go
  argocd_module
  # The kubectl version Argo CD reports is its client-go's, as its own Makefile derives it.
  kubectl_v=$(cd "$amod" && go list -m -f '{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' k8s.io/client-go)
  # Without -X version the binary calls itself v99.99.99.
  aflags="-s -w -X $apkg.version=${ARGOCD_VERSION#v} -X $apkg.buildDate=$builddate -X $apkg.kubectlVersion=$kubectl_v"
fi
MODDIR=$amod OUT=argocd build argocd "$ARGOCD_VERSION" "argocd" -ldflags "$aflags" github.com/argoproj/argo-cd/v3/cmd
if ! argocd_complete; then
  adir=$(cd "$amod" && go mod download -json "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  ln -sfn argocd "$acd/argocd-application-controller"
  ln -sfn argocd "$acd/argocd-repo-server"
  install -m 755 "$adir/hack/git-verify-wrapper.sh" "$adir/hack/gpg-wrapper.sh" "$acd/"
  mkdir -p "$acd/crds"
  install -m 644 "$adir"/manifests/crds/*-crd.yaml "$acd/crds/"
  echo "tools: argocd $ARGOCD_VERSION: linked its roles, copied hack/git-verify-wrapper.sh, hack/gpg-wrapper.sh and manifests/crds/ from the module"
fi
for b in argocd-application-controller argocd-repo-server; do ln -sfn "$acd/$b" "$bindir/$b"; done

# kustomize, at the version this Argo CD bundles (the repo-server runs it from PATH).
build kustomize "$KUSTOMIZE_VERSION" "kustomize" \
  -ldflags "-s -w -X sigs.k8s.io/kustomize/api/provenance.version=kustomize/$KUSTOMIZE_VERSION -X sigs.k8s.io/kustomize/api/provenance.buildDate=$builddate" \
  sigs.k8s.io/kustomize/kustomize/v5
fi
echo "tools: linked into $bindir"
