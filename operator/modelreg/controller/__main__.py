"""`python -m modelreg.controller`: run the operator against the current kubeconfig.

    python -m modelreg.controller [--namespace NS ...] [--metrics-port N] [--verbose]

All namespaces when no --namespace is given. Settings come from MODELREG_* variables
(`modelreg.settings.OperatorSettings`); flags override them. With MODELREG_LEADER_ELECTION=true
several replicas may run: only the holder of the leader Lease reconciles (`modelreg.controller.
leader`); without it, run exactly one (kopf runs standalone, without peering).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

import kopf
from pydantic import SecretStr, ValidationError

from modelreg.adapters import impersonation
from modelreg.adapters import kube as k8s
from modelreg.controller import leader, metrics
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
    if settings.leader_election:
        if not settings.leader_namespace:
            print(
                "error: MODELREG_LEADER_ELECTION needs MODELREG_LEADER_NAMESPACE", file=sys.stderr
            )
            return 2
        elector = leader.Elector(
            kube,
            namespace=settings.leader_namespace,
            name=settings.leader_lease,
            identity=settings.leader_identity or leader.default_identity(),
            duration_seconds=settings.lease_duration_seconds,
            renew_deadline_seconds=settings.renew_deadline_seconds,
            retry_seconds=settings.retry_period_seconds,
        )
        kube.fence = elector.fence
        try:
            return asyncio.run(_elected(elector, registry, settings, namespaces))
        except KeyboardInterrupt:
            return 0
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


async def _elected(
    elector: leader.Elector,
    registry: kopf.OperatorRegistry,
    settings: OperatorSettings,
    namespaces: list[str],
) -> int:
    """Standby until the Lease is ours, then kopf for as long as it stays ours."""
    log = logging.getLogger("modelreg.controller")
    health = await leader.standby_health(settings.liveness_endpoint)
    try:
        await elector.acquire()
    finally:
        if health is not None:
            await health.cleanup()  # kopf serves the liveness endpoint from now on
    log.info("%s leads: reconciling", elector.identity)
    operator = asyncio.create_task(
        kopf.operator(
            registry=registry,
            standalone=True,
            namespaces=namespaces,
            clusterwide=not namespaces,
            liveness_endpoint=settings.liveness_endpoint or None,
        ),
        name="kopf",
    )
    keeper = asyncio.create_task(elector.keep(), name="leader-lease")
    done, _ = await asyncio.wait({operator, keeper}, return_when=asyncio.FIRST_COMPLETED)
    if keeper in done:
        log.error(
            "%s: lost the leadership (%s); stopping without another write, to restart as a standby",
            elector.identity,
            keeper.result(),
        )
        operator.cancel()
        with contextlib.suppress(BaseException):
            await operator
        return 1
    keeper.cancel()
    with contextlib.suppress(BaseException):
        await keeper
    await elector.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
