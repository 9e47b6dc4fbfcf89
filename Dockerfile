# syntax=docker/dockerfile:1
#
# One image for the operator and the builtin model server:
#   operator:      command [python, -m, modelreg.controller]   (manifests/, charts/modelreg)
#   model server:  command [python, -m, modelreg.runtime]      (the Deployments the operator writes)
#
# Two stages. `build` makes a virtualenv at /opt/modelreg with modelreg[runtime] installed from
# wheels and byte-compiled; the final stage is the same slim Python base plus that virtualenv and
# libgomp (the OpenMP runtime LightGBM's wheel links against), nothing else: no compiler, no pip,
# no apt lists, no source tree. It runs as UID/GID 65532 (the pod securityContext uses the same),
# works with readOnlyRootFilesystem (writes go to the /models and /tmp emptyDirs), and listens on
# 8080 (model server) or 8081/9464 (operator health and metrics).
#
# Build: docker build -t ghcr.io/modelreg/modelreg:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Only what the wheel is built from: a change under tests/ or bench/ does not invalidate the layers.
# The base image has no compiler, so every compiled dependency must come as a wheel (all do, for
# linux/amd64 and linux/arm64); an sdist that needs one fails the build here, never at run time.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python -m venv /opt/modelreg \
 && /opt/modelreg/bin/pip install --upgrade pip \
 && /opt/modelreg/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/modelreg/bin/pip install "$(ls /wheels/modelreg-*.whl)[runtime]" \
 && /opt/modelreg/bin/python -m compileall -q -j 0 /opt/modelreg \
 && /opt/modelreg/bin/pip uninstall -y pip \
 && /opt/modelreg/bin/python -c "import modelreg.runtime.server, modelreg.adapters.objectstore, onnxruntime, xgboost, sklearn, skops.io"

FROM ${PYTHON_IMAGE} AS final
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 modelreg \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin modelreg \
 && mkdir -p /models \
 && chown 65532:65532 /models
COPY --from=build /opt/modelreg /opt/modelreg
ENV PATH=/opt/modelreg/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MODELREG_MODEL_DIR=/models
# lightgbm imports cleanly only when libgomp is present: check it here, not in a crashing pod.
RUN python -c "import lightgbm, modelreg.runtime.server"
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
CMD ["python", "-m", "modelreg.runtime"]
