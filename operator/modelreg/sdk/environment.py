"""What a model was trained with: `ModelVersion.spec.environment`, captured at registration.

Called by `Client.register` (`environment=`, `requirements=`, `python=`, `image=`), the `modelreg
register` flags (`--capture-env`, `--requirements`, `--python`, `--image`) and the MLflow import.
Pure helpers: no cluster, no store; the only I/O is reading requirements files and the running
interpreter's installed distributions.

The operator audits `packages` against advisory databases, which name exact versions: a package is
recorded only as `name==version`. So a user's requirements file must pin every requirement with
`==` (`from_requirements` refuses anything else, saying which lines), while the MLflow import is
lenient (`from_mlflow` leaves unpinned requirements out and says which).

Every failure is an `InvalidArgument` with a message for the user.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import ValidationError

from modelreg.api.models import (
    ENV_PACKAGES_MAX,
    IMAGE_DIGEST_PATTERN,
    PACKAGE_PATTERN,
    PYTHON_PATTERN,
    Environment,
)
from modelreg.sdk.errors import InvalidArgument

__all__ = [
    "ENV_PACKAGES_MAX",
    "Environment",
    "MlflowEnvironment",
    "build",
    "check_image",
    "check_python",
    "coerce",
    "current",
    "from_mlflow",
    "from_requirements",
    "normalize",
    "resolve",
]

REQUIREMENTS = "requirements.txt"
PYTHON_ENV = "python_env.yaml"
CONDA = "conda.yaml"

_PACKAGE_MAX = 128  # Environment.packages[] max_length
_IMAGE_MAX = 512  # Environment.image max_length
_SHOWN = 5  # offending lines named in a message; the rest are counted
_TEXT_SHOWN = 80  # characters of an offending line quoted in a message

_PACKAGE_RE = re.compile(PACKAGE_PATTERN)
_PYTHON_RE = re.compile(PYTHON_PATTERN)
_IMAGE_RE = re.compile(IMAGE_DIGEST_PATTERN)
# pip's own rule: `#` starts a comment at the start of a line or after whitespace (so a URL's
# `#egg=` fragment is not one).
_COMMENT_RE = re.compile(r"(^|\s+)#.*$")
# `name[extras] == version`, once the environment marker is gone; the version as PACKAGE_PATTERN
# allows it, so `==1.*`, `===1.0` and `==1.0,!=1.0.1` are not pins.
_PIN_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*"
    r"(?:\[[^\]]*\])?\s*==\s*(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)$"
)
_REQUIREMENT_OPTIONS = ("-r", "--requirement")
_EDITABLE_OPTIONS = ("-e", "--editable")
# conda's `python=3.10.12`, `python==3.10.12`, `python=3.10.12=h955ad1f_0` (with a build string).
_CONDA_PYTHON_RE = re.compile(r"^python\s*==?\s*(?P<version>[0-9][0-9A-Za-z.]*)(?:=\S*)?$")
_YAML_PYTHON_RE = re.compile(r"""^python\s*:\s*["']?(?P<version>[^\s"'#]+)""", re.MULTILINE)


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them: `Scikit_Learn` -> `scikit-learn`."""
    return re.sub(r"[-_.]+", "-", name).lower()


# -- validation ------------------------------------------------------------------------------------


def check_python(value: str) -> str:
    """A Python version as `spec.environment.python` takes it (3.11.7, 3.12, 3.13.0rc1)."""
    text = str(value).strip()
    if not _PYTHON_RE.match(text) or len(text) > 32:
        raise InvalidArgument(
            f"python version {value!r} is not a version: give MAJOR.MINOR[.PATCH], e.g. "
            f"{platform.python_version()} (what `python --version` prints, without 'Python')"
        )
    return text


def check_image(value: str) -> str:
    """A training image by digest, `name@sha256:<64 lowercase hex digits>`."""
    text = str(value).strip()
    if _IMAGE_RE.match(text) and len(text) <= _IMAGE_MAX:
        return text
    name, at, digest = text.partition("@")
    if len(text) > _IMAGE_MAX:
        why = f"it is {len(text)} characters long, more than {_IMAGE_MAX}"
    elif not at:
        why = (
            "it names no digest; a tag can be moved to other contents, so give NAME@sha256:<digest> "
            "(`docker inspect --format '{{index .RepoDigests 0}}' IMAGE` prints it)"
        )
    elif not name or any(c.isspace() for c in name) or "@" in digest:
        why = "give it as NAME@sha256:<digest>, the name without spaces and one '@'"
    elif not digest.startswith("sha256:"):
        algorithm = digest.partition(":")[0] or digest
        why = f"the digest must be a sha256 one (sha256:<64 hex digits>), not {algorithm!r}"
    else:
        hexpart = digest.removeprefix("sha256:")
        if len(hexpart) != 64:
            why = f"the digest after 'sha256:' must be 64 hex digits, got {len(hexpart)}"
        else:
            why = "the digest after 'sha256:' must be 64 lowercase hex digits (0-9, a-f)"
    raise InvalidArgument(f"image {value!r} is not pinned by digest: {why}")


def _check_package(package: str, where: str = "") -> str:
    text = package.strip()
    if _PACKAGE_RE.match(text) and len(text) <= _PACKAGE_MAX:
        return text
    at = f"{where}: " if where else ""
    if len(text) > _PACKAGE_MAX:
        raise InvalidArgument(
            f"{at}package {_quote(text)} is {len(text)} characters long, more than {_PACKAGE_MAX}"
        )
    raise InvalidArgument(
        f"{at}package {text!r} is not NAME==VERSION (one exact version, as `pip freeze` prints)"
    )


def _bounded(count: int, what: str) -> None:
    if count > ENV_PACKAGES_MAX:
        raise InvalidArgument(
            f"{what} lists {count} packages, more than the {ENV_PACKAGES_MAX} a version records; "
            "give a requirements file with the model's own dependencies instead (--requirements)"
        )


def _order(package: str) -> tuple[str, str]:
    """Sorted by name, case-insensitively (`aiohttp` before `aiohttp-retry`)."""
    return package.partition("==")[0].lower(), package


def _deduplicated(packages: Iterable[tuple[str, str]], what: str) -> list[str]:
    """`(package, where)` pairs as one sorted list; the same name at two versions is an error."""
    seen: dict[str, tuple[str, str]] = {}
    clashes: list[str] = []
    for package, where in packages:
        name, _, version = package.partition("==")
        key = normalize(name)
        if key not in seen:
            seen[key] = (package, where)
            continue
        first, first_where = seen[key]
        if first.partition("==")[2] != version:
            clashes.append(f"{first}{_at(first_where)} and {package}{_at(where)}")
    if clashes:
        raise InvalidArgument(
            f"{what} pins the same package at different versions: {_listed(clashes)}; keep the one "
            "the model was trained with"
        )
    _bounded(len(seen), what)
    return sorted((p for p, _ in seen.values()), key=_order)


def build(
    *,
    python: str | None = None,
    packages: Iterable[str] = (),
    image: str | None = None,
    what: str = "the environment",
) -> Environment:
    """A checked Environment: python and image as `check_python`/`check_image` take them, each
    package `name==version`, no name at two versions, at most ENV_PACKAGES_MAX (deduplicated and
    sorted)."""
    checked = _deduplicated(((_check_package(p), "") for p in packages), what)
    try:
        return Environment(
            python=check_python(python) if python is not None else None,
            packages=checked,
            image=check_image(image) if image is not None else None,
        )
    except ValidationError as e:  # the checks above mirror the schema; this is a backstop
        raise InvalidArgument(f"{what}: {_first_error(e)}") from e


def coerce(value: Environment | Mapping[str, Any]) -> Environment:
    """An Environment given by a caller (an object or its fields as a mapping), checked."""
    if isinstance(value, Environment):
        fields: Mapping[str, Any] = value.model_dump()
    elif isinstance(value, Mapping):
        fields = value
        unknown = sorted(str(k) for k in fields if k not in ("python", "packages", "image"))
        if unknown:
            raise InvalidArgument(
                f"environment: unknown field(s) {', '.join(unknown)}; it takes python, packages "
                "and image"
            )
    else:
        raise InvalidArgument(
            f"environment must be an Environment, a mapping or 'current', got {type(value).__name__}"
        )
    packages = fields.get("packages") or []
    if isinstance(packages, str) or not isinstance(packages, Iterable):
        raise InvalidArgument("environment.packages must be a list of 'name==version' strings")
    if not all(isinstance(p, str) for p in packages):
        raise InvalidArgument("environment.packages must be a list of 'name==version' strings")
    python, image = fields.get("python"), fields.get("image")
    for key, v in (("python", python), ("image", image)):
        if v is not None and not isinstance(v, str):
            raise InvalidArgument(f"environment.{key} must be a string, got {type(v).__name__}")
    return build(python=python, packages=packages, image=image)


def resolve(
    environment: Environment | Mapping[str, Any] | Literal["current"] | None = None,
    *,
    requirements: str | os.PathLike[str] | None = None,
    python: str | None = None,
    image: str | None = None,
) -> Environment | None:
    """The `spec.environment` that `Client.register`'s arguments describe (None: none given).

    `environment` is an Environment, a mapping of its fields, or "current" (`current()`);
    `requirements` a pinned requirements file (`from_requirements`), not together with
    `environment`; `python` and `image` fill in the fields those leave empty, and must agree
    with the ones they set."""
    if environment is not None and requirements is not None:
        given = "environment='current'" if isinstance(environment, str) else "environment="
        raise InvalidArgument(
            f"give either {given} or requirements=, not both: each gives the packages"
        )
    if isinstance(environment, str):
        if environment != "current":
            raise InvalidArgument(
                f"environment={environment!r}: give an Environment, a mapping of its fields, "
                "or 'current' (the running interpreter)"
            )
        base = current()
        origin = "the running interpreter's"
    elif environment is not None:
        base = coerce(environment)
        origin = "the environment's"
    elif requirements is not None:
        base = Environment(packages=from_requirements(requirements))
        origin = ""
    else:
        base = Environment()
        origin = ""
    fields: dict[str, str | None] = {"python": base.python, "image": base.image}
    for key, given_value, check in (
        ("python", python, check_python),
        ("image", image, check_image),
    ):
        if given_value is None:
            continue
        value = check(given_value)
        if fields[key] is not None and fields[key] != value:
            raise InvalidArgument(
                f"{key}={value!r} differs from {origin} {key} {fields[key]!r}; give one of them"
            )
        fields[key] = value
    if fields["python"] is None and fields["image"] is None and not base.packages:
        return None
    return build(python=fields["python"], packages=base.packages, image=fields["image"])


# -- the running interpreter ------------------------------------------------------------------------


def current() -> Environment:
    """The interpreter running this code: its Python version and every installed distribution
    (`name==version`, the name as published, one per PEP 503 name: the first on sys.path, the
    one that imports; sorted case-insensitively)."""
    seen: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        meta = dist.metadata
        name = meta["Name"] if meta is not None and "Name" in meta else None
        version = dist.version
        if not name or not version:
            continue  # a distribution without metadata (a half-removed install) names nothing
        seen.setdefault(normalize(str(name)), f"{str(name).strip()}=={str(version).strip()}")
    _bounded(len(seen), f"the running interpreter ({platform.python_version()})")
    bad = [p for p in seen.values() if not _PACKAGE_RE.match(p) or len(p) > _PACKAGE_MAX]
    if bad:
        raise InvalidArgument(
            f"the running interpreter has distributions that are not NAME==VERSION: "
            f"{_listed([_quote(b) for b in bad])}; give a requirements file instead (--requirements)"
        )
    return Environment(
        python=check_python(platform.python_version()),
        packages=sorted(seen.values(), key=_order),
    )


# -- requirements files ------------------------------------------------------------------------------


@dataclass
class _Parsed:
    """What a walk over requirements text found."""

    pins: list[tuple[str, str]] = field(default_factory=list)  # (name==version, where)
    unpinned: list[tuple[str, str]] = field(default_factory=list)  # (where, text)


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) as pip reads them: `\\` continuations joined (numbered by their first
    line), comments and surrounding blanks removed, empty lines left out."""

    def clean(number: int, line: str) -> Iterator[tuple[int, str]]:
        line = _COMMENT_RE.sub("", line).strip()
        if line:
            yield number, line

    joined: list[str] = []
    first = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.endswith("\\") and not _COMMENT_RE.match(raw):
            if not joined:
                first = number
            joined.append(raw[:-1])
            continue
        if joined:
            joined.append(" " + raw if _COMMENT_RE.match(raw) else raw)
            yield from clean(first, "".join(joined))
            joined = []
        else:
            yield from clean(number, raw)
    if joined:  # a continuation on the last line
        yield from clean(first, "".join(joined))


def _pin(line: str) -> str | None:
    """`name==version` for a requirement pinned to one version, else None. Extras and the
    environment marker are dropped, and so are per-requirement options (`--hash=...`)."""
    tokens = line.split()
    kept: list[str] = []
    for token in tokens:
        if token.startswith("-"):
            break
        kept.append(token)
    requirement = " ".join(kept).split(";", 1)[0].strip()
    m = _PIN_RE.match(requirement)
    if m is None:
        return None
    package = f"{m.group('name')}=={m.group('version')}"
    return package if len(package) <= _PACKAGE_MAX else None


def _option(line: str) -> tuple[str, str]:
    """(option, its value) for an option line: `-r x`, `-rx`, `--requirement=x`, `-e .`."""
    head, _, rest = line.partition(" ")
    if head.startswith("--") and "=" in head:
        name, _, value = head.partition("=")
        return name, value.strip()
    if not head.startswith("--") and len(head) > 2:  # -rfile
        return head[:2], (head[2:] + " " + rest).strip()
    return head, rest.strip()


def _walk(
    text: str,
    label: str,
    parsed: _Parsed,
    include: Callable[[str, str, str], tuple[str, str] | None],
) -> None:
    """Collect the pins and the unpinned lines of `text` (named `label` in messages), following
    `-r FILE` through `include(target, label, where)` -> (its text, its label), or None when it
    is not to be read (seen before). `-c` and every other option are not requirements."""
    for number, line in _logical_lines(text):
        where = f"{label} line {number}"
        if line.startswith("-"):
            option, value = _option(line)
            if option in _REQUIREMENT_OPTIONS and value:
                found = include(value.split()[0], label, where)
                if found is not None:
                    _walk(found[0], found[1], parsed, include)
            elif option in _EDITABLE_OPTIONS:
                parsed.unpinned.append((where, line))
            continue
        package = _pin(line)
        if package is None:
            parsed.unpinned.append((where, line))
        else:
            parsed.pins.append((package, where))


def from_requirements(path: str | os.PathLike[str]) -> list[str]:
    """The packages a pip requirements file pins, `name==version`, sorted and deduplicated.

    Extras (`name[x]==v`), environment markers (`; python_version < "3.12"`), comments, blank
    lines, continuations and per-requirement options (`--hash`) are accepted; `-r FILE` is
    followed relative to the file that names it (each file once, so cycles end); `-c` and other
    options (`--index-url`, ...) are ignored. Anything not pinned to one version with `==`
    (`numpy>=1.2`, `numpy`, a URL, `-e .`) cannot be audited and is refused, naming the lines.
    """
    top = Path(path)
    label = str(path)
    visited: set[Path] = set()

    def read(p: Path, shown: str, where: str) -> str:
        try:
            return p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidArgument(f"{where}no such requirements file: {shown}") from None
        except IsADirectoryError:
            raise InvalidArgument(
                f"{where}{shown} is a directory, not a requirements file"
            ) from None
        except UnicodeDecodeError:
            raise InvalidArgument(f"{where}{shown} is not UTF-8 text") from None
        except OSError as e:
            raise InvalidArgument(f"{where}cannot read {shown}: {e.strerror or e}") from None

    def resolve(p: Path) -> Path:
        try:
            return p.resolve()
        except OSError:
            return p.absolute()

    texts: dict[str, Path] = {label: top}

    def include(target: str, parent: str, where: str) -> tuple[str, str] | None:
        if "://" in target:
            raise InvalidArgument(
                f"{where}: -r {target}: only local requirements files can be read; download it "
                "and name the local copy"
            )
        p = Path(target) if Path(target).is_absolute() else texts[parent].parent / target
        if resolve(p) in visited:
            return None
        visited.add(resolve(p))
        shown = str(p)
        texts[shown] = p
        return read(p, shown, f"{where}: -r {target}: "), shown

    visited.add(resolve(top))
    parsed = _Parsed()
    _walk(read(top, label, ""), label, parsed, include)
    if parsed.unpinned:
        items = [
            f"{where.removeprefix(label + ' ')} {_quote(text)}" for where, text in parsed.unpinned
        ]
        raise InvalidArgument(
            f"{label}: {_count(len(items), 'requirement')} not pinned to one version with ==, so "
            f"{'it' if len(items) == 1 else 'they'} cannot be audited: {_listed(items)}; pin "
            "each one (`pip freeze` prints the installed versions as name==version)"
        )
    if not parsed.pins:
        raise InvalidArgument(f"{label} pins no packages (it holds only comments or options)")
    return _deduplicated(
        ((package, where.removeprefix(label + " ")) for package, where in parsed.pins), label
    )


# -- MLflow model directories -----------------------------------------------------------------------


class MlflowEnvironment(NamedTuple):
    """`from_mlflow`'s result: the environment (None when the files give neither a Python version
    nor a package), and the requirements left out because they are not pinned with `==`."""

    environment: Environment | None
    skipped: list[str]


def from_mlflow(files: Mapping[str, str]) -> MlflowEnvironment:
    """The environment an MLflow model directory records, from the text of any of its
    `requirements.txt`, `python_env.yaml` and `conda.yaml` (the keys of `files`).

    python: python_env.yaml's `python:`, else conda.yaml's `python=X.Y.Z` dependency. packages:
    requirements.txt, else python_env.yaml's `dependencies` (its `-r requirements.txt` read from
    `files`), else conda.yaml's `pip:` list. Lenient, as MLflow writes what it inferred: an
    unpinned requirement (`scikit-learn`, `numpy>=1.2`, `-e .`) is left out and named in
    `skipped`; `-r FILE` is followed when FILE is one of `files`. Build dependencies (pip,
    setuptools, wheel) are not the model's and are not recorded. A file that is not valid YAML,
    or a Python version that is not one, is an InvalidArgument, and so are a package pinned at
    two versions and more than ENV_PACKAGES_MAX packages.
    """
    python_env = _yaml_mapping(files, PYTHON_ENV)
    conda = _yaml_mapping(files, CONDA)

    python: str | None = None
    if python_env.get("python") is not None:
        python = _yaml_python(python_env["python"], files[PYTHON_ENV], PYTHON_ENV)
    conda_deps = conda.get("dependencies") or []
    if not isinstance(conda_deps, list):
        raise InvalidArgument(f"{CONDA}: `dependencies` is not a list")
    conda_pip: list[str] | None = None
    for dep in conda_deps:
        if isinstance(dep, str):
            m = _CONDA_PYTHON_RE.match(dep.strip())
            if m and python is None:
                try:
                    python = check_python(m.group("version"))
                except InvalidArgument as e:
                    raise InvalidArgument(f"{CONDA}: {e}") from None
        elif isinstance(dep, dict) and isinstance(dep.get("pip"), list) and conda_pip is None:
            conda_pip = [str(x) for x in dep["pip"]]

    parsed = _Parsed()
    visited: set[str] = set()

    def include(target: str, _parent: str, where: str) -> tuple[str, str] | None:
        name = target.removeprefix("./")
        if name in files and name not in visited:
            visited.add(name)
            return files[name], name
        if name not in files:
            parsed.unpinned.append((where, f"-r {target}"))
        return None

    env_deps = python_env.get("dependencies")
    if REQUIREMENTS in files:
        visited.add(REQUIREMENTS)
        _walk(files[REQUIREMENTS], REQUIREMENTS, parsed, include)
        source = REQUIREMENTS
    elif isinstance(env_deps, list) and env_deps:
        _walk("\n".join(str(x) for x in env_deps), PYTHON_ENV, parsed, include)
        source = PYTHON_ENV
    elif conda_pip:
        _walk("\n".join(conda_pip), CONDA, parsed, include)
        source = CONDA
    else:
        source = "the MLflow model"
    packages = _deduplicated(parsed.pins, source)
    skipped = [text for _, text in parsed.unpinned]
    if python is None and not packages:
        return MlflowEnvironment(None, skipped)
    return MlflowEnvironment(Environment(python=python, packages=packages), skipped)


def _yaml_mapping(files: Mapping[str, str], name: str) -> dict[str, Any]:
    if name not in files:
        return {}
    try:
        data = yaml.safe_load(files[name])
    except yaml.YAMLError as e:
        raise InvalidArgument(f"{name} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"{name} is not a YAML mapping")
    return data


def _yaml_python(value: object, text: str, name: str) -> str:
    """The `python:` of a YAML file as written: `python: 3.10` is the float 3.1 to YAML."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        m = _YAML_PYTHON_RE.search(text)
        value = m.group("version") if m else str(value)
    try:
        return check_python(str(value))
    except InvalidArgument as e:
        raise InvalidArgument(f"{name}: {e}") from None


# -- messages ---------------------------------------------------------------------------------------


def _quote(text: str) -> str:
    clipped = text if len(text) <= _TEXT_SHOWN else text[: _TEXT_SHOWN - 3] + "..."
    return f"'{clipped}'"


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    rest = len(items) - _SHOWN
    return f"{shown} and {rest} more" if rest > 0 else shown


def _at(where: str) -> str:
    return f" ({where})" if where else ""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'} {'is' if n == 1 else 'are'}"


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()))
    return f"{loc}: {err.get('msg')}" if loc else str(err.get("msg"))
