"""Kubernetes user impersonation for the `kubernetes` client, which ignores it.

`modelreg.adapters.kube.api_client` calls this: a kubeconfig user's `as`, `as-groups`, `as-uid`
and `as-user-extra` fields, overridden by the CLI's `--as`/`--as-group`/`--as-uid` (the SDK's
`as_user`/`as_groups`/`as_uid`), become the Impersonate-* request headers, as kubectl sends them.
Each group is its own `Impersonate-Group` header line: the API server takes every line as one
group, and a comma-joined value would be one group with a comma in its name. The client library
keeps default headers in a plain dict (one value per name), so the headers are added by a
subclass of its REST client that sends them as a urllib3 `HTTPHeaderDict`, one line per value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import config
from kubernetes.client import rest
from kubernetes.config.kube_config import KUBE_CONFIG_DEFAULT_LOCATION, KubeConfigMerger
from urllib3 import HTTPHeaderDict

# RFC 7230 token characters, less '%' (it starts an escape); as client-go escapes extra keys.
_HEADER_KEY = re.compile(r"[!#$&'*+\-.^_`|~0-9A-Za-z]")
_VALUE = re.compile(r"^[\x20-\x7e]*$")


class ImpersonationError(ValueError):
    """The impersonation asked for cannot be sent (a group without a user, a bad value)."""


@dataclass(frozen=True)
class Impersonation:
    """Whom to act as. Empty: act as the authenticated identity itself."""

    user: str | None = None
    groups: tuple[str, ...] = ()
    uid: str | None = None
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.user or self.groups or self.uid or self.extra)

    def over(self, base: Impersonation) -> Impersonation:
        """These values where set, else `base`'s (flags over the kubeconfig, as kubectl)."""
        return Impersonation(
            user=self.user or base.user,
            groups=self.groups or base.groups,
            uid=self.uid or base.uid,
            extra=self.extra or base.extra,
        )

    def headers(self) -> list[tuple[str, str]]:
        """The request headers, one (name, value) per header line."""
        if not self:
            return []
        if not self.user:
            raise ImpersonationError(
                "impersonating groups, a uid or extra fields needs a user to impersonate: "
                "add --as USER (or `as:` in the kubeconfig user)"
            )
        lines = [("Impersonate-User", self.user)]
        lines += [("Impersonate-Group", g) for g in self.groups]
        if self.uid:
            lines.append(("Impersonate-Uid", self.uid))
        for key, values in sorted(self.extra.items()):
            lines += [(f"Impersonate-Extra-{_escape_key(key)}", v) for v in values]
        for name, value in lines:
            if not value or not _VALUE.match(value):
                raise ImpersonationError(
                    f"cannot impersonate: {name} {value!r} must be non-empty printable ASCII"
                )
        return lines


def _escape_key(key: str) -> str:
    if not key:
        raise ImpersonationError("cannot impersonate: an as-user-extra key is empty")
    return "".join(
        c if _HEADER_KEY.match(c) else "".join(f"%{b:02X}" for b in c.encode()) for c in key
    )


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list):
        raise ImpersonationError(f"kubeconfig: {what} must be a list of strings")
    return tuple(str(v) for v in value)


def from_kubeconfig(kubeconfig: str | None, context: str | None) -> Impersonation:
    """The impersonation fields of the user of `context` (else the current context), read from
    the same merged kubeconfig that `config.load_kube_config` loads. No kubeconfig file at all
    (a pod using its service account) impersonates nobody."""
    path = kubeconfig or KUBE_CONFIG_DEFAULT_LOCATION
    if not any(os.path.isfile(os.path.expanduser(p)) for p in path.split(os.pathsep) if p):
        return Impersonation()
    contexts, active = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
    chosen = active
    if context:
        chosen = next((c for c in contexts or [] if c.get("name") == context), None)
    user_name = ((chosen or {}).get("context") or {}).get("user")
    if not user_name:
        return Impersonation()
    merged = KubeConfigMerger(path).config  # type: ignore[no-untyped-call]
    entry = merged["users"].get_with_name(user_name, safe=True) if merged is not None else None
    if entry is None:
        return Impersonation()
    user = entry.value.get("user") or {}
    if not isinstance(user, dict):
        return Impersonation()
    extra_raw = user.get("as-user-extra") or {}
    if not isinstance(extra_raw, dict):
        raise ImpersonationError("kubeconfig: as-user-extra must map keys to lists of strings")
    return Impersonation(
        user=str(user["as"]) if user.get("as") else None,
        groups=_strings(user.get("as-groups"), "as-groups"),
        uid=str(user["as-uid"]) if user.get("as-uid") else None,
        extra={str(k): _strings(v, f"as-user-extra[{k}]") for k, v in extra_raw.items()},
    )


class ImpersonatingREST(rest.RESTClientObject):
    """The client library's REST client, adding the Impersonate-* header lines to each request."""

    def __init__(self, configuration: Any, lines: Sequence[tuple[str, str]]) -> None:
        super().__init__(configuration)
        self.impersonate = list(lines)

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        post_params: Any = None,
        _request_timeout: Any = None,
    ) -> Any:
        merged = HTTPHeaderDict(headers or {})
        for name in {n for n, _ in self.impersonate}:
            merged.discard(name)
        for name, value in self.impersonate:
            merged.add(name, value)
        return super().request(  # type: ignore[no-untyped-call]
            method,
            url,
            headers=merged,
            body=body,
            post_params=post_params,
            _request_timeout=_request_timeout,
        )


__all__ = [
    "ImpersonatingREST",
    "Impersonation",
    "ImpersonationError",
    "from_kubeconfig",
]
