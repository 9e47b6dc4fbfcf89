"""The Argo CD health checks of Model and ModelVersion, run under Lua 5.1.

Argo CD evaluates `resource.customizations.health.<group>_<kind>` scripts from argocd-cm in
gopher-lua, a Lua 5.1 implementation, with `obj` bound to the live object and only the base,
table and package libraries plus a time-only `os` opened (argo-cd util/lua/lua.go): no `string`,
no `math`. lupa's Lua 5.1 runtime is the closest stand-in: the scripts run here with the same
global and without those libraries, over the objects in tests/e2e/fixtures/argocd-health/
(captured from, or shaped like, the operator's status).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from modelreg.api.models import Phase

REPO = Path(__file__).resolve().parents[2]
ARGOCD_CM = REPO / "manifests" / "argocd" / "argocd-cm.yaml"
FIXTURES = REPO / "tests" / "e2e" / "fixtures" / "argocd-health"
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

# fixture file -> (health status, a piece of the message the user must see)
EXPECTED: dict[str, tuple[str, str]] = {
    "modelversion-no-status.json": ("Progressing", "Waiting for the modelreg operator"),
    "modelversion-pending.json": ("Progressing", "Pending"),
    "modelversion-verifying.json": ("Progressing", "verifying the artifact"),
    "modelversion-ready.json": ("Healthy", "Ready"),
    "modelversion-rolling.json": ("Progressing", "1 of 2 replicas ready"),
    "modelversion-serving.json": ("Healthy", "serving production"),
    "modelversion-serving-unavailable.json": ("Degraded", "has no ready pod"),
    "modelversion-superseded.json": ("Healthy", "Superseded"),
    "modelversion-blocked-sha256.json": ("Degraded", "sha256 does not match"),
    "modelversion-blocked-gates.json": ("Degraded", "gate auc failed"),
    "modelversion-failed.json": ("Degraded", "did not become available within 300s"),
    "modelversion-archived.json": ("Healthy", "Archived"),
    "modelversion-stale-generation.json": ("Progressing", "observe generation 2"),
    "model-no-status.json": ("Progressing", "Waiting for the modelreg operator"),
    "model-ready.json": ("Healthy", "version 3 serves production"),
    "model-not-ready.json": ("Degraded", "no version of credit-scoring is eligible"),
    "model-unknown.json": ("Progressing", "Waiting for the modelreg operator"),
    "model-stale-generation.json": ("Progressing", "observe generation 2"),
}

# Libraries Argo CD does not open for a health script (its `os` has only time functions, which
# these scripts have no use for).
_UNAVAILABLE = ("io", "os", "debug", "coroutine", "string", "math")


def health_scripts() -> dict[str, str]:
    """Kind -> Lua source, from manifests/argocd/argocd-cm.yaml."""
    data = yaml.safe_load(ARGOCD_CM.read_text())["data"]
    prefix = "resource.customizations.health.modelreg.dev_"
    return {key.removeprefix(prefix): src for key, src in data.items() if key.startswith(prefix)}


def evaluate(script: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Run one health script as Argo CD does: a chunk with global `obj`, returning a table."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    g = lua.globals()
    for name in _UNAVAILABLE:
        g[name] = None
    # Through JSON, as Argo CD hands the object over: lupa's table_from would otherwise map two
    # references to one Python dict onto one (wrongly nested) Lua table.
    g.obj = lua.table_from(json.loads(json.dumps(obj)), recursive=True)
    result = lua.execute(script)
    assert lua51.lua_type(result) == "table", f"the script returned {result!r}, not a table"
    return {str(k): v for k, v in result.items()}


def fixture(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return obj


def test_argocd_cm_has_health_checks_for_both_kinds() -> None:
    assert set(health_scripts()) == {"Model", "ModelVersion"}


def expected_by_rule(obj: dict[str, Any]) -> str:
    """The health table of the design, independently of the Lua: for captured objects."""
    status = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    observed = status.get("observedGeneration")
    stale = generation is not None and observed is not None and observed < generation
    ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
    if obj["kind"] == "Model":
        if ready is None or ready["status"] == "Unknown" or stale:
            return "Progressing"
        return "Healthy" if ready["status"] == "True" else "Degraded"
    if stale:
        return "Progressing"
    unwell = ("Unavailable", "RolloutFailed", "InvalidServingSpec")
    serving = status.get("phase") == "Serving"
    if serving and ready and ready["status"] == "False" and ready["reason"] in unwell:
        return "Degraded"
    return {
        "Serving": "Healthy", "Ready": "Healthy", "Archived": "Healthy", "Superseded": "Healthy",
        "Blocked": "Degraded", "Failed": "Degraded",
    }.get(status.get("phase"), "Progressing")  # fmt: skip


def captured() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("captured-*.json"))


def test_every_fixture_has_an_expectation_and_every_expectation_a_fixture() -> None:
    on_disk = {p.name for p in FIXTURES.glob("*.json")} - set(captured())
    assert on_disk == set(EXPECTED), (
        f"fixtures without an expected health: {sorted(on_disk - set(EXPECTED))}; "
        f"expectations without a fixture: {sorted(set(EXPECTED) - on_disk)}"
    )


def test_every_phase_has_a_fixture() -> None:
    phases = {
        fixture(n).get("status", {}).get("phase") for n in EXPECTED if n.startswith("modelversion-")
    }
    missing = {p.value for p in Phase} - phases
    assert not missing, f"no ModelVersion fixture in phase(s) {sorted(missing)}"


def test_every_health_status_is_reached_for_each_kind() -> None:
    for kind in ("model", "modelversion"):
        reached = {want for name, (want, _) in EXPECTED.items() if name.startswith(kind + "-")}
        assert reached == {"Healthy", "Progressing", "Degraded"}, kind


@pytest.mark.parametrize("name", sorted(EXPECTED) + captured())
def test_health_of_fixture(name: str) -> None:
    """Hand-written cases check status and message; captured ones (saved from real runs by
    tests/e2e/test_gitops.py with MODELREG_CAPTURE_FIXTURES=1) the status by the rule table."""
    obj = fixture(name)
    want_status, want_message = EXPECTED.get(name) or (expected_by_rule(obj), "")
    result = evaluate(health_scripts()[obj["kind"]], obj)
    assert result.get("status") in ARGO_STATUSES, result
    assert result["status"] == want_status, f"{name}: {result}"
    message = result.get("message")
    assert isinstance(message, str), f"{name}: the message must be a string: {result}"
    assert want_message in message, f"{name}: {message!r} does not mention {want_message!r}"


def test_rule_table_agrees_with_the_hand_written_expectations() -> None:
    """Keeps expected_by_rule honest: it must give the same verdict as EXPECTED on every file."""
    for name, (want, _) in EXPECTED.items():
        assert expected_by_rule(fixture(name)) == want, name


def test_degraded_message_is_the_ready_condition_message() -> None:
    obj = fixture("modelversion-failed.json")
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    result = evaluate(health_scripts()["ModelVersion"], obj)
    assert ready["message"] in result["message"]


def test_a_script_using_an_unopened_library_fails_here() -> None:
    """The sandbox above is real: a script calling os or string functions errors out."""
    with pytest.raises(lua51.LuaError):
        evaluate('return {status = string.upper("healthy")}', {"metadata": {}})
    with pytest.raises(lua51.LuaError):
        evaluate('return {status = os.getenv("HOME")}', {"metadata": {}})


def application_script() -> str:
    data = yaml.safe_load(ARGOCD_CM.read_text())["data"]
    script: str = data["resource.customizations.health.argoproj.io_Application"]
    return script


_SOURCE = {
    "repoURL": "file:///srv/git/site.git",
    "targetRevision": "main",
    "path": "charts/modelreg",
    "helm": {"releaseName": "modelreg", "valuesObject": {"image": {"tag": "dev"}}},
}


def application(**status: Any) -> dict[str, Any]:
    """A child Application of an app of apps, shaped like Argo CD v3.5's status."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "modelreg", "namespace": "argocd"},
        "spec": {"project": "default", "source": _SOURCE},
        **({"status": status} if status else {}),
    }


