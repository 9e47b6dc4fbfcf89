"""The operator's webhook client: which URLs it may call, and one POST at a time. aiohttp.

`modelreg.controller.notifier` asks `url_refusal()` before it queues an event for a URL, and
sends each delivery attempt with `WebhookClient.post()`. The policy:

- `https://` to any host; `http://` only to a host the operator's `notification_allowed_hosts`
  lists (`host`, `host:port` or `*.suffix`, as `adapters.endpoints.host_allowed` matches them);
- no userinfo (`user:pass@`: credentials in a spec are readable by everyone who reads the Model)
  and no fragment;
- link-local and cloud metadata addresses are refused always (`adapters.endpoints`): IP literals
  by `url_refusal`, names when the session resolves them. aiohttp connects only to the addresses
  its resolver returns, and this one refuses a name that resolves to such an address, on every
  new connection, so a name that is rebound to the metadata service later is refused too.
  Redirects are not followed (a 3xx could point at an IP literal and skip the resolver).

aiohttp's exceptions end here: a failed attempt is a `WebhookError` saying whether a retry may
help.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from modelreg.adapters import endpoints

__all__ = ["WebhookClient", "WebhookError", "WebhookRefused", "url_refusal"]

USER_AGENT = "modelreg-operator"
REPLY_READ_MAX = 64 * 1024  # the receiver's answer is not used: read a little, for keep-alive


class WebhookError(Exception):
    """A delivery attempt failed; `retry` says whether trying again may succeed."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class WebhookRefused(WebhookError):
    """The URL or the address it resolves to is not allowed: never retried."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry=False)


class _AddressRefused(OSError):
    """Raised by the resolver; an OSError so that aiohttp reports it as a connection error."""


def url_refusal(url: str, http_hosts: Sequence[str]) -> str | None:
    """Why the operator may not send to `url`, or None. No DNS: names are checked on connect."""
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "the URL contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        return f"not a valid URL: {e}"
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        return f"scheme {parts.scheme or '(none)'!r}: only https:// (or http:// to an allowed host)"
    if "@" in parts.netloc:
        return (
            "a URL with userinfo (user:password@host) is refused: anyone who can read the Model "
            "reads it; sign requests with secretRef instead"
        )
    if "#" in url:
        return "a URL with a fragment (#...) is refused"
    host = parts.hostname
    if not host:
        return "the URL has no host"
    port = port or (443 if scheme == "https" else 80)
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    else:
        why = endpoints.refused_address(host)
        if why is not None:
            return f"{host} is {why}; the operator never connects there"
    if scheme == "http" and not (http_hosts and endpoints.host_allowed(host, port, http_hosts)):
        listed = ", ".join(http_hosts) if http_hosts else "none"
        return (
            f"http://{host}:{port} is not in the operator's notification allowed hosts "
            f"({listed}): use https://, or ask the platform team to add it (chart value "
            "operator.notificationAllowedHosts)"
        )
    return None


class _GuardedResolver(AbstractResolver):
    """Resolves with `adapters.endpoints.resolve` and refuses forbidden addresses."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            infos = await asyncio.to_thread(
                endpoints.resolve, host, port, family, socket.SOCK_STREAM
            )
        except (OSError, UnicodeError) as e:
            raise OSError(f"cannot resolve {host!r}: {e}") from e
        out: list[ResolveResult] = []
        for fam, _, proto, _, address in infos:
            why = endpoints.refused_address(str(address[0]))
            if why is not None:
                raise _AddressRefused(
                    f"{host!r} resolves to {address[0]}, {why}; the operator never connects there"
                )
            out.append(
                ResolveResult(
                    hostname=host,
                    host=str(address[0]),
                    port=int(address[1]),
                    family=fam,
                    proto=proto,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        if not out:
            raise OSError(f"{host!r} resolves to no address")
        return out

    async def close(self) -> None:
        return None


class WebhookClient:
    """One aiohttp session (made on first use, in the running loop), guarded as above."""

    def __init__(self, *, timeout: float, connections: int) -> None:
        self._timeout = timeout
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=_GuardedResolver(), use_dns_cache=False, limit=self._connections
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,  # no proxy from the environment: the policy sees the real host
            )
        return self._session

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> int:
        """POST `body`; the HTTP status of the answer. Raises WebhookError when there is none."""
        session = self._open()
        try:
            async with session.post(
                url, data=body, headers=dict(headers), allow_redirects=False
            ) as reply:
                await reply.content.read(REPLY_READ_MAX)
                return reply.status
        except TimeoutError as e:
            raise WebhookError(f"no answer within {self._timeout:g}s", retry=True) from e
        except aiohttp.ClientConnectorError as e:
            cause: Any = e.os_error
            if isinstance(cause, _AddressRefused):
                raise WebhookRefused(str(cause)) from e
            raise WebhookError(f"cannot connect: {cause}", retry=True) from e
        except aiohttp.InvalidURL as e:
            raise WebhookRefused(f"not a valid URL: {e}") from e
        except aiohttp.ClientError as e:
            raise WebhookError(f"{e.__class__.__name__}: {e}", retry=True) from e

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
