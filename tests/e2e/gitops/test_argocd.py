"""GitOps with the real Argo CD, driven only by git commits (never by kubectl on our objects).

One repository holds what a platform team keeps in Git: the chart (charts/modelreg), two Argo CD
Applications made from manifests/argocd (the chart, wave -1; the samples, wave 1) and the sample
Model and its versions, one file per version, made from manifests/samples. An app of apps
(`gitops-root`, the one object applied by hand, as users bootstrap) syncs the two Applications.
The operator runs from the chart in its pod and the serving pods run on the real node, with a
real ONNX model verified in the S3 server. The tests run in order on that one installation:

1. install by sync waves: the operator is Available before the samples Application exists, and
   all three Applications reach Synced and Healthy; a prediction comes through the Service;
2. replace by commit (v1.yaml deleted, v2.yaml added in Production, automated prune with
   PruneLast): production hands over with no failed request, and Argo CD pruned v1 only after v2
   served, and never reported Degraded;
3. promotion by commit: Progressing (Argo CD's own health, from the Lua check) while the version
   verifies and rolls out, then Healthy when it serves; Ready and Archived versions are Healthy;
4. no drift: Synced through three resyncs while the operator writes status and Events;
5. a bad commit (wrong sha256) is Degraded with the Blocked message in Argo CD's resource health;
   its revert is Healthy again;
6. approval: with Argo CD's ServiceAccount out of admission.allowedServiceAccounts, a promoting
   commit fails to sync with the policy's message; put back, the same change syncs;
7. a force-push from a diverged clone is rejected with git's message; Argo CD keeps its revision.
"""

from __future__ import annotations

import copy
import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from demo.devenv import ON_REAL_NODE
from tests.e2e.gitops.conftest import ARGOCD, ArgoCD, GitRepo
from tests.e2e.helpers import REPO, S3, Kubectl, wait_for
from tests.e2e.real.conftest import IMAGE, RESTRICTED, record
from tests.e2e.real.serving import Load, Onnx, answers, cluster_ip, onnx_model

__all__ = ["onnx_model"]  # the fixture, imported for pytest

ROOT, CHART_APP, SAMPLES_APP = "gitops-root", "modelreg", "modelreg-samples"
MODEL = "iris"
ARGOCD_SA = {"namespace": ARGOCD, "name": "argocd-application-controller"}


def _load(path: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((REPO / path).read_text()) if d]


