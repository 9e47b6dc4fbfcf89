"""Which permission is missing: the API server's Forbidden message, read back into its parts.

Called by `modelreg.ui.server` when the SDK raises `PermissionDenied`. The API server's RBAC
refusal has a fixed shape (k8s.io/apiserver's `forbiddenMessage`):

    modelversions.modelreg.dev is forbidden: User "alice" cannot list resource "modelversions"
    in API group "modelreg.dev" in the namespace "team-a"

(`at the cluster scope` for cluster-wide requests, `resource "deployments/scale"` for a
subresource, no API group clause for the core group). Pure; an unrecognised message (an admission
policy's, say) is shown as it came.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FORBIDDEN = re.compile(
    r'User "(?P<user>[^"]*)" cannot (?P<verb>[a-z*]+) resource "(?P<resource>[^"]+)"'
    r'(?: in API group "(?P<group>[^"]*)")?'
    r'(?: in the namespace "(?P<namespace>[^"]+)"| at the cluster scope)?'
    r"(?P<rest>.*)$",
    re.DOTALL,
)


@dataclass(frozen=True)
class MissingPermission:
    """One RBAC permission the API server refused."""

    user: str
    verb: str
    resource: str  # plural, with "/subresource" when there is one
    group: str  # "" is the core group
    namespace: str | None  # None: cluster scope
    detail: str = ""  # anything the message adds (e.g. an authorizer's reason)

    @property
    def qualified(self) -> str:
        """`modelversions.modelreg.dev`, or `events` for the core group (as kubectl writes)."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def where(self) -> str:
        return f"in namespace {self.namespace}" if self.namespace else "at the cluster scope"

    def sentence(self) -> str:
        return f"You ({self.user}) may not {self.verb} {self.qualified} {self.where}."

    def ask(self) -> str:
        kind = "Role" if self.namespace else "ClusterRole"
        return f"Ask for a {kind} granting: {self.verb} on {self.qualified}"

    def rule(self) -> str:
        """The RBAC rule that would allow it, as YAML a cluster admin can paste into a Role."""
        return (
            f'- apiGroups: ["{self.group}"]\n'
            f'  resources: ["{self.resource}"]\n'
            f'  verbs: ["{self.verb}"]'
        )


def parse_forbidden(message: str) -> MissingPermission | None:
    """The refused permission named in `message`, or None when it names none."""
    m = _FORBIDDEN.search(message)
    if m is None:
        return None
    rest = m.group("rest").strip().lstrip(":").strip()
    return MissingPermission(
        user=m.group("user"),
        verb=m.group("verb"),
        resource=m.group("resource"),
        group=m.group("group") or "",
        namespace=m.group("namespace"),
        detail=rest,
    )
