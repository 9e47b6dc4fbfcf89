"""`python -m modelreg.metricsapi`: serve the custom metrics API (custom.metrics.k8s.io/v1beta2)
that `spec.serving.autoscaling.targetInFlight` reads, behind the API server's aggregator.

    python -m modelreg.metricsapi [--address A] [--port N]
        [--tls-cert-file F --tls-key-file F | --tls-secret NAME --service NAME]

Settings come from MODELREG_METRICS_API_* variables; flags override them. TLS:

- `--tls-cert-file`/`--tls-key-file`: a serving certificate made elsewhere (the APIService's
  caBundle must hold its CA);
- `--tls-secret NAME --service SVC` (the chart's way): the certificate is kept in the Secret NAME
  of this pod's namespace, made on first start (a CA of its own and a certificate for the
  Service's DNS names, renewed 30 days before it expires), and the CA is written into the
  APIService's spec.caBundle, so nothing has to be generated at install time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import signal
import sys
import tempfile
from pathlib import Path

from aiohttp import web
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelreg.adapters import kube as k8s
from modelreg.adapters.scrape import MetricsFetch
from modelreg.lifecycle import custom_metrics as cm
from modelreg.metricsapi import certs
from modelreg.metricsapi.server import ConfigError, FrontProxy, Server

log = logging.getLogger("modelreg.metricsapi")
SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class MetricsApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELREG_METRICS_API_", extra="ignore")

    address: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=6443, ge=1, le=65535)
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_secret: str = Field(default="", description="Secret keeping a self-made certificate.")
    service: str = Field(default="", description="The Service the APIService names.")
    namespace: str = Field(default="", description="This pod's namespace (the Secret's).")
    apiservice: str = cm.APISERVICE
    authentication_config_map: str = "kube-system/extension-apiserver-authentication"
    scrape_timeout: float = Field(default=2.0, gt=0, le=30)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m modelreg.metricsapi", description=__doc__.split("\n")[0]
    )
    p.add_argument("--address")
    p.add_argument("--port", type=int)
    p.add_argument("--tls-cert-file")
    p.add_argument("--tls-key-file")
    p.add_argument("--tls-secret")
    p.add_argument("--service")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def tls_files(kube: k8s.Kube, s: MetricsApiSettings, workdir: Path) -> tuple[str, str]:
    """The serving certificate and key files, made from the Secret when the chart runs us."""
    if s.tls_cert_file or s.tls_key_file:
        if not (s.tls_cert_file and s.tls_key_file):
            raise ConfigError("--tls-cert-file and --tls-key-file go together")
        return s.tls_cert_file, s.tls_key_file
    if not (s.tls_secret and s.service):
        raise ConfigError(
            "no serving certificate: pass --tls-cert-file and --tls-key-file, or --tls-secret "
            "and --service to keep a certificate of its own in a Secret"
        )
    namespace = s.namespace or (SA_NAMESPACE.read_text().strip() if SA_NAMESPACE.exists() else "")
    if not namespace:
        raise ConfigError("the Secret's namespace is unknown: set MODELREG_METRICS_API_NAMESPACE")
    now = dt.datetime.now(dt.UTC)
    data = kube.get_or_create_secret(
        namespace, s.tls_secret, lambda: certs.make(s.service, namespace, now).secret_data()
    )
    bundle = certs.Bundle.from_secret_data(data)
    if bundle is None or not certs.usable(bundle, s.service, namespace, now):
        bundle = certs.make(s.service, namespace, now)
        kube.replace_secret_data(namespace, s.tls_secret, bundle.secret_data())
        log.info("made a new serving certificate in the Secret %s/%s", namespace, s.tls_secret)
    try:
        if kube.set_apiservice_ca(s.apiservice, bundle.ca_bundle()):
            log.info("the APIService %s now trusts this server's CA", s.apiservice)
    except k8s.NotFound as e:
        raise ConfigError(f"the APIService {s.apiservice} does not exist: {e}") from e
    cert, key = workdir / "tls.crt", workdir / "tls.key"
    cert.write_bytes(bundle.cert)
    key.touch(mode=0o600)
    key.write_bytes(bundle.key)
    return str(cert), str(key)


async def serve(s: MetricsApiSettings, kube: k8s.Kube, workdir: Path) -> None:
    ns, _, name = s.authentication_config_map.partition("/")
    data = await kube.call(kube.get_config_map_data, ns, name)
    proxy = FrontProxy.from_config_map(data)
    cert, key = await kube.call(tls_files, kube, s, workdir)
    fetch = MetricsFetch(s.scrape_timeout)
    runner = web.AppRunner(Server(kube, proxy, fetch).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, s.address, s.port, ssl_context=proxy.ssl_context(cert, key))
    await site.start()
    log.info("serving %s on https://%s:%d", cm.GROUP_VERSION, s.address, s.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await fetch.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    overrides = {
        k: v
        for k, v in vars(args).items()
        if k in MetricsApiSettings.model_fields and v is not None
    }
    try:
        settings = MetricsApiSettings(**overrides)
    except ValidationError as e:
        print(f"modelreg-metricsapi: bad settings: {e}", file=sys.stderr)
        return 2
    try:
        kube = k8s.Kube(k8s.api_client())
        with tempfile.TemporaryDirectory(prefix="modelreg-metricsapi-") as tmp:
            asyncio.run(serve(settings, kube, Path(tmp)))
    except (ConfigError, k8s.KubeError) as e:
        print(f"modelreg-metricsapi: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"modelreg-metricsapi: cannot listen on {settings.address}:{settings.port}: {e}",
              file=sys.stderr)  # fmt: skip
        return 2
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