@dataclass
class Site:
    """The installation under test, and what it takes to write its repository."""

    repo: GitRepo
    argocd: ArgoCD
    kubectl: Kubectl
    s3: S3
    onnx: Onnx
    system: str  # the operator's namespace (the chart Application's destination)
    apps: str  # where the Model lives (the samples Application's destination)
    shas: dict[int, str] = field(default_factory=dict)
    journal: list[str] = field(default_factory=list)  # what each test did, for a failure's report

    # -- the repository's files, made from the project's own manifests ---------------------------

    def chart_app(self, *, argocd_may_promote: bool = True) -> dict[str, Any]:
        app = copy.deepcopy(_load("manifests/argocd/modelreg.yaml")[0])
        app["spec"]["source"].update(repoURL=self.repo.url, targetRevision="main")
        app["spec"]["destination"]["namespace"] = self.system
        repo, _, tag = IMAGE.rpartition(":")
        values = app["spec"]["source"]["helm"]["valuesObject"]
        values.update(
            image={"repository": repo, "tag": tag, "pullPolicy": "IfNotPresent"},
            watchNamespaces=[self.apps],
            operator=ON_REAL_NODE,
        )
        # Only this run's namespace is policed: the rest of the suite shares the cluster.
        values["admission"]["namespaceSelector"] = {
            "matchLabels": {"kubernetes.io/metadata.name": self.apps}
        }
        if not argocd_may_promote:
            values["admission"]["allowedServiceAccounts"] = []
        return app

    def samples_app(self) -> dict[str, Any]:
        app = copy.deepcopy(_load("manifests/argocd/samples.yaml")[0])
        app["spec"]["source"].update(repoURL=self.repo.url, targetRevision="main", path="samples")
        app["spec"]["destination"]["namespace"] = self.apps
        return app

    def model(self) -> dict[str, Any]:
        doc = copy.deepcopy(_load("manifests/samples/model.yaml")[0])
        doc["spec"]["storage"].update(
            uri=f"s3://{self.s3.bucket}/{self.apps}/{MODEL}/",
            endpoint=self.s3.endpoint,
            region=self.s3.region,
        )
        doc["spec"]["serving"].update(replicas=1, **ON_REAL_NODE)
        return doc

    def version(self, n: int, stage: str, *, sha256: str | None = None) -> dict[str, Any]:
        """manifests/samples' iris-v1, as version n, with the real model uploaded for it."""
        doc = copy.deepcopy(_load("manifests/samples/modelversions.yaml")[0])
        key = f"{self.apps}/{MODEL}/{n}/model.onnx"
        if n not in self.shas:
            self.shas[n] = self.s3.put(key, self.onnx.data)
        doc["metadata"]["name"] = f"{MODEL}-v{n}"
        doc["spec"].update(version=n, stage=stage)
        doc["spec"]["artifact"].update(
            uri=f"s3://{self.s3.bucket}/{key}", sha256=sha256 or self.shas[n]
        )
        return doc

    def put_version(self, n: int, stage: str, **kw: Any) -> None:
        self.repo.write(f"samples/v{n}.yaml", self.version(n, stage, **kw))

    # -- the cluster, read ------------------------------------------------------------------------

    def mv(self, n: int) -> dict[str, Any]:
        return self.kubectl.get("mv", f"{MODEL}-v{n}", self.apps) or {}

    def phase(self, n: int) -> str:
        return str((self.mv(n).get("status") or {}).get("phase", ""))

    def converged(self, sha: str, timeout: float = 300) -> None:
        for app in (ROOT, CHART_APP, SAMPLES_APP):
            self.argocd.wait_converged(app, sha, timeout=timeout)

    def mv_health(self, n: int) -> tuple[str, str]:
        return self.argocd.health(SAMPLES_APP, "ModelVersion", f"{MODEL}-v{n}")

    def host(self) -> str:
        return cluster_ip(self.kubectl, self.apps, MODEL)


def assert_health(site: Site, n: int, status: str, phase: str) -> None:
    """Argo CD's resource health of version n: `status`, with a message naming `phase` first."""
    got, message = site.mv_health(n)
    assert (got, message.split(":")[0]) == (status, phase), (got, message)


