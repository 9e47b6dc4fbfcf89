"""The custom metrics API server over real TLS on loopback: front-proxy authentication by client
certificate, authorization by SubjectAccessReview, values from the pods' /metrics. The API server
(pods, reviews) and the pods' /metrics are fakes at the adapter boundary."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from modelreg.adapters import kube as k8s
from modelreg.adapters.scrape import ScrapeError
from modelreg.metricsapi import certs
from modelreg.metricsapi.server import ConfigError, FrontProxy, Server

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
PATH = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/apps/pods/*/modelreg_requests_in_flight"
PEM = serialization.Encoding.PEM


class Authority:
    """A front-proxy CA that signs client certificates, as the cluster's does."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "front-proxy-ca")])
        self.cert = self._build(self.name, self.key.public_key(), ca=True)

    def _build(self, subject: x509.Name, key: Any, *, ca: bool) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def pem(self) -> str:
        return self.cert.public_bytes(PEM).decode()

    def client(self, cn: str, where: Path) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        cert = self._build(subject, key.public_key(), ca=False)
        crt, pkey = where / f"{cn}.crt", where / f"{cn}.key"
        crt.write_bytes(cert.public_bytes(PEM))
        pkey.write_bytes(
            key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        return str(crt), str(pkey)


def pod(name: str, ip: str, *, ready: bool = True, port: str | None = "http") -> dict[str, Any]:
    ports = [{"name": port, "containerPort": 8080}] if port else []
    return {
        "metadata": {"name": name, "uid": f"uid-{name}"},
        "spec": {"containers": [{"name": "server", "ports": ports}]},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def metrics(busy: float, in_flight: int) -> str:
    return (
        "# TYPE modelreg_runtime_requests_in_flight gauge\n"
        f'modelreg_runtime_requests_in_flight{{model="m",version="1"}} {in_flight}\n'
        "# TYPE modelreg_runtime_request_duration_seconds histogram\n"
        'modelreg_runtime_request_duration_seconds_sum{endpoint="infer",model="m",'
        f'protocol="http",status="200",version="1"}} {busy}\n'
    )


class FakeKube:
    def __init__(self) -> None:
        self.pods = [
            pod("a", "10.0.0.1"),
            pod("b", "10.0.0.2"),
            pod("starting", "10.0.0.3", ready=False),
            pod("noport", "10.0.0.4", port=None),
            pod("silent", "10.0.0.5"),
        ]
        self.reviews: list[dict[str, Any]] = []
        self.selectors: list[str] = []
        self.allowed = {"system:serviceaccount:kube-system:horizontal-pod-autoscaler"}

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        if "!!" in selector:
            raise k8s.Invalid("unable to parse requirement", 400)
        self.selectors.append(selector)
        return self.pods

    def access_review(self, spec: dict[str, Any]) -> tuple[bool, str]:
        self.reviews.append(spec)
        return spec["user"] in self.allowed, ""


class FakeFetch:
    def __init__(self) -> None:
        self.text = {
            "http://10.0.0.1:8080/metrics": metrics(10.0, 2),
            "http://10.0.0.2:8080/metrics": metrics(0.0, 0),
        }

    async def get(self, url: str) -> str:
        if url not in self.text:
            raise ScrapeError("cannot connect: refused")
        return self.text[url]


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.authority = Authority()
        self.kube = FakeKube()
        self.fetch = FakeFetch()
        self.clock = 1000.0
        proxy = FrontProxy.from_config_map(
            {
                "requestheader-client-ca-file": self.authority.pem(),
                "requestheader-allowed-names": '["front-proxy-client"]',
                "requestheader-username-headers": '["X-Remote-User"]',
                "requestheader-group-headers": '["X-Remote-Group"]',
                "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
            }
        )
        bundle = certs.make("mapi", "sys", NOW)
        (tmp / "tls.crt").write_bytes(bundle.cert)
        (tmp / "tls.key").write_bytes(bundle.key)
        (tmp / "ca.crt").write_bytes(bundle.ca)
        self.server_ssl = proxy.ssl_context(str(tmp / "tls.crt"), str(tmp / "tls.key"))
        self.server = Server(self.kube, proxy, self.fetch, clock=lambda: self.clock)  # type: ignore[arg-type]

    def client_ssl(self, cn: str | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.tmp / "ca.crt"))
        if cn is not None:
            ctx.load_cert_chain(*self.authority.client(cn, self.tmp))
        return ctx

    def get(
        self,
        path: str,
        *,
        cn: str | None = "front-proxy-client",
        user: str = "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
        query: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any] | str]:
        """One request to the server, started for it (its state lives in `self.server`)."""
        headers = {"X-Remote-User": user, "X-Remote-Group": "system:serviceaccounts"}
        return asyncio.run(asyncio.wait_for(self._get(path, cn, headers, query or {}), 30))

    async def _get(
        self, path: str, cn: str | None, headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, Any] | str]:
        runner = web.AppRunner(self.server.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.server_ssl)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        conn = aiohttp.TCPConnector(ssl=self.client_ssl(cn))
        try:
            async with (
                aiohttp.ClientSession(connector=conn) as s,
                s.get(
                    f"https://127.0.0.1:{port}{path}",
                    headers=headers,
                    params=query,
                    server_hostname="mapi.sys.svc",
                ) as r,
            ):
                text = await r.text()
        finally:
            await runner.cleanup()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_the_autoscaler_gets_each_ready_pods_value(harness: Harness) -> None:
    status, body = harness.get(PATH, query={"labelSelector": "modelreg.dev/model=m"})
    assert status == 200, body
    assert isinstance(body, dict)
    assert body["kind"] == "MetricValueList"
    # First reading: the gauge. Not ready, no http port, or no answer: left out.
    values = {i["describedObject"]["name"]: (i["value"], i["windowSeconds"]) for i in body["items"]}
    assert values == {"a": ("2", 0), "b": ("0", 0)}
    assert harness.kube.selectors == ["modelreg.dev/model=m,app.kubernetes.io/managed-by=modelreg"]
    [review] = harness.kube.reviews
    assert review["user"] == "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
    assert review["groups"] == ["system:serviceaccounts", "system:authenticated"]
    assert review["resourceAttributes"] == {
        "namespace": "apps",
        "verb": "get",
        "group": "custom.metrics.k8s.io",
        "version": "v1beta2",
        "resource": "pods",
        "subresource": "modelreg_requests_in_flight",
        "name": "*",
    }

    # 15 s later, 45 s more spent in pod a: 3 in flight on average over that window.
    harness.clock += 15
    harness.fetch.text["http://10.0.0.1:8080/metrics"] = metrics(55.0, 1)
    status, body = harness.get(PATH)
    assert isinstance(body, dict)
    values = {i["describedObject"]["name"]: (i["value"], i["windowSeconds"]) for i in body["items"]}
    assert values == {"a": ("3", 15), "b": ("0", 15)}
    assert len(harness.kube.reviews) == 2  # a review is kept for 10 s: this one had expired
    harness.clock += 2
    status, body = harness.get(PATH)
    assert status == 200
    assert len(harness.kube.reviews) == 2  # and this one was the kept one


