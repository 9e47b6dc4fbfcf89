#!/usr/bin/env bash
# Builds the one image (the operator and the builtin model server, see Dockerfile) where no
# container registry is reachable: a Debian bookworm base made by mmdebstrap from the host's own apt
# sources, the Python wheels downloaded on the host, then `buildah bud --pull=never --network none`.
# Exports an OCI archive and a CycloneDX SBOM of the image's Python packages to .dev/images/, and
# imports the archive into the real node's containerd when that node runs. Called by `make image`;
# tools/cluster.sh calls `import` once the node is up.
#
#   tools/image.sh [all]   build what is missing and export; import when the node runs
#   tools/image.sh build   build what is missing and export, no import
#   tools/image.sh import  import the last exported archive into the node's containerd
#   tools/image.sh check   run the image as UID 65532 on a read-only root (runc): imports, --help
#
# Everything is cached by content under MODELREG_IMAGES_CACHE: the base by the apt sources, the
# package list and the Dockerfile's FROM name; the wheels by the requirements in pyproject.toml;
# the image by what goes into it (Dockerfile, .dockerignore, pyproject.toml, README.md, operator/,
# the wheel set, the base's key). A warm run with nothing changed runs no buildah at all.
#
#   MODELREG_IMAGES_CACHE      cache root (default: ${XDG_CACHE_HOME:-~/.cache}/modelreg/images)
#   MODELREG_IMAGE             image name (default: ghcr.io/modelreg/modelreg:<pyproject version>)
#   MODELREG_APT_SOURCES       apt sources for the base (default: /etc/apt/sources.list.d/debian.sources)
#   MODELREG_BUILDAH_DRIVER    buildah storage driver (default: overlay; vfs works too, slower)
#   MODELREG_NODE_SOCK         the node's containerd socket (default: <repo>/.dev/node/run/containerd.sock)
#   MODELREG_CTR               ctr binary (default: <repo>/.dev/bin/ctr)
#   MODELREG_NODE_SNAPSHOTTER  snapshotter to unpack into (default: the node's own default)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cache=${MODELREG_IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelreg/images}
out="$repo/.dev/images"
logs="$cache/logs"
sources=${MODELREG_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}
driver=${MODELREG_BUILDAH_DRIVER:-overlay}
sock=${MODELREG_NODE_SOCK:-$repo/.dev/node/run/containerd.sock}
ctr=${MODELREG_CTR:-$repo/.dev/bin/ctr}
# The host's own tools, pinned: pip for downloading (an older pip backtracks through hundreds of
# botocore releases on this requirement set) and the SBOM tool.
host_tools=(pip==26.3 cyclonedx-bom==7.5.0)
keep=2 # cache entries kept per kind (the current one and the one before)

# The base: Debian's own Python 3.11 on glibc 2.36, without docs, man pages, locales or iconv
# modules. merged-usr installs usr-is-merged rather than usrmerge and the perl it drags in.
suite=bookworm
packages=python3,python3-venv,ca-certificates,libgomp1
mm_opts=(--variant=minbase "--include=$packages"
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --skip=output/dev
  "--dpkgopt=path-exclude=/usr/share/doc/*" "--dpkgopt=path-include=/usr/share/doc/*/copyright"
  "--dpkgopt=path-exclude=/usr/share/man/*" "--dpkgopt=path-exclude=/usr/share/info/*"
  "--dpkgopt=path-exclude=/usr/share/locale/*" "--dpkgopt=path-exclude=/usr/lib/*/gconv/*")
base_env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
# The wheels: for that interpreter and libc.
py_target=3.11
glibc_minor=36

