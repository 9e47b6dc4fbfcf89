"""Unit tests of modelreg.sdk.environment: pinned requirements files (and their errors, with line
numbers), the running interpreter, MLflow's environment files (as MLflow writes them), the checks of
a Python version and an image digest, and how `register`'s arguments combine.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
from pathlib import Path
from typing import Any

import pytest

from modelreg.adapters.mlflow_source import environment_files
from modelreg.api.models import ENV_PACKAGES_MAX, PACKAGE_PATTERN, Environment
from modelreg.sdk import environment as envs
from modelreg.sdk.errors import EXIT_USAGE, InvalidArgument

DIGEST = "a" * 64
IMAGE = f"ghcr.io/acme/train@sha256:{DIGEST}"

# -- requirements files ------------------------------------------------------------------------------


def test_requirements_pinned_with_extras_markers_comments_options_and_hashes(
    tmp_path: Path,
) -> None:
    (tmp_path / "requirements.txt").write_text(
        "# trained with these\n"
        "--index-url https://pypi.org/simple\n"
        "--extra-index-url=https://example.com/simple\n"
        "\n"
        "numpy==1.26.4  # the inline comment goes\n"
        'scikit-learn[alldeps] == 1.3.0 ; python_version >= "3.8"\n'
        "requests==2.31.0 \\\n"
        "    --hash=sha256:aaaa \\\n"
        "    --hash=sha256:bbbb\n"
        "torch==2.1.0+cu118\n"
        "-c constraints.txt\n"
        "--pre\n"
        "Pandas==2.1.0;sys_platform=='linux'\n"
    )
    assert envs.from_requirements(tmp_path / "requirements.txt") == [
        "numpy==1.26.4",
        "Pandas==2.1.0",
        "requests==2.31.0",
        "scikit-learn==1.3.0",
        "torch==2.1.0+cu118",
    ]


def test_requirements_follow_r_relative_to_the_file_and_stop_at_cycles(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "requirements.txt").write_text("-r sub/base.txt\nxgboost==2.0.3\n")
    # base.txt names the top file again (a cycle) and a sibling twice (a diamond).
    (tmp_path / "sub" / "base.txt").write_text(
        "-r ../requirements.txt\n--requirement=extra.txt\n-rextra.txt\nnumpy==1.26.4\n"
    )
    (tmp_path / "sub" / "extra.txt").write_text("numpy==1.26.4\nscipy==1.11.4\n")
    assert envs.from_requirements(tmp_path / "requirements.txt") == [
        "numpy==1.26.4",
        "scipy==1.11.4",
        "xgboost==2.0.3",
    ]


def test_unpinned_requirements_are_refused_with_their_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("# header\nnumpy>=1.2\nscipy==1.11.4\npandas\n")
    with pytest.raises(InvalidArgument) as e:
        envs.from_requirements(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: 2 requirements are not pinned to one version with ==")
    assert "line 2 'numpy>=1.2', line 4 'pandas'" in msg
    assert "line 3" not in msg
    assert "pip freeze" in msg
    assert e.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(
    "line",
    [
        "numpy",
        "numpy>=1.2",
        "numpy~=1.26",
        "numpy==1.*",
        "numpy===1.26.4",
        "numpy==1.26.4,!=1.26.3",
        "numpy @ https://example.com/numpy-1.26.4.whl",
        "https://example.com/numpy-1.26.4.whl",
        "./wheels/numpy-1.26.4.whl",
        "git+https://github.com/numpy/numpy@v1.26.4",
        "-e .",
        "--editable=git+https://github.com/acme/pkg",
    ],
)
def test_what_cannot_be_audited(tmp_path: Path, line: str) -> None:
    path = tmp_path / "r.txt"
    path.write_text(f"scipy==1.11.4\n{line}\n")
    with pytest.raises(InvalidArgument, match=r"1 requirement is not pinned") as e:
        envs.from_requirements(path)
    assert f"line 2 '{line}'" in str(e.value)


def test_at_most_five_offending_lines_are_shown(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text("".join(f"pkg{i}>=1\n" for i in range(1, 9)))
    with pytest.raises(InvalidArgument) as e:
        envs.from_requirements(path)
    msg = str(e.value)
    assert "8 requirements are not pinned" in msg
    assert "line 5 'pkg5>=1' and 3 more;" in msg
    assert "pkg6" not in msg


def test_offending_lines_of_an_included_file_name_it(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("numpy==1.26.4\n-r more.txt\n")
    (tmp_path / "more.txt").write_text("\nscipy\n")
    with pytest.raises(InvalidArgument, match=r"more\.txt line 2 'scipy'"):
        envs.from_requirements(tmp_path / "requirements.txt")


def test_missing_files_and_remote_includes(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no such requirements file"):
        envs.from_requirements(tmp_path / "missing.txt")
    with pytest.raises(InvalidArgument, match="is a directory"):
        envs.from_requirements(tmp_path)
    path = tmp_path / "r.txt"
    path.write_text("numpy==1.26.4\n-r other.txt\n")
    with pytest.raises(
        InvalidArgument, match=r"r\.txt line 2: -r other\.txt: no such requirements"
    ):
        envs.from_requirements(path)
    path.write_text("-r https://example.com/requirements.txt\n")
    with pytest.raises(InvalidArgument, match="only local requirements files"):
        envs.from_requirements(path)
    path.write_bytes(b"numpy==1.26.4\n\xff\xfe\n")
    with pytest.raises(InvalidArgument, match="not UTF-8"):
        envs.from_requirements(path)


def test_a_file_that_pins_nothing_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text("# nothing\n--index-url https://pypi.org/simple\n\n")
    with pytest.raises(InvalidArgument, match="pins no packages"):
        envs.from_requirements(path)


def test_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text("numpy==1.26.4\nscipy==1.11.4\nNumPy==1.26.4\n")
    assert envs.from_requirements(path) == ["numpy==1.26.4", "scipy==1.11.4"]
    path.write_text("numpy==1.26.4\nscipy==1.11.4\nNumPy==2.0.0\n")
    with pytest.raises(InvalidArgument) as e:
        envs.from_requirements(path)
    assert "numpy==1.26.4 (line 1) and NumPy==2.0.0 (line 3)" in str(e.value)
    # PEP 503: scikit_learn and scikit-learn are the same project.
    path.write_text("scikit_learn==1.3.0\nscikit-learn==1.4.0\n")
    with pytest.raises(InvalidArgument, match="different versions"):
        envs.from_requirements(path)


def test_more_packages_than_a_version_records(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text("".join(f"pkg{i}==1.0\n" for i in range(ENV_PACKAGES_MAX + 1)))
    with pytest.raises(InvalidArgument, match=f"lists {ENV_PACKAGES_MAX + 1} packages, more than"):
        envs.from_requirements(path)
    path.write_text("".join(f"pkg{i}==1.0\n" for i in range(ENV_PACKAGES_MAX)))
    assert len(envs.from_requirements(path)) == ENV_PACKAGES_MAX


# -- the running interpreter --------------------------------------------------------------------------


def test_current_is_the_running_interpreter() -> None:
    env = envs.current()
    assert env.python == platform.python_version()
    assert f"pydantic=={importlib.metadata.version('pydantic')}" in env.packages
    assert f"PyYAML=={importlib.metadata.version('pyyaml')}" in env.packages
    names = [p.partition("==")[0] for p in env.packages]
    assert names == sorted(names, key=str.lower)
    assert len({envs.normalize(n) for n in names}) == len(names)
    assert all(re.match(PACKAGE_PATTERN, p) for p in env.packages)
    assert Environment.model_validate(env.wire()) == env


class _Dist:
    def __init__(self, name: str | None, version: str) -> None:
        self.metadata = {"Name": name} if name is not None else {}
        self.version = version


def test_current_deduplicates_by_normalised_name(monkeypatch: pytest.MonkeyPatch) -> None:
    dists = [_Dist("Foo_Bar", "2.0"), _Dist("zeta", "1"), _Dist("foo-bar", "1.0"), _Dist(None, "")]
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: iter(dists))
    # The first on sys.path (the one that imports) wins; a distribution without a name is none.
    assert envs.current().packages == ["Foo_Bar==2.0", "zeta==1"]


def test_current_with_too_many_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    dists = [_Dist(f"pkg{i}", "1.0") for i in range(ENV_PACKAGES_MAX + 3)]
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: iter(dists))
    with pytest.raises(InvalidArgument) as e:
        envs.current()
    assert f"lists {ENV_PACKAGES_MAX + 3} packages" in str(e.value)
    assert "requirements file" in str(e.value)


# -- checks -----------------------------------------------------------------------------------------


def test_check_python() -> None:
    assert envs.check_python(" 3.11.7 ") == "3.11.7"
    assert envs.check_python("3.12") == "3.12"
    assert envs.check_python("3.13.0rc1") == "3.13.0rc1"
    for bad in ("3", "Python 3.11.7", "3.11.x", "latest", ""):
        with pytest.raises(InvalidArgument, match=r"is not a version: give MAJOR\.MINOR"):
            envs.check_python(bad)


@pytest.mark.parametrize(
    ("image", "why"),
    [
        ("ghcr.io/acme/train:1.0", "names no digest"),
        ("ghcr.io/acme/train@sha256:abc", "must be 64 hex digits, got 3"),
        (f"ghcr.io/acme/train@sha256:{'A' * 64}", "64 lowercase hex digits"),
        (f"ghcr.io/acme/train@sha512:{DIGEST}", "must be a sha256 one"),
        (f"@sha256:{DIGEST}", "NAME@sha256:<digest>"),
        (f"acme train@sha256:{DIGEST}", "without spaces"),
        (f"{'x' * 500}@sha256:{DIGEST}", "more than 512"),
    ],
)
def test_check_image(image: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match="is not pinned by digest") as e:
        envs.check_image(image)
    assert why in str(e.value)


def test_check_image_accepts_a_digest() -> None:
    assert envs.check_image(IMAGE) == IMAGE
    assert envs.check_image(f"train:1.0@sha256:{DIGEST}") == f"train:1.0@sha256:{DIGEST}"


def test_build_and_coerce() -> None:
    env = envs.build(python="3.11.7", packages=["scipy==1.11.4", "NumPy==1.26.4"], image=IMAGE)
    assert env == Environment(
        python="3.11.7", packages=["NumPy==1.26.4", "scipy==1.11.4"], image=IMAGE
    )
    assert envs.coerce({"python": "3.11.7", "packages": ["numpy==1.26.4"]}).packages == [
        "numpy==1.26.4"
    ]
    with pytest.raises(InvalidArgument, match="'numpy>=1' is not NAME==VERSION"):
        envs.build(packages=["numpy>=1"])
    with pytest.raises(InvalidArgument, match="different versions"):
        envs.build(packages=["numpy==1", "numpy==2"])
    with pytest.raises(InvalidArgument, match="unknown field"):
        envs.coerce({"pkgs": []})
    with pytest.raises(InvalidArgument, match="list of 'name==version'"):
        envs.coerce({"packages": "numpy==1.26.4"})
    with pytest.raises(InvalidArgument, match="must be a string"):
        envs.coerce({"python": 3.11})
    # An Environment built without validation is checked too.
    with pytest.raises(InvalidArgument, match="is not a version"):
        envs.coerce(Environment.model_construct(python="three", packages=[], image=None))


def test_resolve_combines_register_arguments(tmp_path: Path) -> None:
    req = tmp_path / "r.txt"
    req.write_text("numpy==1.26.4\n")
    assert envs.resolve() is None
    assert envs.resolve(requirements=req, python="3.11.7", image=IMAGE) == Environment(
        python="3.11.7", packages=["numpy==1.26.4"], image=IMAGE
    )
    assert envs.resolve(python="3.10") == Environment(python="3.10")
    here = envs.resolve("current", image=IMAGE)
    assert here is not None
    assert (here.python, here.image) == (platform.python_version(), IMAGE)
    assert envs.resolve("current", python=platform.python_version()) == envs.current()
    given = Environment(python="3.11.7", packages=["numpy==1.26.4"])
    assert envs.resolve(given, python="3.11.7") == given

    with pytest.raises(InvalidArgument, match="either environment='current' or requirements="):
        envs.resolve("current", requirements=req)
    with pytest.raises(InvalidArgument, match="either environment= or requirements="):
        envs.resolve(given, requirements=req)
    with pytest.raises(InvalidArgument, match="differs from the running interpreter's python"):
        envs.resolve("current", python="2.7.18")
    with pytest.raises(InvalidArgument, match=r"differs from the environment's python '3\.11\.7'"):
        envs.resolve(given, python="3.12.1")
    with pytest.raises(InvalidArgument, match="'latest'"):
        envs.resolve("latest")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="not pinned by digest"):
        envs.resolve(requirements=req, image="train:latest")


# -- MLflow -------------------------------------------------------------------------------------------

# As MLflow 3.x writes them for `mlflow.sklearn.save_model`.
MLFLOW_REQUIREMENTS = (
    "mlflow==3.17.2\ncloudpickle==3.1.3\nnumpy==2.4.6\npandas==3.1.1\nrich==15.0.0\n"
    "scikit-learn==1.9.1\nscipy==1.17.1"
)
MLFLOW_PYTHON_ENV = (
    "python: 3.11.7\nbuild_dependencies:\n- pip==26.3\n- setuptools==65.5.0\n- wheel\n"
    "dependencies:\n- -r requirements.txt\n"
)
MLFLOW_CONDA = (
    "channels:\n- conda-forge\ndependencies:\n- python=3.11.7\n- pip<=26.3\n- pip:\n"
    "  - mlflow==3.17.2\n  - cloudpickle==3.1.3\n  - numpy==2.4.6\n  - pandas==3.1.1\n"
    "  - rich==15.0.0\n  - scikit-learn==1.9.1\n  - scipy==1.17.1\nname: mlflow-env\n"
)
MLFLOW_PACKAGES = [
    "cloudpickle==3.1.3",
    "mlflow==3.17.2",
    "numpy==2.4.6",
    "pandas==3.1.1",
    "rich==15.0.0",
    "scikit-learn==1.9.1",
    "scipy==1.17.1",
]


def test_from_mlflow_as_mlflow_writes_it() -> None:
    env, skipped = envs.from_mlflow(
        {
            "requirements.txt": MLFLOW_REQUIREMENTS,
            "python_env.yaml": MLFLOW_PYTHON_ENV,
            "conda.yaml": MLFLOW_CONDA,
        }
    )
    # The build dependencies (pip, setuptools, wheel) are not the model's.
    assert env == Environment(python="3.11.7", packages=MLFLOW_PACKAGES)
    assert skipped == []


def test_from_mlflow_skips_unpinned_requirements() -> None:
    # MLflow 2.x, with requirements the user gave unpinned (`pip_requirements=["xgboost"]`).
    requirements = (
        "mlflow==2.9.2\ncloudpickle==2.2.1\nxgboost\nlightgbm>=4\n-e ./local-pkg\n"
        "--extra-index-url https://example.com/simple\nscikit-learn==1.3.0\n"
    )
    env, skipped = envs.from_mlflow(
        {"requirements.txt": requirements, "python_env.yaml": MLFLOW_PYTHON_ENV}
    )
    assert env == Environment(
        python="3.11.7", packages=["cloudpickle==2.2.1", "mlflow==2.9.2", "scikit-learn==1.3.0"]
    )
    assert skipped == ["xgboost", "lightgbm>=4", "-e ./local-pkg"]


def test_from_mlflow_conda_only() -> None:
    conda = (
        "channels:\n- conda-forge\ndependencies:\n- python=3.10.12=h955ad1f_0\n- pip<=23.0\n"
        "- pip:\n  - mlflow==2.9.2\n  - scikit-learn\n  - numpy==1.24.4\nname: mlflow-env\n"
    )
    env, skipped = envs.from_mlflow({"conda.yaml": conda})
    assert env == Environment(python="3.10.12", packages=["mlflow==2.9.2", "numpy==1.24.4"])
    assert skipped == ["scikit-learn"]


def test_from_mlflow_python_versions() -> None:
    # `python: 3.10` unquoted is the float 3.1 to YAML: the text is read as written.
    env, _ = envs.from_mlflow({"python_env.yaml": "python: 3.10\n"})
    assert env == Environment(python="3.10")
    # python_env.yaml's python wins over conda.yaml's.
    env, _ = envs.from_mlflow(
        {"python_env.yaml": "python: '3.11.7'\n", "conda.yaml": "dependencies: [python==3.10.1]\n"}
    )
    assert env is not None
    assert env.python == "3.11.7"
    with pytest.raises(InvalidArgument, match=r"python_env\.yaml: python version '3\.x'"):
        envs.from_mlflow({"python_env.yaml": "python: 3.x\n"})


def test_from_mlflow_follows_r_within_the_directory_only() -> None:
    env, skipped = envs.from_mlflow(
        {"python_env.yaml": "python: 3.11.7\ndependencies:\n- -r requirements.txt\n"}
    )
    assert env == Environment(python="3.11.7")
    assert skipped == ["-r requirements.txt"]
    # A file naming itself is read once; constraints are not requirements.
    env, skipped = envs.from_mlflow(
        {"requirements.txt": "-r ./requirements.txt\nnumpy==1.26.4\n-c constraints.txt\n"}
    )
    assert env == Environment(packages=["numpy==1.26.4"])
    assert skipped == []


def test_from_mlflow_nothing_and_bad_files() -> None:
    assert envs.from_mlflow({}) == (None, [])
    assert envs.from_mlflow({"requirements.txt": "xgboost\n"}) == (None, ["xgboost"])
    with pytest.raises(InvalidArgument, match=r"conda\.yaml is not valid YAML"):
        envs.from_mlflow({"conda.yaml": "dependencies: [python=3.10\n"})
    with pytest.raises(InvalidArgument, match=r"python_env\.yaml is not a YAML mapping"):
        envs.from_mlflow({"python_env.yaml": "- 3.10\n"})
    with pytest.raises(InvalidArgument, match="different versions"):
        envs.from_mlflow({"requirements.txt": "numpy==1.26.4\nnumpy==2.0.0\n"})


def test_environment_files_of_a_model_directory(tmp_path: Path) -> None:
    d = tmp_path / "model"
    d.mkdir()
    assert environment_files(d) == {}
    (d / "MLmodel").write_text(
        "flavors:\n  python_function:\n    env:\n      conda: envs/conda.yaml\n"
        "      virtualenv: ../outside.yaml\n    loader_module: mlflow.sklearn\n"
    )
    (d / "envs").mkdir()
    (d / "envs" / "conda.yaml").write_text(MLFLOW_CONDA)
    (d / "conda.yaml").write_text("not: this one\n")
    (d / "requirements.txt").write_text(MLFLOW_REQUIREMENTS)
    (tmp_path / "outside.yaml").write_text("python: 3.9.0\n")
    (d / "python_env.yaml").write_text(MLFLOW_PYTHON_ENV)
    files: dict[str, Any] = environment_files(d)
    # MLmodel names the conda file; a name outside the directory is not followed.
    assert files == {"requirements.txt": MLFLOW_REQUIREMENTS, "conda.yaml": MLFLOW_CONDA}
    (d / "MLmodel").write_text("flavors:\n  python_function:\n    env: conda.yaml\n")
    assert set(environment_files(d)) == {"requirements.txt", "conda.yaml", "python_env.yaml"}
