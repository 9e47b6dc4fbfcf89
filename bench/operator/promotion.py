"""Promotion latency: from `kubectl apply` of `stage: Production` to the Service switched and the
version `Serving`, against the floor of `kubectl apply` of the same Deployment and Service.

One Model with N+1 verified versions; version k+1 is promoted after version k, so every promotion
is a real blue/green switch (new Deployment up, Service switched, old Deployment removed). Once the
new version serves, the previous one is archived (untimed), as `modelreg promote` does by default. The
floor applies the Deployment the operator would build for the same version (the same pod
template, built by `modelreg.lifecycle.builders`), renamed and relabelled so that the operator
ignores it, plus a Service, and waits until the Deployment is Available. Floor and promotion
alternate, so both see the same load. Both are timed the same way: the clock starts before the
`kubectl apply` process and stops at the first 50 ms poll that sees the end state.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from bench.common import (
    Env,
    bench_namespace,
    create_namespace,
    delete_namespace,
    log,
    percentile,
    verdict,
)
from bench.operator.support import LOGS, Kube, Operator, api_client, in_parallel
from modelreg.api.models import Model, ModelVersion
from modelreg.lifecycle import builders, naming, plan
from modelreg.settings import OperatorSettings

MODEL = "promo"
POLL = 0.05
STEP_TIMEOUT = 120.0


@dataclass
class PromotionResult:
    namespace: str
    promotions: list[float]
    floors: list[float]
    replicas: int
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)  # load average at the end

    def stats(self, xs: list[float]) -> dict[str, float]:
        return {p: percentile(xs, q) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))}


def _model(env: Env, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelreg.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": MODEL, "namespace": namespace},
        "spec": {
            "description": "promotion latency benchmark",
            "owner": "bench",
            "storage": {
                "uri": f"s3://{env.s3_bucket}/{namespace}/{MODEL}/",
                "endpoint": env.s3_endpoint,
                "region": env.region,
                "secretRef": {"name": "s3-credentials"},
            },
            "promotion": {"gates": [{"metric": "auc", "min": 0.5}]},
            "serving": {"replicas": 1, "progressDeadlineSeconds": 120},
        },
    }


def _version(env: Env, namespace: str, n: int, sha: str, stage: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelreg.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": f"{MODEL}-v{n}", "namespace": namespace},
        "spec": {
            "model": MODEL,
            "version": n,
            "stage": stage,
            "artifact": {
                "uri": f"s3://{env.s3_bucket}/{namespace}/{MODEL}/{n}/model.onnx",
                "sha256": sha,
                "format": "onnx",
            },
            "framework": "sklearn",
            "metrics": {"auc": 0.9},
        },
    }


def _wait(fn: Any, what: str, timeout: float = STEP_TIMEOUT) -> float:
    """Poll `fn` every 50 ms until true; returns the monotonic time it first was."""
    deadline = time.monotonic() + timeout
    while True:
        if fn():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL)


def _floor_objects(kube: Kube, namespace: str, n: int, i: int) -> list[dict[str, Any]]:
    """The operator's own Deployment and Service for version n, renamed `floor-<i>` and relabelled
    so that the operator neither indexes them nor selects their pods."""
    model = Model.model_validate(kube.get("models", namespace, MODEL))
    mv = ModelVersion.model_validate(kube.get("modelversions", namespace, f"{MODEL}-v{n}"))
    s = OperatorSettings()
    defaults = builders.ServingDefaults(
        builtin_image=s.serving_image, mlserver_image=s.mlserver_image
    )
    dep = builders.build_deployment(model, mv, defaults)
    svc = builders.build_service(model, n)
    name = f"floor-{i}"
    labels = {naming.MANAGED_BY: "modelreg-bench", naming.MODEL_LABEL: name}
    selector = {naming.MODEL_LABEL: name, naming.VERSION_LABEL: str(n)}
    dep["metadata"].update(name=name, labels=labels)
    dep["metadata"].pop("ownerReferences", None)
    dep["spec"]["selector"] = {"matchLabels": selector}
    dep["spec"]["template"]["metadata"]["labels"] = {**labels, **selector}
    svc["metadata"].update(name=name, labels=labels)
    svc["metadata"].pop("ownerReferences", None)
    svc["spec"]["selector"] = selector
    return [dep, svc]


def _floor(env: Env, kube: Kube, namespace: str, objs: list[dict[str, Any]]) -> float:
    name = objs[0]["metadata"]["name"]

    def available() -> bool:
        body = kube.api.sanitize_for_serialization(
            kube.apps.read_namespaced_deployment(name, namespace, _request_timeout=10)
        )
        return plan.deployment_state(body).available

    t0 = time.monotonic()
    env.kube("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(objs))
    t1 = _wait(available, f"Deployment {name} Available")
    env.kube(
        "-n", namespace, "delete", "deployment,service", name, "--wait=false", "--ignore-not-found"
    )
    return t1 - t0


def _promote(env: Env, kube: Kube, namespace: str, body: dict[str, Any], n: int) -> float:
    name = body["metadata"]["name"]
    want = copy.deepcopy(body)
    want["spec"]["stage"] = "Production"

    def switched() -> bool:
        try:
            svc = kube.core.read_namespaced_service(MODEL, namespace, _request_timeout=10)
        except ApiException as e:
            if e.status == 404:  # the first promotion creates the Service
                return False
            raise
        if (svc.spec.selector or {}).get(naming.VERSION_LABEL) != str(n):
            return False
        mv = kube.get("modelversions", namespace, name)
        st = mv.get("status") or {}
        return bool(
            st.get("phase") == "Serving"
            and st.get("observedGeneration") == mv["metadata"]["generation"]
        )

    t0 = time.monotonic()
    env.kube("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(want))
    t1 = _wait(switched, f"{name} Serving behind Service {MODEL}")
    return t1 - t0


def _archive(env: Env, kube: Kube, namespace: str, n: int) -> None:
    """What `modelreg promote` does once the new version serves: archive the previous one."""
    name = f"{MODEL}-v{n}"
    env.kube(
        "-n", namespace, "patch", "mv", name, "--type=merge", "-p", '{"spec":{"stage":"Archived"}}'
    )

    def archived() -> bool:
        return (kube.get("modelversions", namespace, name).get("status") or {}).get(
            "phase"
        ) == "Archived"

    _wait(archived, f"{name} Archived", timeout=60)


def _settle(kube: Kube, namespace: str) -> None:
    """Between rounds: the old Deployment removed and the floor objects gone."""

    def quiet() -> bool:
        deps = kube.apps.list_namespaced_deployment(namespace, _request_timeout=10).items
        return len(deps) <= 1

    _wait(quiet, "the previous round's Deployments to go", timeout=60)


def run(env: Env, *, promotions: int = 50) -> PromotionResult:
    kube = Kube(api_client(env))
    namespace = bench_namespace("promo")
    create_namespace(env, namespace)
    operator: Operator | None = None
    s3 = env.s3_client()
    try:
        kube.secret(
            namespace,
            "s3-credentials",
            {
                "AWS_ACCESS_KEY_ID": env.access_key_id,
                "AWS_SECRET_ACCESS_KEY": env.secret_access_key,
            },
        )
        env.kube("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(_model(env, namespace)))
        total = promotions + 1

        def upload(n: int) -> dict[str, Any]:
            import hashlib

            data = os.urandom(4096)
            key = f"{namespace}/{MODEL}/{n}/model.onnx"
            s3.put_object(Bucket=env.s3_bucket, Key=key, Body=data)
            return _version(env, namespace, n, hashlib.sha256(data).hexdigest(), "None")

        bodies = in_parallel(upload, range(1, total + 1), workers=8)
        env.kube("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(bodies))
        operator = Operator(env, [namespace], LOGS / f"{namespace}.log").start()
        log(f"promotion: {namespace}: operator started; verifying {total} versions")

        def all_ready() -> bool:
            items = kube.custom.list_namespaced_custom_object(
                "modelreg.dev", "v1alpha1", namespace, "modelversions", _request_timeout=30
            )["items"]
            return sum((b.get("status") or {}).get("phase") == "Ready" for b in items) == total

        _wait(all_ready, "every version verified and Ready", timeout=180)
        # Warm-up round (not counted): the first Deployment, Service and pod of each kind.
        _promote(env, kube, namespace, bodies[0], 1)
        _floor(env, kube, namespace, _floor_objects(kube, namespace, 1, 0))
        _settle(kube, namespace)
        promos: list[float] = []
        floors: list[float] = []
        for i, body in enumerate(bodies[1:], start=2):
            floor_objs = _floor_objects(kube, namespace, i, i)
            # Alternate the order so that neither side always runs right after the other.
            if i % 2:
                floors.append(_floor(env, kube, namespace, floor_objs))
                _settle(kube, namespace)
                promos.append(_promote(env, kube, namespace, body, i))
                _archive(env, kube, namespace, i - 1)
            else:
                promos.append(_promote(env, kube, namespace, body, i))
                _archive(env, kube, namespace, i - 1)
                _settle(kube, namespace)
                floors.append(_floor(env, kube, namespace, floor_objs))
            _settle(kube, namespace)
            if i % 10 == 1:
                log(
                    f"promotion: {i - 1}/{promotions}: last {promos[-1]:.2f}s, floor {floors[-1]:.2f}s"
                )
        return PromotionResult(namespace, promos, floors, replicas=1, load=os.getloadavg())
    finally:
        if operator is not None:
            operator.stop()
        delete_namespace(env, namespace)
        _delete_prefix(env, s3, f"{namespace}/")


def _delete_prefix(env: Env, s3: Any, prefix: str) -> int:
    """Delete every object under `prefix` in the bench bucket (bounded: at most 100 pages)."""
    deleted = 0
    for _ in range(100):
        page = s3.list_objects_v2(Bucket=env.s3_bucket, Prefix=prefix, MaxKeys=1000)
        keys = [o["Key"] for o in page.get("Contents", [])]
        if not keys:
            break
        in_parallel(lambda k: s3.delete_object(Bucket=env.s3_bucket, Key=k), keys, workers=16)
        deleted += len(keys)
    return deleted


def markdown(r: PromotionResult) -> str:
    p, f = r.stats(r.promotions), r.stats(r.floors)
    ratio = p["p50"] / f["p50"] if f["p50"] else float("nan")
    rows = "\n".join(
        f"| {k} | {p[k]:.2f} s | {f[k]:.2f} s | {p[k] / f[k]:.2f}x |" for k in ("p50", "p95", "p99")
    )
    return f"""### Promotion latency

{len(r.promotions)} promotions of one Model (blue/green, {r.replicas} replica, kwok pods; the previous
version archived after each, untimed, as `modelreg promote` does), each timed from `kubectl apply` of `stage: Production` to the Service selecting the new version AND the
version's status `Serving` (observedGeneration current). Floor: `kubectl apply` of the same
Deployment (the operator's own builder, same pod template) and a Service, until the Deployment is
Available. Rounds alternate floor and promotion; both are polled every 50 ms.

| | promotion | floor | ratio |
| --- | --- | --- | --- |
{rows}

- p50 ratio {ratio:.2f}x (target <= 1.5x): {verdict(ratio <= 1.5)}
- p99 {p["p99"]:.2f} s (target < 3 s): {verdict(p["p99"] < 3)}
- min/max promotion {min(r.promotions):.2f}/{max(r.promotions):.2f} s; floor {min(r.floors):.2f}/{max(r.floors):.2f} s
- load average at the end {r.load[0]:.1f} (1 min), {r.load[2]:.1f} (15 min) on {os.cpu_count()} cores
"""