def test_one_pod_by_name_and_an_unknown_one(harness: Harness) -> None:
    status, body = harness.get(PATH.replace("/*/", "/a/"))
    assert status == 200
    assert isinstance(body, dict)
    assert [i["describedObject"]["name"] for i in body["items"]] == ["a"]
    status, body = harness.get(PATH.replace("/*/", "/starting/"))
    assert status == 404
    assert isinstance(body, dict)
    assert body["message"] == "apps/starting is not a ready serving pod of modelreg"


@pytest.mark.parametrize("cn", [None, "someone-else"])
def test_user_headers_are_believed_only_from_the_front_proxy(
    harness: Harness, cn: str | None
) -> None:
    status, body = harness.get(PATH, cn=cn, user="system:admin")
    assert status == 401, body
    assert isinstance(body, dict)
    assert body["reason"] == "Unauthorized"
    assert harness.kube.reviews == []


def test_a_client_certificate_from_another_ca_fails_the_handshake(
    harness: Harness,
) -> None:
    other = Authority()
    harness.authority = other
    with pytest.raises(aiohttp.ClientError):
        harness.get(PATH)


def test_a_user_the_api_server_denies_gets_403_naming_what(harness: Harness) -> None:
    status, body = harness.get(PATH, user="nobody")
    assert status == 403
    assert isinstance(body, dict)
    assert body["message"] == (
        'user "nobody" cannot get resource "pods/modelreg_requests_in_flight" in API group '
        '"custom.metrics.k8s.io" in the namespace "apps"'
    )


@pytest.mark.parametrize(
    ("path", "query", "code", "message"),
    [
        (PATH.replace("modelreg_requests_in_flight", "cpu"), {}, 404, "the metric 'cpu' is not"),
        (PATH, {"metricLabelSelector": "a=b"}, 400, "has no labels"),
        (PATH, {"labelSelector": "!!"}, 400, "labelSelector: unable to parse"),
    ],
)
def test_bad_requests_get_a_status_saying_why(
    harness: Harness, path: str, query: dict[str, str], code: int, message: str
) -> None:
    status, body = harness.get(path, query=query)
    assert status == code
    assert isinstance(body, dict)
    assert body["kind"] == "Status"
    assert message in body["message"]


def test_discovery_and_health(harness: Harness) -> None:
    status, body = harness.get("/apis/custom.metrics.k8s.io/v1beta2")
    assert status == 200
    assert isinstance(body, dict)
    assert body["resources"][0]["name"] == "pods/modelreg_requests_in_flight"
    assert harness.kube.reviews[0]["nonResourceAttributes"] == {
        "path": "/apis/custom.metrics.k8s.io/v1beta2",
        "verb": "get",
    }
    assert harness.get("/healthz", cn=None) == (200, "ok")


def test_an_api_server_without_a_front_proxy_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="--requestheader-client-ca-file"):
        FrontProxy.from_config_map({"client-ca-file": "PEM"})


def test_the_certificate_is_renewed_before_it_expires_and_names_the_service() -> None:
    bundle = certs.make("mapi", "sys", NOW)
    assert certs.usable(bundle, "mapi", "sys", NOW)
    assert not certs.usable(bundle, "mapi", "sys", NOW + certs.VALIDITY - dt.timedelta(days=29))
    assert not certs.usable(bundle, "other", "sys", NOW)
    assert certs.Bundle.from_secret_data(bundle.secret_data()) == bundle
    assert certs.Bundle.from_secret_data({"ca.crt": "eA=="}) is None


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (k8s.Unavailable("connection refused"), 503, "the Kubernetes API is unavailable"),
        (k8s.Forbidden("pods is forbidden", 403), 500, "the metrics API's own request failed"),
    ],
)
def test_the_api_servers_failures_are_the_servers_not_the_callers(
    harness: Harness, error: k8s.KubeError, code: int, message: str
) -> None:
    def fail(namespace: str, selector: str) -> list[dict[str, Any]]:
        raise error

    harness.kube.list_pods = fail  # type: ignore[method-assign]
    status, body = harness.get(PATH)
    assert status == code
    assert isinstance(body, dict)
    assert body["message"].startswith(message)
