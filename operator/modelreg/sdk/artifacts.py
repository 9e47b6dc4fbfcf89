"""Local artifacts before upload: what file to send, under which name, in which format.

Called by `modelreg.sdk.client.Client.register` and the MLflow import. A file is sent as it is. A
directory is packed into one uncompressed tar (`<dir>.tar`, format `custom` unless told otherwise):
a ModelVersion names exactly one object and one sha256, and the tar is made reproducible (sorted
entries, zeroed owners and times) so registering the same directory twice gives the same digest.
The tar is written to a temporary file next to nothing else, never held in memory.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from modelreg.api.models import ArtifactFormat
from modelreg.sdk.errors import InvalidArgument

# The format a file's extension implies; anything else is `custom` unless the caller says.
_BY_SUFFIX = {
    ".onnx": ArtifactFormat.ONNX,
    ".skops": ArtifactFormat.SKOPS,
    ".pkl": ArtifactFormat.SKLEARN,
    ".pickle": ArtifactFormat.SKLEARN,
    ".joblib": ArtifactFormat.SKLEARN,
    ".ubj": ArtifactFormat.XGBOOST,
    ".xgb": ArtifactFormat.XGBOOST,
    ".bst": ArtifactFormat.XGBOOST,
    ".lgb": ArtifactFormat.LIGHTGBM,
}


@dataclass(frozen=True)
class LocalArtifact:
    path: Path  # the file to upload (the tar, for a directory)
    filename: str  # the last segment of the object key
    format: ArtifactFormat
    size: int


def guess_format(path: Path) -> ArtifactFormat:
    return _BY_SUFFIX.get(path.suffix.lower(), ArtifactFormat.CUSTOM)


def parse_format(value: str | ArtifactFormat | None, path: Path) -> ArtifactFormat:
    if value is None or value == "":
        return guess_format(path) if path.is_file() else ArtifactFormat.CUSTOM
    try:
        return ArtifactFormat(str(value).lower())
    except ValueError:
        choices = ", ".join(f.value for f in ArtifactFormat)
        raise InvalidArgument(
            f"unknown artifact format {value!r}; choose one of {choices}"
        ) from None


@contextlib.contextmanager
def prepared(
    path: str | os.PathLike[str], fmt: str | ArtifactFormat | None, *, tar_name: str | None = None
) -> Iterator[LocalArtifact]:
    """The file to upload for `path`; a directory is packed into a temporary tar meanwhile."""
    src = Path(path).expanduser()
    if not src.exists():
        raise InvalidArgument(f"{src}: no such file or directory")
    artifact_format = parse_format(fmt, src)
    if src.is_file():
        yield LocalArtifact(src, src.name, artifact_format, src.stat().st_size)
        return
    if not src.is_dir():
        raise InvalidArgument(f"{src}: not a regular file or directory")
    with tempfile.TemporaryDirectory(prefix="modelreg-") as tmp:
        name = tar_name or (src.resolve().name or "artifact") + ".tar"
        tar_path = Path(tmp) / name
        pack_directory(src, tar_path)
        yield LocalArtifact(tar_path, name, artifact_format, tar_path.stat().st_size)


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def pack_directory(src: Path, dest: Path) -> None:
    """Write a reproducible tar of the directory `src` (paths relative to it) to `dest`."""
    files: list[Path] = []
    for root, dirs, names in os.walk(src, followlinks=False):
        dirs.sort()
        base = Path(root)
        files.extend(base / n for n in sorted(names))
    if not files:
        raise InvalidArgument(f"{src}: the directory is empty")
    try:
        with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
            for f in sorted(files, key=lambda p: p.relative_to(src).as_posix()):
                if f.is_symlink() or not f.is_file():
                    continue  # a link could point outside the directory; only regular files
                tar.add(f, arcname=f.relative_to(src).as_posix(), filter=_reset, recursive=False)
    except OSError as e:
        raise InvalidArgument(f"cannot pack {src}: {e.strerror or e}") from e
