"""Reading a serving pod's /metrics over HTTP (the canary analysis, `modelreg.controller.analyst`).

aiohttp's exceptions end here, as `ScrapeError` with a message for the Model's status.
"""

from __future__ import annotations

import aiohttp

BODY_MAX = 1024 * 1024  # a runtime's /metrics is tens of KiB; more is not the runtime


class ScrapeError(Exception):
    """A pod's /metrics could not be read; the message says why, for `Analyst.errors()`."""


class MetricsFetch:
    """GET a pod's /metrics with aiohttp; its exceptions end here, as ScrapeError. One session,
    made on first use in the running loop. The URLs are the operator's own (pod IPs it listed),
    not a tenant's, so no address policy applies; redirects are not followed all the same."""

    def __init__(self, timeout: float, *, concurrency: int = 32) -> None:
        self._timeout = timeout
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._concurrency),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"User-Agent": "modelreg-operator", "Accept": "text/plain"},
                trust_env=False,  # pod IPs: never through a proxy from the environment
            )
        return self._session

    async def get(self, url: str) -> str:
        try:
            async with self._open().get(url, allow_redirects=False) as reply:
                if reply.status != 200:
                    raise ScrapeError(f"HTTP {reply.status}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in reply.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > BODY_MAX:
                        raise ScrapeError(f"the answer is more than {BODY_MAX} bytes")
                    chunks.append(chunk)
        except TimeoutError as e:
            raise ScrapeError(f"no answer within {self._timeout:g}s") from e
        except aiohttp.ClientConnectorError as e:
            raise ScrapeError(f"cannot connect: {e.os_error}") from e
        except aiohttp.ClientError as e:
            raise ScrapeError(f"{type(e).__name__}: {e}") from e
        return b"".join(chunks).decode("utf-8", errors="replace")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