def root_app(repo: GitRepo) -> dict[str, Any]:
    """The app of apps: the Applications under apps/ of the repository, synced with prune."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": ROOT, "namespace": ARGOCD},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo.url, "targetRevision": "main", "path": "apps"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": ARGOCD},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
        },
    }


@pytest.fixture(scope="module")
def site(
    argocd: ArgoCD,
    git_repo: GitRepo,
    kubectl: Kubectl,
    node_s3: S3,
    image: str,
    onnx_model: Onnx,
) -> Iterator[Site]:
    assert image == IMAGE
    tag = secrets.token_hex(3)
    s = Site(
        repo=git_repo,
        argocd=argocd,
        kubectl=kubectl,
        s3=node_s3,
        onnx=onnx_model,
        system=f"gitops-sys-{tag}",
        apps=f"gitops-apps-{tag}",
    )
    # Credentials never go to Git: the Secret the Model names is made beside it, by hand.
    kubectl("create", "namespace", s.apps)
    kubectl("label", "namespace", s.apps, RESTRICTED)
    kubectl(
        "-n", s.apps, "create", "secret", "generic", "s3-credentials",
        f"--from-literal=AWS_ACCESS_KEY_ID={node_s3.access_key_id}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={node_s3.secret_access_key}",
    )  # fmt: skip
    shutil.copytree(REPO / "charts" / "modelreg", git_repo.work / "charts" / "modelreg")
    git_repo.write("apps/modelreg.yaml", s.chart_app())
    git_repo.write("apps/samples.yaml", s.samples_app())
    git_repo.write("samples/model.yaml", s.model())
    s.put_version(1, "Production")
    try:
        yield s
    finally:
        _teardown(s)


def _teardown(s: Site) -> None:
    logs = s.kubectl.run(
        "-n", s.system, "logs", "deploy/modelreg", "--tail=300", check=False
    ).stdout  # fmt: skip
    print(f"--- operator log ---\n{logs}\n--- journal ---\n" + "\n".join(s.journal))
    for app in (ROOT, CHART_APP, SAMPLES_APP):
        print(f"--- {app} ---\n{s.argocd.describe(app)}")
    # Deleting the root cascades (resources finalizers): the samples, then the chart, are pruned.
    # The CRDs stay (Delete=false on them): every other Model in the cluster keeps its versions.
    s.kubectl.run(
        "-n", ARGOCD, "delete", "application", ROOT, "--wait=true", "--timeout=180s", check=False,
        timeout=200,
    )  # fmt: skip
    for app in (CHART_APP, SAMPLES_APP):
        s.kubectl.run(
            "-n", ARGOCD, "delete", "application", app, "--wait=true", "--timeout=120s",
            "--ignore-not-found", check=False, timeout=140,
        )  # fmt: skip
    for ns in (s.apps, s.system):
        s.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found")


# -- 1. install -----------------------------------------------------------------------------------


def test_install_by_sync_waves_to_a_prediction(site: Site) -> None:
    sha = site.repo.commit(
        "modelreg: the chart, its Applications and the iris samples (v1 in Production)"
    )
    t0 = time.monotonic()
    site.kubectl.apply(root_app(site.repo))
    site.converged(sha, timeout=420)
    record("gitops_bootstrap_to_healthy_seconds", time.monotonic() - t0)

    # Wave -1 before wave 1: the operator was Available before the samples Application existed,
    # and the Model was created after both.
    deploy = site.kubectl.get("deployment", "modelreg", site.system)
    assert deploy is not None, f"no operator Deployment in {site.system}"
    available = {c["type"]: c for c in deploy["status"]["conditions"]}["Available"]
    samples = site.argocd.app(SAMPLES_APP)
    model = site.kubectl.get("model", MODEL, site.apps)
    assert model is not None
    assert available["status"] == "True"
    assert available["lastTransitionTime"] <= samples["metadata"]["creationTimestamp"]
    assert samples["metadata"]["creationTimestamp"] <= model["metadata"]["creationTimestamp"]
    # The CRDs carry wave -1 and Delete=false (uninstalling the app must not delete every Model).
    crd = site.kubectl.get("crd", "modelversions.modelreg.dev")
    assert crd is not None
    annotations = crd["metadata"]["annotations"]
    assert annotations.get("argocd.argoproj.io/sync-wave") == "-1", annotations
    assert annotations.get("argocd.argoproj.io/sync-options") == "Delete=false", annotations

    assert site.phase(1) == "Serving"
    assert_health(site, 1, "Healthy", "Serving")
    assert site.argocd.health(SAMPLES_APP, "Model", MODEL)[0] == "Healthy"
    expected = site.onnx.expected()
    wait_for(
        lambda: answers(site.host(), MODEL, site.onnx.request(), expected),
        timeout=60,
        what="a correct prediction from v1 through the Service",
    )


# -- 2. replace -----------------------------------------------------------------------------------


def _watch(site: Site, until: Any, timeout: float, what: str) -> list[tuple[str, str, str, str]]:
    """Poll the samples Application until `until()`; the distinct (app health, version health,
    the version's phase, the Model's health and message) seen, all as Argo CD reports them."""
    seen: list[tuple[str, str, str, str]] = []

    def step() -> bool:
        app_health = site.argocd.state(SAMPLES_APP)[1]
        model = ":".join(site.argocd.health(SAMPLES_APP, "Model", MODEL))
        for n in (2, 3, 4):
            status, message = site.mv_health(n)
            entry = (app_health, f"v{n}:{status}", message.split(":")[0], model)
            if status and (not seen or seen[-1] != entry) and entry not in seen[-6:]:
                seen.append(entry)
        return bool(until())

    wait_for(step, timeout=timeout, interval=0.2, what=f"{what}; seen {seen}")
    return seen


def test_replace_by_commit_hands_over_without_a_gap(site: Site) -> None:
    load = Load(site.host(), MODEL, site.onnx.request(), site.onnx.expected(), max_seconds=300)
    load.start()
    try:
        load.wait_serving(1)
        site.repo.remove("samples/v1.yaml")
        site.put_version(2, "Production")
        sha = site.repo.commit("iris: v2 replaces v1 in production")
        seen = _watch(
            site,
            lambda: site.argocd.converged(SAMPLES_APP, sha) and site.phase(2) == "Serving",
            timeout=300,
            what="v2 Serving and the samples Application Synced/Healthy",
        )
        load.wait_serving(2)
        time.sleep(2)
    finally:
        load.stop()
    site.journal.append(
        f"replace: {seen}; load ok={load.ok} failed={len(load.failures)} by version {load.versions}"
    )
    assert load.failures == [], f"{len(load.failures)} of {load.total} failed: {load.failures[:5]}"
    assert load.ok > 50, load.versions
    assert load.versions["1"] > 0, load.versions
    assert load.versions["2"] > 0, load.versions
    # Argo CD's side: v1 was pruned by the sync of this very commit, and the app was never Degraded
    # or Missing while v2 took over.
    op = site.argocd.app(SAMPLES_APP)["status"]["operationState"]
    assert op["syncResult"]["revision"] == sha
    pruned = [
        r
        for r in op["syncResult"]["resources"]
        if r["kind"] == "ModelVersion" and r["name"] == f"{MODEL}-v1"
    ]
    assert [r["status"] for r in pruned] == ["Pruned"], op["syncResult"]["resources"]
    assert not site.argocd.resource(SAMPLES_APP, "ModelVersion", f"{MODEL}-v1")
    assert all(h not in ("Degraded", "Missing") for h, *_ in seen), seen
    wait_for(
        lambda: site.kubectl.get("deployment", f"{MODEL}-v1", site.apps) is None,
        timeout=60,
        what="v1's Deployment removed once v2 serves",
    )


# -- 3. promote -----------------------------------------------------------------------------------


def test_promotion_by_commit_is_progressing_then_healthy(site: Site) -> None:
    site.put_version(3, "Staging")
    sha = site.repo.commit("iris: v3 to Staging")
    site.converged(sha)
    assert site.phase(3) == "Ready"
    assert_health(site, 3, "Healthy", "Ready")

    site.put_version(3, "Production")
    site.put_version(2, "Archived")
    sha = site.repo.commit("iris: promote v3 to Production, archive v2")
    seen = _watch(
        site,
        lambda: site.argocd.converged(SAMPLES_APP, sha) and site.phase(3) == "Serving",
        timeout=300,
        what="v3 Serving and the samples Application Synced/Healthy",
    )
    site.journal.append(f"promote: {seen}")
    # Argo CD's own resource health of the version, from the Lua check, as the rollout went on.
    v3 = [(status, phase) for _, status, phase, _ in seen if status == "v3:Progressing"]
    assert v3, f"Argo CD never reported v3 Progressing: {seen}"
    assert {p for _, p in v3} & {"Verifying", "Rolling"}, seen
    assert any(h == "Progressing" for h, *_ in seen), f"the app was never Progressing: {seen}"
    # A promotion is not a fault: neither the app nor the Model is ever Degraded on the way.
    assert all(h != "Degraded" and not m.startswith("Degraded") for h, _, _, m in seen), seen
    assert_health(site, 3, "Healthy", "Serving")
    wait_for(lambda: site.phase(2) == "Archived", timeout=60, what="v2 Archived after v3 serves")
    wait_for(
        lambda: site.mv_health(2)[0] == "Healthy" and site.mv_health(2)[1].startswith("Archived"),
        timeout=60,
        what=f"Argo CD's health of v2 Healthy/Archived: {site.mv_health(2)}",
    )
    assert site.argocd.state(SAMPLES_APP)[1] == "Healthy"
    wait_for(
        lambda: answers(site.host(), MODEL, site.onnx.request(), site.onnx.expected()),
        timeout=60,
        what="a correct prediction through the Service after the promotion",
    )


# -- 4. no drift ----------------------------------------------------------------------------------


def test_no_drift_over_three_resyncs_while_the_operator_writes(site: Site) -> None:
    apps = (ROOT, CHART_APP, SAMPLES_APP)
    history = {a: len(site.argocd.app(a)["status"].get("history") or []) for a in apps}
    reconciled: dict[str, set[str]] = {a: set() for a in apps}
    written_before = site.mv(3)["metadata"]["resourceVersion"]
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # Make the operator write: the serving pod goes, the version turns Unavailable, then Serving.
    pods = site.kubectl.items(
        "pods", site.apps, f"modelreg.dev/model={MODEL},modelreg.dev/version=3"
    )
    assert pods, "no serving pod of v3"
    site.kubectl("-n", site.apps, "delete", "pod", pods[0]["metadata"]["name"], "--wait=false")
    drift: list[str] = []

    def three_resyncs() -> bool:
        for a in apps:
            status = site.argocd.app(a)["status"]
            if status["sync"]["status"] != "Synced":
                drift.append(f"{a}: {status['sync']['status']} {site.argocd.describe(a)}")
            reconciled[a].add(status.get("reconciledAt", ""))
        return all(len(r) >= 4 for r in reconciled.values())

    t0 = time.monotonic()
    wait_for(
        three_resyncs,
        timeout=3 * (site.argocd.resync + 60) + 60,
        interval=1.0,
        what=f"three resyncs of every Application (seen {reconciled})",
    )
    record("gitops_three_resyncs_seconds", time.monotonic() - t0)
    assert drift == [], drift[:3]
    assert {a: len(site.argocd.app(a)["status"].get("history") or []) for a in apps} == history
    # The operator did write meanwhile: status of the version, and Events.
    assert site.mv(3)["metadata"]["resourceVersion"] != written_before
    events = [
        (e.get("reason"), e.get("lastTimestamp") or "")
        for e in site.kubectl.items("events", site.apps)
        if (e.get("source") or {}).get("component") == "modelreg-operator"
    ]
    assert [r for r, at in events if at >= since], (
        f"no Event of the operator since {since}: {events}"
    )
    wait_for(lambda: site.phase(3) == "Serving", timeout=120, what="v3 Serving again")


# -- 5. a bad commit, and its revert --------------------------------------------------------------


def test_a_bad_commit_is_degraded_and_its_revert_heals(site: Site) -> None:
    site.put_version(4, "Staging", sha256="0" * 64)
    bad = site.repo.commit("iris: v4 (with a wrong sha256)")

    def degraded() -> bool:
        status, message = site.mv_health(4)
        return (
            site.argocd.state(SAMPLES_APP)[::2] == ("Synced", bad)
            and site.argocd.state(SAMPLES_APP)[1] == "Degraded"
            and status == "Degraded"
            and message.startswith("Blocked")
        )

    wait_for(degraded, timeout=180, what=f"v4 Degraded: {site.argocd.describe(SAMPLES_APP)}")
    status, message = site.mv_health(4)
    site.journal.append(f"bad commit: {status} {message}")
    assert "sha256" in message.lower() or "checksum" in message.lower(), message
    assert site.phase(4) == "Blocked"
    assert site.phase(3) == "Serving"

    fixed = site.repo.revert(bad)
    site.converged(fixed)
    assert not site.argocd.resource(SAMPLES_APP, "ModelVersion", f"{MODEL}-v4")
    wait_for(lambda: not site.mv(4), timeout=60, what="v4 pruned")


# -- 6. approval ----------------------------------------------------------------------------------


def test_a_promotion_needs_argocd_among_the_allowed_service_accounts(site: Site) -> None:
    site.repo.write("apps/modelreg.yaml", site.chart_app(argocd_may_promote=False))
    sha = site.repo.commit("modelreg: Argo CD may no longer promote")
    site.converged(sha)

    # v4 only: v3 is not archived in the same commit. Argo CD's sync is not atomic (its dry run is
    # client-side, so admission speaks only at the real apply): v3's Archived would be applied,
    # v4 refused, and production withdrawn after the grace. docs/gitops.md says so.
    site.put_version(4, "Production")
    denied = site.repo.commit("iris: promote v4 (denied: Argo CD is not an approver now)")

    def refused() -> str | None:
        op = (site.argocd.app(SAMPLES_APP).get("status") or {}).get("operationState") or {}
        revision = (op.get("operation") or {}).get("sync", {}).get("revision") or (
            op.get("syncResult") or {}
        ).get("revision")
        if revision != denied or op.get("phase") not in ("Failed", "Error"):
            return None
        return str(op.get("message", "")) + json.dumps(op.get("syncResult") or {})

    found = wait_for(
        refused, timeout=240, what=f"the denied sync: {site.argocd.describe(SAMPLES_APP)}"
    )
    site.journal.append(f"denied: {found[:600]}")
    assert "may not set or keep spec.stage Production" in found, found
    assert "argocd-application-controller" in found, found
    assert site.mv(4).get("spec", {}).get("stage") != "Production"
    assert site.phase(3) == "Serving"
    assert site.argocd.state(SAMPLES_APP)[:2] == ("OutOfSync", "Healthy")

    site.repo.write("apps/modelreg.yaml", site.chart_app())
    allowed = site.repo.commit("modelreg: Argo CD promotes again (merges to main are the approval)")
    site.converged(allowed, timeout=300)
    wait_for(lambda: site.phase(4) == "Serving", timeout=180, what="v4 Serving")
    assert site.phase(3) == "Superseded"


# -- 7. a rejected push ----------------------------------------------------------------------------


def test_a_push_of_a_diverged_clone_is_rejected_and_argocd_keeps_its_revision(
    site: Site, tmp_path: Any
) -> None:
    """The repository is protected like a hosted main branch: a clone that missed the last
    commits cannot overwrite them. git says why, and Argo CD stays on what it synced."""
    synced = site.argocd.state(SAMPLES_APP)[2]
    stale = tmp_path / "stale"
    subprocess.run(["git", "clone", "-q", site.repo.url, str(stale)], check=True, timeout=60)
    subprocess.run(
        ["git", "-C", str(stale), "reset", "-q", "--hard", "HEAD~2"], check=True, timeout=60
    )
    (stale / "samples" / "v1.yaml").write_text("# a change made on an old checkout\n")
    for args in (
        ("add", "-A"),
        ("-c", "user.name=e2e", "-c", "user.email=e2e@modelreg.dev", "commit", "-q", "-m", "old"),
    ):
        subprocess.run(["git", "-C", str(stale), *args], check=True, timeout=60)
    push = subprocess.run(
        ["git", "-C", str(stale), "push", "--force", "origin", "HEAD:main"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert push.returncode != 0, push
    assert "non-fast-forward" in push.stderr or "rejected" in push.stderr, push.stderr
    head = subprocess.run(
        ["git", "ls-remote", site.repo.url, "refs/heads/main"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()[0]
    assert head == synced == site.repo.commits[-1], (head, synced)
    assert site.argocd.state(SAMPLES_APP)[:2] == ("Synced", "Healthy")
