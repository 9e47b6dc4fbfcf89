"""Which object-store endpoints the operator may talk to.

A Model names its store (`spec.storage.endpoint`), so without a policy any tenant could point the
operator at any address it can reach: the cloud's instance metadata service (whose answers are
credentials), or an internal host it would otherwise never call. Two rules apply:

- an allow-list of hosts from the operator's settings (`allowed_endpoint_hosts`): `host`,
  `host:port` or `*.suffix`; when empty, any host;
- link-local and cloud metadata addresses are refused always, after DNS resolution and before
  any connection. The object-store client connects only to addresses this module approved
  (`guard_client`), so a name that resolves to an allowed address when checked and to the
  metadata service a moment later (DNS rebinding) is refused too.

`resolve` is the module's resolver (`socket.getaddrinfo`); unit tests replace it, so no test ever
sends traffic to such an address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import urllib3.exceptions
from urllib3.util import connection as urllib3_connection

__all__ = [
    "EndpointRefused",
    "addresses",
    "endpoint_refusal",
    "guard_client",
    "host_allowed",
    "refused_address",
]

Resolver = Callable[..., list[tuple[Any, ...]]]
resolve: Resolver = socket.getaddrinfo

# Metadata services outside 169.254.0.0/16 (AWS over IPv6, Alibaba, Oracle's second address).
_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)


class EndpointRefused(Exception):
    """The endpoint is not allowed: not on the allow-list, or it resolves to a forbidden
    address. Not transient: retrying will not help until the Model or the policy changes."""


def refused_address(address: str) -> str | None:
    """Why this IP address may never be contacted, or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA:
        return "a cloud metadata address"
    if ip.is_link_local:
        return "a link-local address (where the cloud metadata service lives)"
    return None


def host_allowed(host: str, port: int, allowed: Sequence[str]) -> bool:
    """True when `host:port` matches an entry of the allow-list (any host when it is empty)."""
    if not allowed:
        return True
    host = host.lower().rstrip(".")
    for raw in allowed:
        entry = raw.strip().lower()
        want_host, want_port = entry, None
        if entry.startswith("[") and "]" in entry:  # [v6]:port
            want_host, _, rest = entry[1:].partition("]")
            want_port = rest[1:] if rest.startswith(":") else None
        elif entry.count(":") == 1:
            want_host, want_port = entry.split(":")
        if want_port is not None and want_port != str(port):
            continue
        want_host = want_host.rstrip(".")
        if want_host.startswith("*."):
            if host.endswith(want_host[1:]) and host != want_host[2:]:
                return True
        elif host == want_host:
            return True
    return False


def _split(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint)
    if not parts.hostname:
        raise EndpointRefused(f"object-store endpoint {endpoint!r} has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise EndpointRefused(f"object-store endpoint {endpoint!r}: {e}") from e
    return parts.hostname, port


def addresses(host: str, port: int) -> list[tuple[Any, ...]]:
    """Resolve `host`; refuse it when any address it resolves to is forbidden."""
    try:
        infos = resolve(host, port, 0, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise socket.gaierror(f"cannot resolve {host!r}: {e}") from e
    for info in infos:
        why = refused_address(str(info[4][0]))
        if why is not None:
            raise EndpointRefused(
                f"object-store endpoint host {host!r} resolves to {info[4][0]}, {why}; the "
                "operator never connects there"
            )
    return infos


def endpoint_refusal(endpoint: str, allowed: Sequence[str]) -> str | None:
    """Why the allow-list refuses `endpoint`, or None. No DNS: the address rules apply when the
    client connects (`guard_client`)."""
    try:
        host, port = _split(endpoint)
    except EndpointRefused as e:
        return str(e)
    if host_allowed(host, port, allowed):
        return None
    return (
        f"object-store endpoint {host}:{port} is not in the operator's allowed endpoint hosts "
        f"({', '.join(allowed)}); ask the platform team to add it (chart value "
        "operator.allowedEndpointHosts)"
    )


def _connect(self: Any) -> socket.socket:
    """`HTTPConnection._new_conn`'s connection, made only to approved addresses of the host (IP
    literals, so urllib3 resolves nothing again)."""
    last: OSError | None = None
    for *_, address in addresses(self._dns_host, self.port):
        try:
            sock: socket.socket = urllib3_connection.create_connection(
                (str(address[0]), self.port),
                self.timeout,
                source_address=self.source_address,
                socket_options=self.socket_options,
            )
            return sock
        except OSError as e:
            last = e
    raise last or OSError(f"no address to connect to for {self._dns_host!r}")


def guard_client(client: Any) -> None:
    """Make a boto3 client connect only through `addresses`: every new connection resolves its
    host and refuses forbidden addresses before connecting. botocore offers no public hook for
    this, so the connection classes of the client's pools are replaced; a botocore whose layout
    differs fails here, loudly, rather than running unguarded."""
    session: Any = getattr(getattr(client, "_endpoint", None), "http_session", None)
    pools = getattr(session, "_pool_classes_by_scheme", None)
    manager = getattr(session, "_manager", None)
    if not isinstance(pools, dict) or manager is None or set(pools) != {"http", "https"}:
        raise EndpointRefused(
            "cannot enforce the object-store endpoint policy with this botocore version"
        )
    guarded = {}
    for scheme, pool in pools.items():
        conn = type(
            f"Guarded{pool.ConnectionCls.__name__}", (pool.ConnectionCls,), {"_new_conn": _new_conn}
        )
        guarded[scheme] = type(f"Guarded{pool.__name__}", (pool,), {"ConnectionCls": conn})
    session._pool_classes_by_scheme = guarded
    manager.pool_classes_by_scheme = guarded


def _new_conn(self: Any) -> socket.socket:
    try:
        return _connect(self)
    except socket.gaierror as e:
        raise urllib3.exceptions.NameResolutionError(self.host, self, e) from e
    except TimeoutError as e:
        raise urllib3.exceptions.ConnectTimeoutError(
            self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
        ) from e
    except EndpointRefused:
        raise
    except OSError as e:
        raise urllib3.exceptions.NewConnectionError(
            self, f"Failed to establish a new connection: {e}"
        ) from e
