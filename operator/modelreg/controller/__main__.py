"""`python -m modelreg.controller`: run the operator against the current kubeconfig.

    python -m modelreg.controller [--namespace NS ...] [--metrics-port N] [--verbose]

All namespaces when no --namespace is given. Settings come from MODELREG_* variables
(`modelreg.settings.OperatorSettings`); flags override them. Kopf has no leader election: run one
replica (this process runs standalone, without peering).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import kopf
from pydantic import SecretStr, ValidationError

from modelreg.adapters import impersonation
from modelreg.adapters import kube as k8s
from modelreg.controller import metrics
from modelreg.controller.handlers import install
from modelreg.controller.reconciler import Reconciler
from modelreg.settings import OperatorSettings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m modelreg.controller", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="watch this namespace (repeatable); all namespaces when omitted",
    )
    p.add_argument("--metrics-port", type=int, default=None, help="Prometheus port (0 disables)")
    p.add_argument(
        "--liveness", default=None, help="liveness endpoint URL, e.g. http://0.0.0.0:8081/healthz"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides: dict[str, object] = {}
    if args.namespace:
        overrides["namespaces"] = args.namespace
    if args.metrics_port is not None:
        overrides["metrics_port"] = args.metrics_port
    if args.liveness is not None:
        overrides["liveness_endpoint"] = args.liveness
    try:
        settings = OperatorSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        print(f"error: invalid operator settings:\n{e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for noisy in ("kopf.objects", "urllib3", "botocore", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        acting = impersonation.from_kubeconfig(None, None)
    except impersonation.ImpersonationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if acting:
        # kopf's own connection cannot impersonate: the watches would run as the identity behind
        # the kubeconfig and the writes as another one. One identity, or none.
        print(
            f"error: the kubeconfig's user impersonates {acting.user!r} (as/as-groups): the "
            "operator acts only as its own identity; give it a kubeconfig without impersonation",
            file=sys.stderr,
        )
        return 2
    try:
        api = k8s.api_client(pool=settings.api_qps_burst)
    except k8s.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    kube = k8s.Kube(api)
    if not settings.seal_key.get_secret_value() and settings.seal_secret:
        if not settings.seal_namespace:
            print("error: MODELREG_SEAL_SECRET needs MODELREG_SEAL_NAMESPACE", file=sys.stderr)
            return 2
        try:
            key = kube.seal_key(settings.seal_namespace, settings.seal_secret)
        except k8s.KubeError as e:
            print(
                f"error: cannot read or create the seal Secret "
                f"{settings.seal_namespace}/{settings.seal_secret}: {e}",
                file=sys.stderr,
            )
            return 1
        settings = settings.model_copy(update={"seal_key": SecretStr(key)})
    reconciler = Reconciler(kube=kube, settings=settings)
    registry = install(reconciler, settings)
    metrics.serve(settings.metrics_port, settings.metrics_host)
    namespaces = list(settings.namespaces)
    logging.getLogger("modelreg.controller").info(
        "modelreg operator starting; watching %s",
        ", ".join(namespaces) if namespaces else "all namespaces",
    )
    try:
        kopf.run(
            registry=registry,
            standalone=True,
            namespaces=namespaces,
            clusterwide=not namespaces,
            liveness_endpoint=settings.liveness_endpoint or None,
        )
    except KeyboardInterrupt:
        pass
    except asyncio.CancelledError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