say() { printf 'image: %s\n' "$*"; }
die() { printf 'image: error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
bah() { buildah --root "$cache/buildah/root" --runroot "$cache/buildah/run" --storage-driver "$driver" "$@"; }

fail_log() { # step log: show the end of a failed step's log and keep the log
  printf 'image: error: %s failed; the last lines of %s:\n' "$1" "$2" >&2
  tail -n 40 "$2" | sed 's/^/  | /' >&2
  die "$1 failed (full log: $2)"
}

need() { # command:debian-package ...
  local x cmds=() pkgs=()
  for x in "$@"; do
    command -v "${x%%:*}" >/dev/null 2>&1 || { cmds+=("${x%%:*}"); pkgs+=("${x#*:}"); }
  done
  [ ${#cmds[@]} = 0 ] ||
    die "${cmds[*]} not found: install with 'apt-get update && apt-get install -y ${pkgs[*]}'"
}

need_root() {
  [ "$(id -u)" = 0 ] ||
    die "building the image needs root (mmdebstrap's chroot, buildah's storage under $cache): run 'sudo make image'"
}

need_python() {
  command -v python3 >/dev/null 2>&1 || die "python3 (>= 3.11, with venv) is needed on the host to download the wheels"
  python3 -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
    die "python3 on PATH is $(python3 -V 2>&1): the host needs Python >= 3.11 with the venv module (apt-get install -y python3-venv)"
}

hash16() { sha256sum | cut -c1-16; }

keep_newest() { # dir: drop all but the $keep most recently used entries
  [ -d "$1" ] || return 0
  find "$1" -mindepth 1 -maxdepth 1 -type d ! -name '*.tmp' -printf '%T@ %p\n' | sort -rn |
    tail -n +$((keep + 1)) | cut -d' ' -f2- | while read -r d; do rm -rf "$d"; done
}

lock() { # one build, import or check at a time: they share the buildah storage and the outputs
  mkdir -p "$cache" "$logs"
  exec 9>"$cache/lock"
  flock -n 9 || { say "waiting for another tools/image.sh ($cache/lock) ..."; flock 9; }
}

# --- what the image is made of --------------------------------------------------------------------

read_project() {
  version=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml")
  image=${MODELREG_IMAGE:-ghcr.io/modelreg/modelreg:$version}
  from=$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$repo/Dockerfile" | head -n 1)
  [ -n "$from" ] || die "Dockerfile has no 'ARG PYTHON_IMAGE=<name>' line: the base's name comes from it"
  from_ref=$(full_ref "$from")
}

full_ref() { # the fully qualified name a FROM line resolves a short name to
  local r=$1 first=${1%%/*}
  if [[ $r != */* ]]; then
    r="docker.io/library/$r"
  elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then
    r="docker.io/$r"
  fi
  [[ ${r##*/} == *:* || $r == *@* ]] || r="$r:latest"
  printf '%s\n' "$r"
}

base_key() {
  [ -f "$sources" ] || die "apt sources $sources not found (set MODELREG_APT_SOURCES to the host's deb822 .sources file)"
  { printf '%s\n' base-1 "$suite" "${mm_opts[@]}" "${base_env[@]}" "$from_ref"; cat "$sources"; } | hash16
}

requirements() { # what the image installs, the build backend it builds modelreg with, and pip
  python3 - "$repo/pyproject.toml" <<'EOF'
import sys, tomllib
d = tomllib.load(open(sys.argv[1], "rb"))
p = d["project"]
reqs = p["dependencies"] + p["optional-dependencies"]["runtime"] + d["build-system"]["requires"] + ["pip"]
print("\n".join(reqs))
EOF
}

pip_target() { # wheels for the image's interpreter, whatever the host runs
  local arch i
  arch=$(uname -m)
  target=(--only-binary=:all: --implementation cp --python-version "$py_target" --abi "cp${py_target/./}")
  [ "$arch" != x86_64 ] || target+=(--platform manylinux1_x86_64 --platform manylinux2010_x86_64)
  target+=(--platform "manylinux2014_$arch")
  for i in $(seq 5 "$glibc_minor"); do target+=(--platform "manylinux_2_${i}_$arch"); done
}

wheels_key() { { echo wheels-1; requirements; printf '%s\n' "${target[@]}"; } | hash16; }

sources_list() { # NUL-separated: the files the context gets from the work tree (as hatchling sees operator/)
  (cd "$repo" && printf '%s\0' Dockerfile .dockerignore pyproject.toml README.md &&
    git ls-files -z -co --exclude-standard -- operator | while IFS= read -r -d '' f; do
      [ -f "$f" ] && printf '%s\0' "$f"
    done)
}

image_key() { # base_key wheel_dir
  {
    printf '%s\n' image-1 "$image" "$1"
    cat "$2/SHA256SUMS"
    sources_list | (cd "$repo" && xargs -0 sha256sum)
  } | hash16
}

# --- the steps ------------------------------------------------------------------------------------

tools_venv() { # a venv on the host for pip download and the SBOM tool: never in the image
  venv="$cache/venv-$({ printf '%s\n' "${host_tools[@]}"; python3 -VV; } | hash16)"
  [ -f "$venv/.done" ] && return 0
  local t0; t0=$(now)
  say "tools venv: ${host_tools[*]} ..."
  rm -rf "$venv"
  { python3 -m venv "$venv" && "$venv/bin/pip" install --disable-pip-version-check "${host_tools[@]}"; } \
    >"$logs/venv.log" 2>&1 || { rm -rf "$venv"; fail_log "installing ${host_tools[*]}" "$logs/venv.log"; }
  touch "$venv/.done"
  say "tools venv in $(since "$t0")"
  timings+=("tools venv $(since "$t0")")
}

ensure_wheels() { # -> wheels (a directory of wheels and their SHA256SUMS)
  local key t0
  key=$(wheels_key)
  wheels="$cache/wheels/$key"
  if [ -f "$wheels/SHA256SUMS" ]; then
    touch "$wheels"
    say "wheels cached in $wheels ($(wc -l <"$wheels/SHA256SUMS") files)"
    return 0
  fi
  tools_venv
  t0=$(now)
  say "wheels: downloading for CPython $py_target, glibc <= 2.$glibc_minor, $(uname -m) ..."
  rm -rf "$wheels.tmp"; mkdir -p "$wheels.tmp"
  requirements >"$wheels.tmp/requirements.txt"
  "$venv/bin/pip" download --disable-pip-version-check "${target[@]}" -d "$wheels.tmp" \
    -r "$wheels.tmp/requirements.txt" >"$logs/wheels.log" 2>&1 || fail_log "downloading the wheels" "$logs/wheels.log"
  (cd "$wheels.tmp" && sha256sum -- *.whl >SHA256SUMS)
  mv "$wheels.tmp" "$wheels"
  keep_newest "$cache/wheels"
  say "wheels: $(wc -l <"$wheels/SHA256SUMS") files, $(du -sh "$wheels" | cut -f1), in $(since "$t0")"
  timings+=("wheels $(since "$t0")")
}

base_id() { bah images --no-trunc --quiet "$from_ref" 2>/dev/null | head -n 1 || true; }

ensure_base() { # $1 base key: the base image in buildah's storage under the Dockerfile's FROM name
  local key=$1 dir="$cache/base/$1" t0 c
  if [ -f "$dir/id" ] && [ "$(base_id)" = "$(cat "$dir/id")" ]; then
    touch "$dir"
    say "base $from_ref cached ($key)"
    return 0
  fi
  t0=$(now)
  if [ ! -f "$dir/rootfs.tar" ]; then
    say "base: mmdebstrap $suite from $sources (a few minutes) ..."
    rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
    mmdebstrap --format=tar "${mm_opts[@]}" "$suite" "$dir.tmp/rootfs.tar" "$sources" >"$logs/base.log" 2>&1 ||
      fail_log "mmdebstrap" "$logs/base.log"
    rm -rf "$dir"; mv "$dir.tmp" "$dir"
    keep_newest "$cache/base"
  fi
  say "base: importing into buildah as $from_ref ..."
  {
    c=$(bah from scratch) &&
      bah add "$c" "$dir/rootfs.tar" / &&
      bah config "${base_env[@]/#/--env=}" --cmd '["python3"]' \
        --created-by "mmdebstrap ${mm_opts[*]} $suite (tools/image.sh)" "$c" &&
      bah commit --rm --quiet "$c" "$from_ref"
  } >"$logs/base-import.log" 2>&1 || fail_log "importing the base" "$logs/base-import.log"
  base_id >"$dir/id"
  say "base: $from_ref $(cut -c1-19 "$dir/id") in $(since "$t0")"
  timings+=("base $(since "$t0")")
}

build_image() { # base_key: -> dir (the cache entry with the archive, the SBOM and image.env)
  local bkey=$1 key tmp ctx t0 id digest c mnt size files
  key=$(image_key "$bkey" "$wheels")
  dir="$cache/modelreg/$key"
  if [ -f "$dir/image.env" ]; then
    touch "$dir"
    say "image $image cached ($key)"
    return 0
  fi
  need buildah:buildah mmdebstrap:mmdebstrap runc:runc
  ensure_base "$bkey"

  tmp="$dir.tmp" ctx="$dir.tmp/context"
  rm -rf "$tmp"; mkdir -p "$ctx/wheels"
  sources_list | (cd "$repo" && xargs -0 cp --parents -t "$ctx")
  cp -l "$wheels"/*.whl "$ctx/wheels/" 2>/dev/null || cp "$wheels"/*.whl "$ctx/wheels/"
  t0=$(now)
  say "build: buildah bud --pull=never --network none ($(wc -l <"$wheels/SHA256SUMS") wheels, a few minutes) ..."
  # The base's name is borrowed, so the image says what it was really built on.
  bah bud --pull=never --network none --layers=false --runtime "$(command -v runc)" \
    --annotation "org.opencontainers.image.base.name=debian:$suite (mmdebstrap ${mm_opts[0]#--variant=} + python3, tools/image.sh)" \
    --tag "$image" "$ctx" >"$logs/build.log" 2>&1 || fail_log "buildah bud" "$logs/build.log"
  id=$(bah images --no-trunc --quiet "$image" | head -n 1)
  bah rmi --prune >/dev/null 2>&1 || true # the image this one replaced
  say "build: $id in $(since "$t0")"
  timings+=("build $(since "$t0")")

  t0=$(now)
  bah push --quiet --digestfile "$tmp/digest" "$image" "oci-archive:$tmp/modelreg.oci.tar:$image" \
    >"$logs/export.log" 2>&1 || fail_log "exporting the OCI archive" "$logs/export.log"
  digest=$(cat "$tmp/digest")
  say "export: $(du -h "$tmp/modelreg.oci.tar" | cut -f1) OCI archive in $(since "$t0")"
  timings+=("export $(since "$t0")")

  t0=$(now)
  tools_venv
  c=$(bah from --quiet --pull=never "$id")
  mnt=$(bah mount "$c")
  sbom "$mnt" "$ctx/pyproject.toml" "$tmp/modelreg.cdx.json" || { bah rm "$c" >/dev/null; fail_log "the SBOM" "$logs/sbom.log"; }
  files=$(du -s --apparent-size --block-size=1 "$mnt" | cut -f1)
  bah umount "$c" >/dev/null; bah rm "$c" >/dev/null
  size=$(bah images --format '{{.Size}}' "$id" | head -n 1)
  say "sbom: $(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["components"]))' "$tmp/modelreg.cdx.json") components in $(since "$t0")"
  timings+=("sbom $(since "$t0")")

  rm -rf "$ctx"
  cat >"$tmp/image.env" <<EOF
MODELREG_IMAGE=$image
MODELREG_IMAGE_ID=$id
MODELREG_IMAGE_DIGEST=$digest
MODELREG_IMAGE_SIZE='$size'
MODELREG_IMAGE_FILE_BYTES=$files
MODELREG_IMAGE_KEY=$key
EOF
  rm -rf "$dir"; mv "$tmp" "$dir"
  keep_newest "$cache/modelreg"
}

sbom() { # mounted-rootfs pyproject dest: CycloneDX of the image's venv, read by a host interpreter
  # The image's bin/python names the image's interpreter path; a shim venv with the host's
  # interpreter and the image's site-packages gives the tool the image's distributions and nothing else.
  local mnt=$1 shim="$cache/sbom-shim" site py pyver
  site=$(find "$mnt/opt/modelreg/lib" -mindepth 2 -maxdepth 2 -type d -name site-packages | head -n 1)
  [ -n "$site" ] || { echo "no site-packages under $mnt/opt/modelreg/lib" >"$logs/sbom.log"; return 1; }
  py=$(readlink -f "$venv/bin/python")
  pyver=$("$py" -c 'import sys; print("python%d.%d" % sys.version_info[:2])')
  rm -rf "$shim"; mkdir -p "$shim/bin" "$shim/lib/$pyver"
  ln -s "$py" "$shim/bin/python"
  ln -s "$site" "$shim/lib/$pyver/site-packages"
  printf 'home = %s\ninclude-system-site-packages = false\n' "$(dirname "$py")" >"$shim/pyvenv.cfg"
  "$venv/bin/cyclonedx-py" environment --pyproject "$2" --mc-type application --output-reproducible \
    --output-format JSON --output-file "$3" "$shim/bin/python" >"$logs/sbom.log" 2>&1
  rm -rf "$shim"
}

publish() { # link the cache entry's outputs into .dev/images/
  mkdir -p "$out"
  local f
  for f in modelreg.oci.tar modelreg.cdx.json image.env; do ln -sfn "$dir/$f" "$out/${f/#image/modelreg.image}"; done
}

report() {
  # shellcheck source=/dev/null
  . "$dir/image.env"
  say "$MODELREG_IMAGE  id $MODELREG_IMAGE_ID"
  say "  digest $MODELREG_IMAGE_DIGEST (the archive's manifest, as containerd lists it)"
  say "  size $MODELREG_IMAGE_SIZE uncompressed ($((MODELREG_IMAGE_FILE_BYTES / 1048576)) MiB of files)"
  say "  $out/modelreg.oci.tar, $out/modelreg.cdx.json -> $dir"
}

build() {
  local t0; t0=$(now)
  timings=()
  need_python
  need_root
  need git:git
  lock
  rm -rf "$cache"/base/*.tmp "$cache"/wheels/*.tmp "$cache"/modelreg/*.tmp # left by a failed run
  read_project
  pip_target
  local bkey; bkey=$(base_key)
  ensure_wheels
  build_image "$bkey"
  publish
  report
  if [ ${#timings[@]} = 0 ]; then
    say "nothing to build: done in $(since "$t0")"
  else
    local all; all=$(printf '%s, ' "${timings[@]}")
    say "done in $(since "$t0") (${all%, })"
  fi
}

import_image() {
  local env="$out/modelreg.image.env" archive="$out/modelreg.oci.tar" have log="$logs/import.log"
  if [ ! -S "$sock" ]; then
    say "no real node running ($sock absent): built and exported, not imported"
    return 0
  fi
  if [ ! -f "$env" ] || [ ! -f "$archive" ]; then die "no exported image in $out: run 'tools/image.sh build' first"; fi
  [ -x "$ctr" ] || die "$ctr is missing: run 'make tools' (it builds containerd's ctr with the node)"
  lock
  # shellcheck source=/dev/null
  . "$env"
  local c=("$ctr" --address "$sock" --namespace k8s.io)
  listed() { # -> the digest containerd has under the image's name, or nothing
    "${c[@]}" images ls 2>"$log" | awk -v n="$MODELREG_IMAGE" '$1 == n { print $3 }'
  }
  have=$(listed) || die "cannot list the images of containerd at $sock: $(tail -n 3 "$log")"
  if [ "$have" = "$MODELREG_IMAGE_DIGEST" ]; then
    say "$MODELREG_IMAGE $MODELREG_IMAGE_DIGEST already in the node's containerd"
    return 0
  fi
  local t0; t0=$(now)
  # An OCI archive names its image in org.opencontainers.image.ref.name; ctr keeps only the names
  # under --base-name (without one it would invent "import-<date>").
  "${c[@]}" images import --base-name "${MODELREG_IMAGE%:*}" --all-platforms \
    ${MODELREG_NODE_SNAPSHOTTER:+--snapshotter "$MODELREG_NODE_SNAPSHOTTER"} "$archive" >"$log" 2>&1 ||
    fail_log "ctr images import" "$log"
  have=$(listed) || true
  [ "$have" = "$MODELREG_IMAGE_DIGEST" ] ||
    die "containerd at $sock does not list $MODELREG_IMAGE at $MODELREG_IMAGE_DIGEST after the import (it lists '${have:-nothing}'); see $log"
  say "imported $MODELREG_IMAGE $MODELREG_IMAGE_DIGEST into the node's containerd (k8s.io) in $(since "$t0")"
}

check_image() { # the image as the pods run it: UID 65532, read-only root, /tmp and /models emptyDirs
  local env="$out/modelreg.image.env" bad
  [ -f "$env" ] || die "no exported image in $out: run 'tools/image.sh build' first"
  need_root
  need buildah:buildah runc:runc
  lock
  # shellcheck source=/dev/null
  . "$env"
  say "check $MODELREG_IMAGE ($MODELREG_IMAGE_ID)"
  # Globals: the EXIT trap still needs them once this function has returned.
  check_bundle="$cache/check.$$"
  check_n=0
  check_c=$(bah from --quiet --pull=never "$MODELREG_IMAGE_ID" 2>/dev/null) ||
    check_c=$(bah from --quiet "oci-archive:$out/modelreg.oci.tar")
  trap 'rm -rf "$check_bundle"; bah umount "$check_c" >/dev/null 2>&1; bah rm "$check_c" >/dev/null 2>&1 || true' EXIT
  check_mnt=$(bah mount "$check_c")
  [ "$(stat -c %u:%g "$check_mnt/opt/modelreg")" = 0:0 ] || die "/opt/modelreg is not owned by root"
  bad=$(find "$check_mnt/opt/modelreg" \( ! -uid 0 -o \( ! -type l -perm /022 \) \) -print -quit)
  [ -z "$bad" ] || die "${bad#"$check_mnt"} is not owned by root, or is writable by group or others"
  [ "$(stat -c %u:%g "$check_mnt/models")" = 65532:65532 ] || die "/models is not owned by 65532:65532"
  say "  ok: /opt/modelreg and all under it are root's, writable by no one else; /models is 65532:65532"
  check_run python -c '
import os, tempfile
import modelreg.runtime.server, modelreg.controller, onnxruntime, xgboost, sklearn, skops.io, lightgbm, kopf
assert (os.getuid(), os.getgid()) == (65532, 65532), (os.getuid(), os.getgid())
for d in ("/tmp", "/models"):
    tempfile.NamedTemporaryFile(dir=d).close()
try:
    open("/opt/modelreg/probe", "w")
except OSError as e:
    print("image:   ok: /opt/modelreg is not writable (%s)" % e.strerror)
else:
    raise SystemExit("/opt/modelreg is writable")
print("image:   ok: imports as 65532:65532 on a read-only root; /tmp and /models are writable")'
  check_run python -m modelreg.runtime --help | sed -n '1s/^/image:   ok: /p'
  check_run python -m modelreg.controller --help | sed -n '1s/^/image:   ok: /p'
}

check_run() { # args...: one process in a fresh runc container on the read-only image root
  check_n=$((check_n + 1))
  rm -rf "$check_bundle"; mkdir -p "$check_bundle"
  bah inspect --type image "$MODELREG_IMAGE_ID" >"$check_bundle/image.json"
  runc spec --bundle "$check_bundle"
  # runc's default spec, made what a pod gets with readOnlyRootFilesystem, runAsUser/runAsGroup
  # 65532, capabilities drop ALL and emptyDirs on /tmp and /models.
  python3 - "$check_bundle" "$check_mnt" "$@" <<'EOF'
import json, os, sys
bundle, root, args = sys.argv[1], sys.argv[2], sys.argv[3:]
image = json.load(open(os.path.join(bundle, "image.json")))["OCIv1"]["config"]
path = os.path.join(bundle, "config.json")
spec = json.load(open(path))
spec["root"] = {"path": root, "readonly": True}
spec["hostname"] = "modelreg-check"
p = spec["process"]
p.update(terminal=False, args=args, env=image.get("Env", []), cwd=image.get("WorkingDir") or "/",
         user={"uid": 65532, "gid": 65532}, noNewPrivileges=True)
p["capabilities"] = {k: [] for k in ("bounding", "effective", "permitted", "ambient")}
for dest, opts in (("/tmp", "mode=1777"), ("/models", "mode=0755,uid=65532,gid=65532")):
    spec["mounts"].append({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", opts]})
json.dump(spec, open(path, "w"), indent=1)
EOF
  runc --root "$cache/runc" run --bundle "$check_bundle" "modelreg-check-$$-$check_n" </dev/null
}

case ${1:-all} in
  all) build; import_image ;;
  build) build ;;
  import) import_image ;;
  check) check_image ;;
  *) echo "usage: tools/image.sh [all|build|import|check]" >&2; exit 2 ;;
esac
