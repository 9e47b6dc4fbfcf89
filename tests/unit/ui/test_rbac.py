"""The API server's Forbidden messages, read back into the permission that is missing."""

from __future__ import annotations

from modelreg.ui.rbac import parse_forbidden
from tests.unit.ui.fixtures import forbidden_message


def test_a_namespaced_refusal_names_verb_resource_group_namespace_and_user() -> None:
    msg = "model versions: " + forbidden_message(
        "alice", "list", "modelversions", "modelreg.dev", "team-a"
    )
    p = parse_forbidden(msg)
    assert p is not None
    assert (p.user, p.verb, p.resource, p.group, p.namespace) == (
        "alice",
        "list",
        "modelversions",
        "modelreg.dev",
        "team-a",
    )
    assert (
        p.sentence() == "You (alice) may not list modelversions.modelreg.dev in namespace team-a."
    )
    assert p.ask() == "Ask for a Role granting: list on modelversions.modelreg.dev"
    assert '["modelreg.dev"]' in p.rule()
    assert '["list"]' in p.rule()


def test_the_core_group_has_no_group_clause() -> None:
    p = parse_forbidden(
        'events is forbidden: User "system:serviceaccount:a:viewer" cannot list resource '
        '"events" in API group "" in the namespace "a"'
    )
    assert p is not None
    assert p.qualified == "events"
    assert p.group == ""
    assert p.user == "system:serviceaccount:a:viewer"
    p = parse_forbidden(
        'pods is forbidden: User "bob" cannot get resource "pods" in the namespace "b"'
    )
    assert p is not None
    assert p.qualified == "pods"
    assert p.namespace == "b"


def test_cluster_scope_and_subresources() -> None:
    p = parse_forbidden(
        'namespaces is forbidden: User "bob" cannot list resource "namespaces" in API group "" '
        "at the cluster scope"
    )
    assert p is not None
    assert p.namespace is None
    assert p.sentence() == "You (bob) may not list namespaces at the cluster scope."
    assert p.ask().startswith("Ask for a ClusterRole")
    p = parse_forbidden(
        'deployments.apps "x" is forbidden: User "bob" cannot get resource "deployments/scale" '
        'in API group "apps" in the namespace "n": RBAC: role not found'
    )
    assert p is not None
    assert p.qualified == "deployments/scale.apps"
    assert p.detail == "RBAC: role not found"


def test_other_refusals_are_not_guessed() -> None:
    assert parse_forbidden("denied by ValidatingAdmissionPolicy modelreg-promotion") is None
    assert parse_forbidden("") is None