_SYNCED = {"status": "Synced", "revision": "c7ad6cd", "comparedTo": {"source": _SOURCE}}


@pytest.mark.parametrize(
    ("case", "obj", "want", "says"),
    [
        ("just created", application(), "Progressing", "report its health"),
        (
            # Argo CD 3.4+ leaves not-yet-created resources out of health (argo-cd#27917).
            "healthy before its first sync",
            application(health={"status": "Healthy"}, sync={"status": "OutOfSync"}),
            "Progressing",
            "OutOfSync",
        ),
        (
            "a verdict for the previous source",
            application(
                health={"status": "Healthy"},
                sync={**_SYNCED, "comparedTo": {"source": {**_SOURCE, "targetRevision": "v1"}}},
            ),
            "Progressing",
            "current source",
        ),
        (
            "a sync still running",
            application(
                health={"status": "Healthy"},
                sync=_SYNCED,
                operationState={"phase": "Running", "message": "waiting for healthy state"},
            ),
            "Progressing",
            "waiting for healthy state",
        ),
        (
            "rolling out",
            application(health={"status": "Progressing", "message": "1 of 2"}, sync=_SYNCED),
            "Progressing",
            "1 of 2",
        ),
        (
            "degraded while out of sync",
            application(
                health={"status": "Degraded", "message": "Blocked: sha256 does not match"},
                sync={"status": "OutOfSync"},
            ),
            "Degraded",
            "sha256 does not match",
        ),
        (
            "synced, compared to its source, healthy",
            application(
                health={"status": "Healthy", "message": "all good"},
                sync=_SYNCED,
                operationState={"phase": "Succeeded", "message": "successfully synced"},
            ),
            "Healthy",
            "all good",
        ),
    ],
)
def test_health_of_a_child_application(
    case: str, obj: dict[str, Any], want: str, says: str
) -> None:
    """The app-of-apps check: a wave waits until the child synced its current source and is
    healthy, not merely until it reports Healthy."""
    result = evaluate(application_script(), obj)
    assert result["status"] == want, f"{case}: {result}"
    assert says in result["message"], f"{case}: {result['message']!r} does not mention {says!r}"
