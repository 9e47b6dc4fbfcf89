"""`Client.list_events`: the SDK's adapter reads events.k8s.io/v1; both Event shapes are read."""

from __future__ import annotations

from typing import Any

import pytest

from modelreg.sdk.client import Client
from modelreg.sdk.errors import ModelregError, PermissionDenied
from tests.unit.sdk.fakes import FakeKube
from tests.unit.ui.fixtures import MODEL, registry_client


def test_events_of_one_object_oldest_first_from_core_v1() -> None:
    client, kube = registry_client()
    events = client.list_events(f"{MODEL}-v5")
    assert [e.reason for e in events] == ["Verified", "Rolling", "Serving"]
    assert events[0].source == "modelreg"
    assert client.list_events(f"{MODEL}-v3")[0].count == 3
    kube.refuse["events"] = "alice"
    with pytest.raises(PermissionDenied, match='cannot list resource "events"'):
        client.list_events(f"{MODEL}-v5")


class CustomObjects:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def list_namespaced_custom_object(self, *args: Any, **kw: Any) -> dict[str, Any]:
        self.calls.append((args, kw["field_selector"]))
        return {
            "items": [
                {
                    "reason": "Blocked",
                    "note": "gates failed",
                    "type": "Warning",
                    "deprecatedCount": 2,
                    "deprecatedFirstTimestamp": "2026-01-01T00:00:00Z",
                    "series": {"count": 4, "lastObservedTime": "2026-01-02T00:00:00Z"},
                    "reportingController": "modelreg",
                }
            ]
        }


def test_the_sdk_adapter_reads_events_k8s_io_by_the_regarding_name() -> None:
    from kubernetes import client as k8s_client

    from modelreg.adapters.kube import ClientKube

    kube = ClientKube(k8s_client.ApiClient())
    kube.custom = CustomObjects()  # type: ignore[assignment]
    client = Client(namespace="risk", kube=kube, env={})
    [e] = client.list_events("m-v1")
    assert kube.custom.calls == [  # type: ignore[attr-defined]
        (("events.k8s.io", "v1", "risk", "events"), "regarding.name=m-v1")
    ]
    assert (e.type, e.reason, e.message, e.count, e.source) == (
        "Warning",
        "Blocked",
        "gates failed",
        4,  # the series' count, the current one
        "modelreg",
    )
    assert (e.first, e.last) == ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")


def test_an_adapter_without_events_is_a_clear_error() -> None:
    client = Client(namespace="risk", kube=FakeKube(), env={})
    with pytest.raises(ModelregError, match="cannot list Events"):
        client.list_events("m-v1")
