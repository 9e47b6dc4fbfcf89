"""The `s3://bucket/key` URIs of the contract: parsing and the "under this prefix" rule. Pure.

Used by the lifecycle (is an artifact under its Model's storage prefix?), the object-store adapter
and the SDK, so that all three read a URI the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class BadURI(ValueError):
    """A URI that is not a usable s3://bucket/key."""


@dataclass(frozen=True)
class S3URI:
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def is_under(self, prefix: S3URI) -> bool:
        """True when this object lies under `prefix`, read as a directory ("a/b" holds "a/b/x", not "a/bc")."""
        if self.bucket != prefix.bucket:
            return False
        if not prefix.key:
            return True
        directory = prefix.key if prefix.key.endswith("/") else prefix.key + "/"
        return self.key.startswith(directory)


def parse(uri: str, *, want_key: bool = True) -> S3URI:
    """Parse `s3://bucket/key`; `want_key=False` accepts a bare bucket (a storage prefix)."""
    if not uri.startswith("s3://"):
        scheme = uri.split("://", 1)[0] if "://" in uri else ""
        raise BadURI(f"{uri!r} is not an s3:// URI" + (f" (scheme {scheme!r})" if scheme else ""))
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not _BUCKET.match(bucket):
        raise BadURI(f"{uri!r} has an invalid bucket name {bucket!r}")
    if any(part in (".", "..") for part in key.split("/")):
        raise BadURI(f"{uri!r} contains '.' or '..' path segments")
    if "//" in key or any(c in key for c in "\\\0\r\n"):
        raise BadURI(f"{uri!r} contains an empty path segment or a control character")
    if want_key and (not key or key.endswith("/")):
        raise BadURI(f"{uri!r} names no object (the key is empty or ends with '/')")
    return S3URI(bucket=bucket, key=key)
