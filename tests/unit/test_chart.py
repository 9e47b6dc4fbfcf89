"""The Helm chart, rendered with `helm template` (no cluster): what each values switch produces.

Covers what a reviewer of the chart would check by eye: the operator Deployment meets Pod Security
"restricted"; the operator's RBAC is exactly the list it needs (no wildcards, Secrets `get` only,
namespaced Roles under watchNamespaces); the user roles aggregate and only the approver holds
`promote`; the admission policy matches what it must; the strict values schema rejects typos; and
the generated copies (charts/modelreg/files/crds/, manifests/install.yaml) are current.
Needs .dev/bin/helm (`make tools`); e2e/test_helm.py installs the chart into a real cluster.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelreg"
HELM = REPO / ".dev" / "bin" / "helm"
NS = "modelreg-system"

Obj = dict[str, Any]


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        pytest.fail(f"{HELM} is missing: run 'make tools' (it builds the pinned helm once)")
    proc = subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, timeout=60, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
    return proc


def render(*values: str) -> list[Obj]:
    """`helm template` with --set/--set-json style arguments; the rendered objects."""
    out = helm("template", "modelreg", str(CHART), "--namespace", NS, *values).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def only(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, got {[o['metadata'] for o in found]}"
    )
    return found[0]


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def triples(rules: list[Obj]) -> set[tuple[str, str, str]]:
    """RBAC rules flattened to (apiGroup, resource, verb)."""
    return {
        (g, r, v)
        for rule in rules
        for g in rule.get("apiGroups", [])
        for r in rule.get("resources", [])
        for v in rule.get("verbs", [])
    }


def expand(group: str, resources: str, verbs: str) -> set[tuple[str, str, str]]:
    return {(group, r, v) for r in resources.split() for v in verbs.split()}


CORE = ""  # the core API group, spelled "" in RBAC
NAMESPACED_OPERATOR_RULES = (
    expand("modelreg.dev", "models modelversions", "get list watch")
    | expand("modelreg.dev", "models/status modelversions/status", "get patch update")
    | {("modelreg.dev", "modelversions", "delete")}  # retention
    | expand("apps", "deployments", "get list watch create patch update delete")
    | expand(CORE, "services", "get list watch create patch update delete")
    | expand("discovery.k8s.io", "endpointslices", "list watch")
    | expand("autoscaling", "horizontalpodautoscalers", "get list watch create patch update delete")
    | expand(CORE, "events", "create patch")
    | expand("events.k8s.io", "events", "create patch")
    | {(CORE, "secrets", "get")}
)
CRD_DISCOVERY = expand("apiextensions.k8s.io", "customresourcedefinitions", "list watch")
NAMESPACE_DISCOVERY = expand(CORE, "namespaces", "list watch")


# --------------------------------------------------------------------------------------------
# Generated files


def test_chart_crds_are_the_generated_crds() -> None:
    generated = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    copied = {p.name: p.read_text() for p in (CHART / "files" / "crds").glob("*.yaml")}
    assert generated, "crds/ is empty"
    assert copied == generated, (
        "charts/modelreg/files/crds/ drifts from crds/: run charts/render.sh"
    )


def test_install_manifest_is_rendered_from_the_chart() -> None:
    proc = subprocess.run(
        ["bash", str(CHART.parent / "render.sh"), "--stdout"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"HELM": str(HELM), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    current = (REPO / "manifests" / "install.yaml").read_text()
    assert proc.stdout == current, (
        "manifests/install.yaml drifts from the chart: run charts/render.sh"
    )


def test_install_manifest_creates_a_restricted_namespace_first() -> None:
    docs = [d for d in yaml.safe_load_all((REPO / "manifests" / "install.yaml").read_text()) if d]
    assert docs[0]["kind"] == "Namespace"
    assert docs[0]["metadata"]["name"] == NS
    assert docs[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] == "Deployment"} == {NS}


# --------------------------------------------------------------------------------------------
# The operator Deployment


def test_operator_deployment_is_one_elected_replica_by_default_and_restricted() -> None:
    objs = render()
    dep = only(objs, "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 1
    # Leader election is always on: a rolling update brings the new pod up as a standby.
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    env = {e["name"]: e for e in spec["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELREG_LEADER_ELECTION"]["value"] == "true"
    assert env["MODELREG_LEADER_LEASE"]["value"] == "modelreg"
    assert env["MODELREG_LEADER_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert (
        env["MODELREG_LEASE_DURATION_SECONDS"]["value"],
        env["MODELREG_RENEW_DEADLINE_SECONDS"]["value"],
        env["MODELREG_RETRY_PERIOD_SECONDS"]["value"],
    ) == ("10", "7", "2")
    assert "affinity" not in spec["template"]["spec"]
    assert not of_kind(objs, "PodDisruptionBudget")  # one replica: a budget would block drains
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == "modelreg"
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True
    assert c["image"] == "ghcr.io/modelreg/modelreg:0.1.0"
    assert c["command"] == ["python", "-m", "modelreg.controller"]
    assert "args" not in c, "no --namespace flag: all namespaces by default"
    assert c["resources"]["requests"]["cpu"]
    assert c["resources"]["limits"]["memory"]
    # Writable scratch only where mounted: /tmp.
    assert [m["mountPath"] for m in c["volumeMounts"]] == ["/tmp"]
    assert pod["volumes"][0]["emptyDir"]


def test_operator_liveness_probe_and_ports_match_its_settings() -> None:
    (c,) = only(render(), "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    probe = c["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    assert ports[probe["port"]] == 8081
    assert env["MODELREG_LIVENESS_ENDPOINT"] == "http://0.0.0.0:8081/healthz"
    assert env["MODELREG_METRICS_HOST"] == "0.0.0.0"  # noqa: S104 (the pod's own address)
    assert env["MODELREG_METRICS_PORT"] == "9464"
    assert ports["metrics"] == 9464
    assert env["MODELREG_SERVING_IMAGE"] == "ghcr.io/modelreg/modelreg:0.1.0"


def test_metrics_can_be_turned_off() -> None:
    objs = render("--set", "metrics.enabled=false")
    (c,) = only(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in c["env"]}["MODELREG_METRICS_PORT"] == "0"
    assert not of_kind(objs, "Service")


def test_image_digest_wins_over_tag_and_serving_image_is_separate() -> None:
    digest = "sha256:" + "a" * 64
    objs = render(
        "--set", f"image.digest={digest}", "--set", "operator.servingImage=registry.local/srv:2"
    )
    (c,) = only(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert c["image"] == f"ghcr.io/modelreg/modelreg@{digest}"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MODELREG_SERVING_IMAGE"] == "registry.local/srv:2"


def test_metrics_service_selects_the_operator_pod() -> None:
    objs = render()
    svc = only(objs, "Service", "modelreg-metrics")
    labels = only(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 9464, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert not of_kind(objs, "ServiceMonitor")


def test_service_monitor_is_optional() -> None:
    objs = render(
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.labels.release=prom",
    )
    sm = only(objs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NS]}


# --------------------------------------------------------------------------------------------
# RBAC


def test_no_rbac_rule_uses_a_wildcard() -> None:
    for objs in (render(), render("--set-json", 'watchNamespaces=["a","b"]')):
        for role in of_kind(objs, "ClusterRole") + of_kind(objs, "Role"):
            for rule in role["rules"]:
                for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                    assert "*" not in rule.get(key, []), (role["metadata"]["name"], rule)
                    assert not any("*" in v for v in rule.get(key, [])), (
                        role["metadata"]["name"],
                        rule,
                    )


def test_all_namespaces_operator_rbac_is_exactly_what_it_needs() -> None:
    objs = render()
    role = only(objs, "ClusterRole", "modelreg-operator")
    assert triples(role["rules"]) == NAMESPACED_OPERATOR_RULES | CRD_DISCOVERY | NAMESPACE_DISCOVERY
    binding = only(objs, "ClusterRoleBinding", "modelreg-operator")
    assert binding["roleRef"]["name"] == "modelreg-operator"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "modelreg", "namespace": NS}]
    own = ["modelreg-leader", "modelreg-seal"]
    assert sorted(r["metadata"]["name"] for r in of_kind(objs, "Role")) == own
    assert sorted(b["metadata"]["name"] for b in of_kind(objs, "RoleBinding")) == own


def test_the_seal_role_reads_one_secret_of_the_operator_namespace() -> None:
    """The seal key's Secret: get by name, create (RBAC cannot name what is created), in the
    release namespace only; the operator learns where from the downward API."""
    objs = render("--set-json", 'watchNamespaces=["a"]')
    role = only(objs, "Role", "modelreg-seal")
    assert role["metadata"]["namespace"] == NS
    assert role["rules"] == [
        {"apiGroups": [CORE], "resources": ["secrets"], "resourceNames": ["modelreg-seal"],
         "verbs": ["get"]},
        {"apiGroups": [CORE], "resources": ["secrets"], "verbs": ["create"]},
    ]  # fmt: skip
    binding = only(objs, "RoleBinding", "modelreg-seal")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "modelreg", "namespace": NS}]
    (c,) = only(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["MODELREG_SEAL_SECRET"]["value"] == "modelreg-seal"
    assert env["MODELREG_SEAL_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert env["MODELREG_ALLOW_AMBIENT_CREDENTIALS"]["value"] == "false"
    assert env["MODELREG_ALLOWED_ENDPOINT_HOSTS"]["value"] == "[]"


def test_endpoint_and_credential_policy_values_reach_the_operator() -> None:
    objs = render(
        "--set-json", 'operator.allowedEndpointHosts=["s3.internal:9000","*.corp.example"]',
        "--set", "operator.allowAmbientCredentials=true",
        "--set", "operator.artifactConfirmSeconds=60",
    )  # fmt: skip
    (c,) = only(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert json.loads(env["MODELREG_ALLOWED_ENDPOINT_HOSTS"]) == [
        "s3.internal:9000",
        "*.corp.example",
    ]
    assert env["MODELREG_ALLOW_AMBIENT_CREDENTIALS"] == "true"
    assert env["MODELREG_ARTIFACT_CONFIRM_SECONDS"] == "60"


def test_advisory_and_webhook_values_reach_the_operator() -> None:
    objs = render(
        "--set-json", 'operator.advisories={"volume":{"configMap":{"name":"osv-pypi"}},"file":"all.zip"}',
        "--set-json", 'operator.notificationAllowedHosts=["hooks.internal:8080"]',
    )  # fmt: skip
    pod = only(objs, "Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MODELREG_ADVISORY_DATABASE"] == "/var/lib/modelreg/advisories/all.zip"
    assert env["MODELREG_ADVISORY_REFRESH_SECONDS"] == "3600"
    assert json.loads(env["MODELREG_NOTIFICATION_ALLOWED_HOSTS"]) == ["hooks.internal:8080"]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "advisories")
    assert (mount["mountPath"], mount["readOnly"]) == ("/var/lib/modelreg/advisories", True)
    volume = next(v for v in pod["volumes"] if v["name"] == "advisories")
    assert volume["configMap"] == {"name": "osv-pypi"}
    # Without a volume: no operator-wide database, nothing mounted.
    (c,) = only(render(), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "MODELREG_ADVISORY_DATABASE" not in {e["name"] for e in c["env"]}
    assert [m["name"] for m in c["volumeMounts"]] == ["tmp"]


def test_stage_audit_policy_stamps_modelversions_and_can_be_turned_off() -> None:
    policy = only(render(), "MutatingAdmissionPolicy", "modelreg-stage-audit")
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rules == [
        {
            "apiGroups": ["modelreg.dev"],
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["modelversions"],  # not modelversions/status
        }
    ]
    assert policy["spec"]["failurePolicy"] == "Fail"
    binding = only(render(), "MutatingAdmissionPolicyBinding", "modelreg-stage-audit")
    assert binding["spec"]["policyName"] == "modelreg-stage-audit"
    off = render("--set", "stageAudit.enabled=false")
    assert not [o for o in off if "stage-audit" in o["metadata"]["name"]]


def test_no_role_may_list_or_watch_secrets() -> None:
    for objs in (render(), render("--set-json", 'watchNamespaces=["a"]')):
        for role in of_kind(objs, "ClusterRole") + of_kind(objs, "Role"):
            secret_verbs = {v for g, r, v in triples(role["rules"]) if (g, r) == (CORE, "secrets")}
            allowed = {"get", "create"} if role["metadata"]["name"] == "modelreg-seal" else {"get"}
            assert secret_verbs <= allowed, (role["metadata"]["name"], secret_verbs)


def test_watch_namespaces_switches_to_namespaced_roles() -> None:
    objs = render("--set-json", 'watchNamespaces=["team-a","team-b"]')
    cluster_role = only(objs, "ClusterRole", "modelreg-operator")
    # Cluster-wide only what Kopf needs to find its resources and namespaces: no Secrets.
    assert triples(cluster_role["rules"]) == CRD_DISCOVERY | NAMESPACE_DISCOVERY
    own = ("modelreg-seal", "modelreg-leader")
    roles = [r for r in of_kind(objs, "Role") if r["metadata"]["name"] not in own]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert triples(role["rules"]) == NAMESPACED_OPERATOR_RULES
    bindings = [b for b in of_kind(objs, "RoleBinding") if b["metadata"]["name"] not in own]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for b in bindings:
        assert b["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "modelreg-operator",
        }
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "modelreg", "namespace": NS}]
    (c,) = only(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["--namespace=team-a", "--namespace=team-b"]


def test_user_roles_aggregate_and_only_the_approver_promotes() -> None:
    objs = render()
    view = only(objs, "ClusterRole", "modelreg-view")
    edit = only(objs, "ClusterRole", "modelreg-edit")
    approver = only(objs, "ClusterRole", "modelreg-approver")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert {v for _, _, v in triples(view["rules"])} == {"get", "list", "watch"}
    assert ("modelreg.dev", "modelversions", "create") in triples(edit["rules"])
    promoters = [
        r["metadata"]["name"]
        for r in of_kind(objs, "ClusterRole") + of_kind(objs, "Role")
        if any(v == "promote" for _, _, v in triples(r["rules"]))
    ]
    assert promoters == ["modelreg-approver"]
    assert ("modelreg.dev", "modelversions", "promote") in triples(approver["rules"])
    assert ("modelreg.dev", "models", "patch") in triples(approver["rules"]), "serving changes"
    assert "rbac.authorization.k8s.io/aggregate-to-edit" not in approver["metadata"]["labels"]


def test_rbac_can_be_left_to_the_user() -> None:
    objs = render(
        "--set", "rbac.create=false", "--set", "rbac.aggregateToDefaultRoles=false",
        "--set", "rbac.approver=false", "--set", "serviceAccount.create=false",
        "--set", "serviceAccount.name=existing",
    )  # fmt: skip
    assert not of_kind(objs, "ClusterRole") + of_kind(objs, "ClusterRoleBinding")
    assert not of_kind(objs, "ServiceAccount")
    assert only(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


def test_release_names_keep_cluster_scoped_objects_apart() -> None:
    out = helm("template", "team-x", str(CHART), "--namespace", "x").stdout
    names = {
        (d["kind"], d["metadata"]["name"])
        for d in yaml.safe_load_all(out)
        if d and "namespace" not in d["metadata"]
    }
    assert ("ClusterRole", "team-x-modelreg-approver") in names
    assert ("ValidatingAdmissionPolicy", "team-x-modelreg-production-approval") in names


# --------------------------------------------------------------------------------------------
# Admission policy


def test_admission_policy_gates_production_on_modelversions_only() -> None:
    objs = render()
    vap = only(objs, "ValidatingAdmissionPolicy", "modelreg-production-approval")
    spec = vap["spec"]
    assert spec["failurePolicy"] == "Fail"
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["modelversions"], "the status subresource must not be matched"
    assert rule["operations"] == ["CREATE", "UPDATE"]
    conditions = {c["name"]: c["expression"] for c in spec["matchConditions"]}
    assert "object.spec.stage == 'Production'" in conditions["asks-for-production"]
    assert "not-an-allowed-service-account" not in conditions
    (validation,) = spec["validations"]
    expr = " ".join(validation["expression"].split())
    assert "authorizer.group('modelreg.dev').resource('modelversions')" in expr
    assert ".check('promote').allowed()" in expr
    assert "modelreg-approver" in validation["message"]
    assert "modelreg-approver" in validation["messageExpression"]
    binding = only(objs, "ValidatingAdmissionPolicyBinding", "modelreg-production-approval")
    assert binding["spec"]["policyName"] == vap["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert "matchResources" not in binding["spec"], "all namespaces by default"


def test_admission_allows_the_configured_service_accounts() -> None:
    objs = render(
        "--set-json",
        'admission.allowedServiceAccounts=[{"namespace":"argocd","name":"argocd-application-controller"}]',
        "--set-json",
        'admission.namespaceSelector={"matchLabels":{"team":"risk"}}',
    )
    spec = only(objs, "ValidatingAdmissionPolicy", "modelreg-production-approval")["spec"]
    conditions = {c["name"]: c["expression"] for c in spec["matchConditions"]}
    assert conditions["not-an-allowed-service-account"] == (
        '!(request.userInfo.username in ["system:serviceaccount:argocd:argocd-application-controller"])'
    )
    assert (
        "system:serviceaccount:argocd:argocd-application-controller"
        in spec["validations"][0]["message"]
    )
    for binding in of_kind(objs, "ValidatingAdmissionPolicyBinding"):
        assert binding["spec"]["matchResources"] == {
            "namespaceSelector": {"matchLabels": {"team": "risk"}}
        }, binding["metadata"]["name"]
    serving = only(objs, "ValidatingAdmissionPolicy", "modelreg-serving-approval")["spec"]
    conditions = {c["name"]: c["expression"] for c in serving["matchConditions"]}
    assert "argocd-application-controller" in conditions["not-an-allowed-service-account"]
    status = only(objs, "ValidatingAdmissionPolicy", "modelreg-status-writer")["spec"]
    assert "matchConditions" not in status, "no service account but the operator's writes status"


def test_serving_approval_gates_models_per_staged_version() -> None:
    objs = render()
    vap = only(objs, "ValidatingAdmissionPolicy", "modelreg-serving-approval")
    spec = vap["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["paramKind"] == {"apiVersion": "modelreg.dev/v1alpha1", "kind": "ModelVersion"}
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["models"]
    assert rule["operations"] == ["CREATE", "UPDATE"]
    (condition,) = spec["matchConditions"]
    expr = " ".join(condition["expression"].split())
    assert expr.startswith("oldObject == null ||"), "a create is always checked"
    for field in ("serving", "promotion", "storage"):
        assert f"object.?spec.?{field} != oldObject.?spec.?{field}" in expr
    variables = {v["name"]: " ".join(v["expression"].split()) for v in spec["variables"]}
    assert "params.spec.model == object.metadata.name" in variables["gated"]
    assert "params.?status.?stage" in variables["stage"]
    assert "params.spec.?stage" in variables["stage"]
    (validation,) = spec["validations"]
    expr = " ".join(validation["expression"].split())
    assert expr.startswith("!variables.gated ||")
    assert ".name(params.metadata.name) .check('promote').allowed()" in expr
    assert "modelreg-approver" in validation["messageExpression"]
    binding = only(objs, "ValidatingAdmissionPolicyBinding", "modelreg-serving-approval")
    assert binding["spec"]["policyName"] == vap["metadata"]["name"]
    assert binding["spec"]["paramRef"] == {"selector": {}, "parameterNotFoundAction": "Allow"}
    assert binding["spec"]["validationActions"] == ["Deny"]


def test_status_is_written_by_the_operator_service_account_alone() -> None:
    objs = render("--set", "serviceAccount.name=mr-operator")
    vap = only(objs, "ValidatingAdmissionPolicy", "modelreg-status-writer")
    spec = vap["spec"]
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["models/status", "modelversions/status"]
    assert rule["operations"] == ["UPDATE"]
    (validation,) = spec["validations"]
    operator = f"system:serviceaccount:{NS}:mr-operator"
    assert validation["expression"] == f"request.userInfo.username == '{operator}'"
    assert operator in validation["messageExpression"]
    binding = only(objs, "ValidatingAdmissionPolicyBinding", "modelreg-status-writer")
    assert binding["spec"]["policyName"] == vap["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    # ...and no role for people grants a write on a status subresource.
    for role in of_kind(objs, "ClusterRole"):
        if role["metadata"]["name"] in ("modelreg-view", "modelreg-edit", "modelreg-approver"):
            writes = {
                (r, v)
                for _, r, v in triples(role["rules"])
                if r.endswith("/status") and v not in ("get", "list", "watch")
            }
            assert not writes, (role["metadata"]["name"], writes)


def test_admission_can_be_disabled() -> None:
    objs = render("--set", "admission.enabled=false")
    assert not of_kind(objs, "ValidatingAdmissionPolicy")
    assert not of_kind(objs, "ValidatingAdmissionPolicyBinding")


# --------------------------------------------------------------------------------------------
# CRDs


def test_crds_are_templates_kept_on_uninstall_by_default() -> None:
    crds = of_kind(render(), "CustomResourceDefinition")
    assert sorted(c["metadata"]["name"] for c in crds) == [
        "models.modelreg.dev",
        "modelversions.modelreg.dev",
    ]
    generated = {
        yaml.safe_load(p.read_text())["metadata"]["name"]: yaml.safe_load(p.read_text())
        for p in (REPO / "crds").glob("*.yaml")
    }
    for crd in crds:
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/part-of"] == "modelreg"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert crd["spec"] == generated[crd["metadata"]["name"]]["spec"], "the spec is unchanged"
    assert not (CHART / "crds").exists(), "a chart's crds/ directory is never upgraded by Helm"


def test_crds_keep_and_enabled_switches() -> None:
    crds = of_kind(render("--set", "crds.keep=false"), "CustomResourceDefinition")
    assert len(crds) == 2
    assert all("annotations" not in c["metadata"] for c in crds)
    assert not of_kind(render("--set", "crds.enabled=false"), "CustomResourceDefinition")
    waved = of_kind(
        render("--set-json", 'crds.annotations={"argocd.argoproj.io/sync-wave":"-1"}'),
        "CustomResourceDefinition",
    )
    for crd in waved:
        assert crd["metadata"]["annotations"] == {
            "argocd.argoproj.io/sync-wave": "-1",
            "helm.sh/resource-policy": "keep",
        }


# --------------------------------------------------------------------------------------------
# Values schema


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--set", "crds.enabeld=true"], "enabeld"),
        (["--set", "operator.replicas=2"], "replicas"),
        (["--set", "typo=1"], "typo"),
        (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
        (["--set-json", 'watchNamespaces=["Team_A"]'], "watchNamespaces"),
        (["--set-json", 'admission.allowedServiceAccounts=[{"name":"x"}]'], "namespace"),
        (["--set", "admission.failurePolicy=Maybe"], "failurePolicy"),
        (["--set", "metrics.port=99999"], "port"),
    ],
)
def test_values_schema_rejects_typos_and_bad_values(args: list[str], complaint: str) -> None:
    proc = helm("template", "modelreg", str(CHART), *args, check=False)
    assert proc.returncode != 0, f"helm accepted {args}"
    assert complaint in proc.stderr, proc.stderr


def test_schema_and_values_agree() -> None:
    """Every key in values.yaml is declared (the schema is strict, so this is the default render)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["crds"]["keep"] is True
    assert render()  # renders with the defaults: values.yaml satisfies the strict schema


