"""The endpoint policy (adapters/endpoints.py): the allow-list, and the addresses never contacted.

The resolver is replaced by a stub, so no test sends anything to a link-local or metadata
address: the "forbidden" names resolve to such addresses only in the stub, and every socket
connection is recorded. The one real connection goes to a loopback HTTP server of this test.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from modelreg.adapters import endpoints
from modelreg.adapters.objectstore import (
    EndpointNotAllowed,
    ObjectNotFound,
    ObjectStore,
    StoreConfig,
)


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "169.254.0.1",
        "fe80::1",
        "fe80::1%eth0",
        "::ffff:169.254.169.254",
        "fd00:ec2::254",
        "100.100.100.200",
        "192.0.0.192",
    ],
)
def test_link_local_and_metadata_addresses_are_refused(address: str) -> None:
    assert endpoints.refused_address(address) is not None


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.244.0.1", "192.168.1.10", "::1", "2001:db8::1"]
)
def test_ordinary_addresses_pass(address: str) -> None:
    assert endpoints.refused_address(address) is None


@pytest.mark.parametrize(
    ("host", "port", "allowed", "ok"),
    [
        ("s3.internal", 9000, [], True),
        ("s3.internal", 9000, ["s3.internal"], True),
        ("S3.Internal.", 9000, ["s3.internal"], True),
        ("s3.internal", 9000, ["s3.internal:9000"], True),
        ("s3.internal", 9001, ["s3.internal:9000"], False),
        ("other.internal", 9000, ["s3.internal"], False),
        ("a.corp.example", 443, ["*.corp.example"], True),
        ("x.a.corp.example", 443, ["*.corp.example"], True),
        ("corp.example", 443, ["*.corp.example"], False),
        ("evilcorp.example", 443, ["*.corp.example"], False),
        ("::1", 9000, ["[::1]:9000"], True),
        ("127.0.0.1", 9000, ["127.0.0.1:9001", "s3.internal"], False),
    ],
)
def test_allow_list(host: str, port: int, allowed: list[str], ok: bool) -> None:
    assert endpoints.host_allowed(host, port, allowed) is ok


def test_refusal_names_the_endpoint_and_the_list() -> None:
    msg = endpoints.endpoint_refusal("http://127.0.0.1:9/", ["s3.internal:9000"])
    assert msg is not None
    assert "127.0.0.1:9" in msg
    assert "s3.internal:9000" in msg
    assert endpoints.endpoint_refusal("https://s3.internal:9000", ["s3.internal:9000"]) is None
    assert endpoints.endpoint_refusal("https://s3.internal", ["s3.internal:443"]) is None


class _NotFound(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def loopback_store() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """A resolver stub (name -> addresses) and a record of every socket connection."""
    table: dict[str, list[str]] = {}
    connected: list[Any] = []

    def resolve(host: str, port: int, *_: Any) -> list[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(f"{host}: not in the stub")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in table[host]
        ]

    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        connected.append(address)
        if address[0] != "127.0.0.1":
            raise AssertionError(f"a test tried to connect to {address}")
        real_connect(self, address)

    monkeypatch.setattr(endpoints, "resolve", resolve)
    monkeypatch.setattr(socket.socket, "connect", connect)
    table["__connected__"] = connected  # type: ignore[assignment]
    return table


def _head(endpoint: str) -> None:
    store = ObjectStore(
        StoreConfig(endpoint, "us-east-1", "key", "secret"), timeout=2, max_attempts=1
    )
    try:
        asyncio.run(store.head("s3://models/a/model.onnx"))
    finally:
        store.close()


def test_a_name_resolving_to_the_metadata_service_is_never_connected(
    dns: dict[str, list[str]],
) -> None:
    dns["metadata.test"] = ["169.254.169.254"]
    with pytest.raises(EndpointNotAllowed, match=r"169\.254\.169\.254, a link-local address"):
        _head("http://metadata.test:80")
    assert dns["__connected__"] == []


def test_one_forbidden_address_among_good_ones_refuses_the_name(
    dns: dict[str, list[str]], loopback_store: int
) -> None:
    dns["mixed.test"] = ["127.0.0.1", "fd00:ec2::254"]
    with pytest.raises(EndpointNotAllowed, match="cloud metadata address"):
        _head(f"http://mixed.test:{loopback_store}")
    assert dns["__connected__"] == []


def test_the_guard_resolves_at_connect_time_dns_rebinding(
    dns: dict[str, list[str]], loopback_store: int
) -> None:
    """The name is fine when first used, then resolves to the metadata service: the next new
    connection is refused, so no earlier check can be raced."""
    dns["rebind.test"] = ["127.0.0.1"]
    with pytest.raises(ObjectNotFound):
        _head(f"http://rebind.test:{loopback_store}")  # connected to the loopback server
    assert [a[0] for a in dns["__connected__"]] == ["127.0.0.1"]
    dns["rebind.test"] = ["169.254.169.254"]
    with pytest.raises(EndpointNotAllowed):
        _head(f"http://rebind.test:{loopback_store}")
    assert [a[0] for a in dns["__connected__"]] == ["127.0.0.1"]


def test_a_literal_link_local_endpoint_is_refused_without_a_packet(
    dns: dict[str, list[str]],
) -> None:
    dns["169.254.169.254"] = ["169.254.169.254"]
    with pytest.raises(EndpointNotAllowed):
        _head("http://169.254.169.254")
    assert dns["__connected__"] == []
