# syntax=docker/dockerfile:1
#
# One image for the operator and the builtin model server:
#   operator:      command [python, -m, modelreg.controller]   (manifests/, charts/modelreg)
#   model server:  command [python, -m, modelreg.runtime]      (the Deployments the operator writes)
#
# Two stages. `build` makes a virtualenv at /opt/modelreg: modelreg's wheel built from the sources
# in the context, installed with its [runtime] extra, byte-compiled. The final stage is the same
# Python base plus that virtualenv and libgomp (the OpenMP runtime of the LightGBM and xgboost
# wheels), nothing else: no compiler, no pip, no apt lists, no source tree. It runs as UID/GID
# 65532 (the pod securityContext uses the same), works with readOnlyRootFilesystem (writes go to
# the /models and /tmp emptyDirs), and listens on 8080 (model server) or 8081/9464 (operator
# health and metrics).
#
# Where the Python distributions come from: a wheels/ directory in the build context.
#   absent or empty   from PyPI, on any machine that reaches it (linux/amd64 or linux/arm64):
#                       docker build -t ghcr.io/modelreg/modelreg:0.1.0 .
#   holding wheels    from those wheels only (pip --no-index): the build needs no network at all.
#                     They must cover modelreg[runtime], hatchling (the build backend) and pip
#                     for CPython 3.11 on the image's platform. tools/image.sh (`make image`) downloads
#                     them on the host, assembles such a context and builds it with
#                       buildah bud --pull=never --network none -t ghcr.io/modelreg/modelreg:0.1.0 CONTEXT
#
# PYTHON_IMAGE is a Debian bookworm image whose python3 is 3.11 with the venv module: the official
# python:3.11-slim-bookworm (Python in /usr/local), or, where no registry is reachable, the
# mmdebstrap minbase with Debian's python3 that tools/image.sh makes and stores under this default
# name in its own image store.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_PROGRESS_BAR=off \
    PIP_NO_COMPILE=1 \
    PYTHONDONTWRITEBYTECODE=1
# Only what the wheel is built from: a change under tests/ or bench/ does not invalidate the layers.
# The base has no compiler, so every compiled dependency must come as a wheel (all do, for
# linux/amd64 and linux/arm64); an sdist that needs one fails the build here, never at run time.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# The context is bind-mounted rather than copied so that an absent wheels/ is no error.
# Left out, as nothing in the image runs it (~190 MB): the wheels' test suites, the Kubernetes
# client's asyncio twin (kubernetes.aio: the adapters use the sync client, kopf its own),
# onnxruntime's model-conversion tools, botocore's models of AWS services other than S3 and those
# of the credential providers (STS, SSO, sign-in), C headers and Cython sources. The imports at the
# end prove the rest whole.
# Byte-compiled once, with hashes that are never checked against the sources' mtimes: the root
# filesystem is read-only at run time, so a stale .pyc could not be rewritten anyway.
RUN --mount=type=bind,target=/ctx \
    if ls /ctx/wheels/*.whl >/dev/null 2>&1; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/ctx/wheels; fi \
 && python3 -m venv /opt/modelreg \
 && /opt/modelreg/bin/pip install --upgrade pip \
 && /opt/modelreg/bin/pip wheel --no-deps --wheel-dir /tmp/dist . \
 && /opt/modelreg/bin/pip install "$(ls /tmp/dist/modelreg-*.whl)[runtime]" \
 && /opt/modelreg/bin/pip uninstall -q -y pip setuptools \
 && cd "$(/opt/modelreg/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
 && find . -type d -name tests -prune -exec rm -rf {} + \
 && rm -rf joblib/test kubernetes/aio onnxruntime/tools onnxruntime/transformers onnxruntime/quantization \
      /opt/modelreg/bin/onnxruntime_test \
 && find botocore/data -mindepth 1 -maxdepth 1 -type d \
      ! -name s3 ! -name sts ! -name sso ! -name sso-oidc ! -name signin -exec rm -rf {} + \
 && find . -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.c' -o -name '*.cpp' \
      -o -name '*.pxd' -o -name '*.pyx' -o -name '*.pxi' \) -delete \
 && /opt/modelreg/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/modelreg \
 && /opt/modelreg/bin/python -c "import modelreg.runtime.server, modelreg.controller, modelreg.adapters.kube, \
      onnxruntime, xgboost, sklearn.ensemble, skops.io, kubernetes.client, boto3; \
      [boto3.client(s, region_name='us-east-1') for s in ('s3', 'sts', 'sso', 'sso-oidc')]"

FROM ${PYTHON_IMAGE} AS final
# libgomp is in tools/image.sh's base already; the official slim image needs apt (and so a network).
# The system Python's own pip and the wheels ensurepip would install it from go too: nothing in
# the image can install packages. The user is written directly: minbase may lack useradd.
RUN if ! ldconfig -p | grep -q 'libgomp\.so\.1 '; then \
      apt-get update \
      && apt-get install -y --no-install-recommends libgomp1 \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && if python3 -m pip --version >/dev/null 2>&1; then \
      python3 -m pip uninstall -q -y --root-user-action=ignore pip setuptools wheel; \
    fi \
 && rm -rf /usr/share/python-wheels \
 && echo 'modelreg:x:65532:' >>/etc/group \
 && echo 'modelreg:x:65532:65532:modelreg:/nonexistent:/usr/sbin/nologin' >>/etc/passwd \
 && mkdir -p /models \
 && chown 65532:65532 /models
COPY --from=build /opt/modelreg /opt/modelreg
ENV PATH=/opt/modelreg/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MODELREG_MODEL_DIR=/models
# lightgbm and xgboost import cleanly only when libgomp is present: check it here, not in a crashing pod.
RUN python -c "import lightgbm, xgboost, modelreg.runtime.server"
LABEL org.opencontainers.image.title="modelreg" \
      org.opencontainers.image.description="The modelreg operator (python -m modelreg.controller) and its builtin Open Inference Protocol v2 model server (python -m modelreg.runtime)" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
CMD ["python", "-m", "modelreg.runtime"]
