# modelreg — the two set-up commands are `make demo` and `make test`. Everything bootstraps itself:
# the virtualenv (.venv/), the pinned tools (built once into a cache outside the tree), the cluster.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/.dev/bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export KUBECONFIG ?= $(CURDIR)/.dev/kubeconfig
CLUSTER ?= local

.PHONY: help venv tools image image-build image-import image-check cluster-up cluster-down argocd-up argocd-down lint fmt generate check unit e2e test demo bench screenshots clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.stamp: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[runtime,cli,mlflow,conformance,test,lint]'
	@touch $@

venv: $(VENV)/.stamp ## create or refresh the project's virtualenv in .venv/

tools: ## build the pinned control-plane tools (only what is missing) and link them into .dev/bin/
	@tools/build.sh

image: ## build the one image with no registry (cached by content), export an OCI archive + SBOM to .dev/images/, import it into the real node's containerd
	@tools/node.sh deps
	@tools/image.sh all

image-build: ## build and export the image only (no import)
	@tools/image.sh build

image-import: ## import the exported image into the real node's containerd
	@tools/image.sh import

image-check: ## run the built image as UID 65532 on a read-only root (runc): imports, --help, ownership
	@tools/image.sh check

cluster-up: tools venv ## start the local control plane, S3 server and real node (idempotent); CLUSTER=kind uses kind
	@if [ "$${MODELREG_REAL_NODE:-auto}" != 0 ]; then tools/node.sh deps; fi
	@CLUSTER=$(CLUSTER) tools/cluster.sh up

cluster-down: ## stop the local control plane and S3 server, leaving no process behind
	@tools/argocd.sh down || echo "cluster: warning: 'tools/argocd.sh down' failed (above); the cluster goes down anyway" >&2
	@CLUSTER=$(CLUSTER) tools/cluster.sh down

argocd-up: ## build Argo CD + kustomize if missing (cached), then start them (redis, repo-server, application-controller) against the running cluster (idempotent)
	@tools/build.sh argocd
	@tools/argocd.sh up

argocd-down: ## stop Argo CD and delete its namespace, CRDs and state, leaving no process behind
	@tools/argocd.sh down

lint: venv ## ruff, mypy strict, import-linter
	$(VENV)/bin/ruff check operator tests bench demo
	$(VENV)/bin/ruff format --check operator tests bench demo
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

fmt: venv ## format the code
	$(VENV)/bin/ruff format operator tests bench demo
	$(VENV)/bin/ruff check --fix operator tests bench demo

generate: venv tools ## regenerate the CRDs, the chart's copy of them, the install manifest and the runtime's gRPC messages
	$(PY) -m modelreg.api.crd crds
	charts/render.sh
	PYTHON=$(PY) tools/gen_proto.sh

check: generate ## fail if generated files drift from the code
	@git diff --exit-code -- crds manifests charts/modelreg/files operator/modelreg/runtime/proto || { echo "error: generated files drift from the code: run 'make generate' and commit" >&2; exit 1; }

unit: venv tools ## unit tests (no cluster; the chart tests use the pinned helm)
	$(PY) -m pytest tests/unit -q

e2e: cluster-up ## e2e tests against the local control plane and S3 server
	@# Built (or found cached) before the tests, so no test's timeout pays for a cold build: the
	@# gitops tests' Argo CD, and the image the real tier and gitops import into the node.
	@tools/build.sh argocd
	@if [ -f .dev/node-mode ]; then tools/image.sh; fi
	$(PY) -m pytest tests/e2e -q

test: lint check unit e2e ## everything: lint, drift check, unit, e2e

demo: venv tools ## from a fresh clone: cluster, CRDs, operator, a trained model registered, promoted and served
	CLUSTER=$(CLUSTER) $(PY) -m demo

bench: cluster-up ## benchmarks (writes bench/RESULTS.md), then the full chaos runs (20 promotions under SIGKILL)
	$(PY) -m bench
	MODELREG_CHAOS_FULL=1 $(PY) -m pytest tests/e2e/test_chaos.py -q

screenshots: venv ## re-render docs/images/ui-*.png: the web UI on fixed data, in Debian's headless chromium (installed when missing, as root)
	$(PY) -m tests.unit.ui.shots

clean: cluster-down ## remove .dev/ and .venv/
	rm -rf .dev $(VENV)