def test_two_replicas_get_a_disruption_budget_anti_affinity_and_only_their_lease() -> None:
    objs = render("--set", "replicaCount=2")
    dep = only(objs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    anti = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = dep["spec"]["selector"]["matchLabels"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    pdb = only(objs, "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": selector}}
    leader = only(objs, "Role", "modelreg-leader")
    assert leader["metadata"]["namespace"] == NS
    binding = only(objs, "RoleBinding", "modelreg-leader")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "modelreg", "namespace": NS}]
    assert leader["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["modelreg"],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]
    off = render("--set", "replicaCount=2", "--set", "operator.podDisruptionBudget.enabled=false")
    assert not of_kind(off, "PodDisruptionBudget")
    own = render("--set", "replicaCount=2", "--set-json", 'operator.affinity={"nodeAffinity": {}}')
    assert only(own, "Deployment")["spec"]["template"]["spec"]["affinity"] == {"nodeAffinity": {}}


def test_the_web_ui_is_off_by_default_and_read_only_with_its_own_role() -> None:
    assert not [o for o in render() if o["metadata"]["name"].endswith("-ui")]
    objs = render("--set", "ui.enabled=true", "--set", "ui.namespace=team-a")
    name = "modelreg-ui"
    role = only(objs, "Role", name)
    assert role["metadata"]["namespace"] == "team-a"
    assert {verb for _, _, verb in triples(role["rules"])} == {"get", "list", "watch"}
    assert not any(res == "secrets" for _, res, _ in triples(role["rules"]))
    binding = only(objs, "RoleBinding", name)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": NS}]
    pod = only(objs, "Deployment", name)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == name
    [c] = pod["containers"]
    assert c["command"][:5] == ["python", "-m", "modelreg.cli", "ui", "--in-cluster"]
    assert c["command"][-2:] == ["-n", "team-a"]
    assert "--as" not in c["command"]  # it never impersonates
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    # Its pods are not the operator's: the operator's selectors leave them out.
    ui_labels = only(objs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
    op_selector = only(objs, "Deployment", "modelreg")["spec"]["selector"]["matchLabels"]
    assert not op_selector.items() <= ui_labels.items()
    svc = only(objs, "Service", name)
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"].items() <= ui_labels.items()
    bad = helm("template", "modelreg", str(CHART), "--set", "ui.enabled=true", "--set",
               "ui.namespace=Not_A_Namespace", check=False)  # fmt: skip
    assert bad.returncode != 0
    assert "/ui/namespace" in bad.stderr


def test_the_custom_metrics_api_is_off_by_default_and_holds_only_what_it_needs() -> None:
    assert not of_kind(render(), "APIService")
    objs = render("--set", "metricsApi.enabled=true", "--set", "watchNamespaces={team-a}")
    name = "modelreg-metrics-api"
    api = only(objs, "APIService", "v1beta2.custom.metrics.k8s.io")
    assert api["spec"]["service"] == {"name": name, "namespace": NS, "port": 443}
    # The server writes its own CA there: the chart leaves it out, so no upgrade or sync undoes it.
    assert "caBundle" not in api["spec"]
    assert not api["spec"].get("insecureSkipTLSVerify")
    pod = only(objs, "Deployment", name)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == name
    [c] = pod["containers"]
    assert c["command"][:3] == ["python", "-m", "modelreg.metricsapi"]
    assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    # Pods are listed only in the watched namespace; the cluster role names its one APIService.
    cluster = only(objs, "ClusterRole", name)
    assert triples(cluster["rules"]) == expand("apiregistration.k8s.io", "apiservices", "get patch")
    assert cluster["rules"][0]["resourceNames"] == ["v1beta2.custom.metrics.k8s.io"]
    pods = [r for r in of_kind(objs, "Role") if r["metadata"]["name"] == name]
    by_ns = {r["metadata"]["namespace"]: triples(r["rules"]) for r in pods}
    assert by_ns["team-a"] == {("", "pods", "list")}
    assert by_ns[NS] == {
        ("", "secrets", "create"),
        ("", "secrets", "get"),
        ("", "secrets", "patch"),
    }
    delegated = only(objs, "ClusterRoleBinding", f"{name}:system:auth-delegator")
    assert delegated["roleRef"]["name"] == "system:auth-delegator"
    reader = only(objs, "RoleBinding", f"{name}-auth-reader")
    assert reader["metadata"]["namespace"] == "kube-system"
    assert reader["roleRef"]["name"] == "extension-apiserver-authentication-reader"
    svc = only(objs, "Service", name)
    labels = only(objs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    op_selector = only(objs, "Deployment", "modelreg")["spec"]["selector"]["matchLabels"]
    assert not op_selector.items() <= labels.items()


def mebibytes(q: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for suffix, factor in units.items():
        if q.endswith(suffix):
            return float(q[: -len(suffix)]) * factor
    return float(q) / 2**20


def test_the_operators_default_memory_fits_the_measured_sizing_table() -> None:
    """The chart states the versions its default memory is for; bench/sizing.json (written by
    `make bench`'s scale runs) says what limit that many versions need, from their peak RSS."""
    table = json.loads((REPO / "bench" / "sizing.json").read_text())
    values = (CHART / "values.yaml").read_text()
    stated = re.search(r"sized for up to ([\d,]+) versions", values)
    assert stated, "values.yaml must say what the operator's resources are sized for"
    capacity = int(stated.group(1).replace(",", ""))
    rows = sorted(
        (r for r in table["rows"] if r["versions"] >= capacity), key=lambda r: r["versions"]
    )
    assert rows, f"bench/sizing.json measured no run of {capacity:,} versions or more: make bench"
    [container] = only(render(), "Deployment", "modelreg")["spec"]["template"]["spec"]["containers"]
    resources = container["resources"]
    limit = mebibytes(resources["limits"]["memory"])
    assert limit >= rows[0]["limit_mib"], (
        f"the default memory limit {resources['limits']['memory']} is below the "
        f"{rows[0]['limit_mib']}Mi that {rows[0]['versions']:,} versions need "
        f"(peak {rows[0]['peak_rss_mib']} MiB)"
    )
    assert mebibytes(resources["requests"]["memory"]) <= limit
    # Larger registries are told what to set: the docs show the same table's figures.
    docs = (REPO / "docs" / "operator.md").read_text()
    assert f"sized for up to {capacity:,} versions" in docs
    for row in table["rows"]:
        assert f"| {row['versions']:,} | {row['limit_mib']}Mi |" in docs, row
