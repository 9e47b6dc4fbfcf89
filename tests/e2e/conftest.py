"""Session fixtures of the e2e suite: a real Kubernetes API server and a real S3 server.

Resolution of the cluster, in order: `--kubeconfig PATH`; else $KUBECONFIG when it names a file
other than the project's own `.dev/kubeconfig` (a kind cluster on a laptop, say; S3 then comes from
MODELREG_S3_* / AWS_* variables); else the embedded environment, started by `tools/cluster.sh up`
when it is not running. When the cluster cannot be had, the tests FAIL with the reason; they never
skip silently. Each test gets a fresh namespace, deleted afterwards.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from demo.devenv import read_env_file

from tests.e2e.helpers import DEV, REPO, S3, Kubectl, OperatorProcess, wait_for


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kubeconfig",
        default=None,
        help="use this existing cluster instead of the embedded local one",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def _external_kubeconfig(config: pytest.Config) -> str | None:
    given = config.getoption("--kubeconfig")
    if given:
        return str(Path(given).expanduser().resolve())
    env = os.environ.get("KUBECONFIG")
    if env and Path(env).expanduser().resolve() != (DEV / "kubeconfig").resolve():
        return str(Path(env).expanduser().resolve())
    return None


@pytest.fixture(scope="session")
def kubeconfig(pytestconfig: pytest.Config) -> str:
    external = _external_kubeconfig(pytestconfig)
    if external:
        if not Path(external).is_file():
            pytest.fail(f"--kubeconfig/KUBECONFIG names {external}, which does not exist")
        return external
    proc = subprocess.run(
        ["bash", str(REPO / "tools" / "cluster.sh"), "up"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            "the local control plane could not be started (tools/cluster.sh up):\n"
            + proc.stdout
            + proc.stderr
        )
    return str(DEV / "kubeconfig")


def _kubectl_binary() -> str:
    local = DEV / "bin" / "kubectl"
    if local.exists():
        return str(local)
    from shutil import which

    found = which("kubectl")
    if not found:
        pytest.fail("kubectl not found: run 'make tools' (it links .dev/bin/kubectl)")
    return found


@pytest.fixture(scope="session")
def kubectl(kubeconfig: str) -> Kubectl:
    k = Kubectl(kubeconfig=kubeconfig, binary=_kubectl_binary())
    # Our CRDs, current with this checkout, in every session.
    k("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    k(
        "wait",
        "--for=condition=Established",
        "crd/models.modelreg.dev",
        "crd/modelversions.modelreg.dev",
    )
    return k


@pytest.fixture(scope="session")
def s3(kubeconfig: str) -> S3:
    env_file = DEV / "s3.env"
    values = dict(os.environ)
    if env_file.exists() and _is_local(kubeconfig):
        values.update(read_env_file(env_file))
    missing = [
        k
        for k in ("MODELREG_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        if not values.get(k)
    ]
    if missing:
        pytest.fail(f"no S3 server configured: {', '.join(missing)} unset and no {env_file}")
    return S3(
        endpoint=values["MODELREG_S3_ENDPOINT"],
        bucket=values.get("MODELREG_S3_BUCKET", "models"),
        access_key_id=values["AWS_ACCESS_KEY_ID"],
        secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
        region=values.get("AWS_REGION", "us-east-1"),
    )


def _is_local(kubeconfig: str) -> bool:
    return Path(kubeconfig).resolve() == (DEV / "kubeconfig").resolve()


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    slug = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    ns = f"e2e-{slug}-{secrets.token_hex(3)}"
    kubectl("create", "namespace", ns)
    wait_for(
        lambda: (
            kubectl.run("-n", ns, "get", "serviceaccount", "default", check=False).returncode == 0
        ),
        timeout=30,
        what=f"the default ServiceAccount in {ns}",
    )
    yield ns
    kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found")


@pytest.fixture
def s3_secret(kubectl: Kubectl, namespace: str, s3: S3) -> str:
    """A Secret with the S3 credentials in the test's namespace; returns its name."""
    kubectl(
        "-n",
        namespace,
        "create",
        "secret",
        "generic",
        "s3-credentials",
        f"--from-literal=AWS_ACCESS_KEY_ID={s3.access_key_id}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={s3.secret_access_key}",
    )
    return "s3-credentials"


@pytest.fixture
def operator(kubeconfig: str, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The operator as a local process watching only this test's namespace."""
    op = OperatorProcess(
        kubeconfig=kubeconfig, namespaces=[namespace], log_path=tmp_path / "operator.log"
    ).start()
    yield op
    op.stop()
    if op.log_path.exists():
        # Visible in pytest's report of a failing test.
        print(f"--- operator log ({op.log_path}) ---\n{op.log()[-20000:]}")
