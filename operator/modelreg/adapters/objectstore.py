"""The object-store adapter: reading S3 (through boto3) for the operator and the model server.

Callers: the operator verifies artifacts with `ObjectStore.head`/`sha256`; the model server
(`modelreg.runtime`) fetches them with `download`. The SDK's uploader (`modelreg.adapters.upload`)
reuses this module's location, config and error types, so every caller sees one vocabulary: each
botocore/boto3 exception is translated here into a `StoreError` subclass (`raise ... from e`), and
no message ever carries a credential.

The blocking boto3 calls run in worker threads (`asyncio.to_thread`), so the async callers never
block their event loop. Hashing always streams in `chunk_bytes` reads: memory stays constant
whatever the artifact's size. S3's own `ChecksumSHA256` is deliberately never used: for a
multipart upload it is a checksum of part checksums, not the sha256 of the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import boto3
import botocore.config
import botocore.exceptions

from modelreg.adapters import endpoints

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "AccessDenied",
    "Digest",
    "DigestMismatch",
    "EndpointNotAllowed",
    "InvalidURI",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "S3Location",
    "StoreConfig",
    "StoreError",
    "StoreUnavailable",
]

_KEY_MAX_BYTES = 1024
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NoSuchBucket", "NotFound", "NoSuchUpload"})
_DENIED_CODES = frozenset(
    {
        "403",
        "AccessDenied",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "AllAccessDisabled",
        "AccountProblem",
        "XAdminUserNotFound",  # versitygw's answer (HTTP 404) to an unknown access key
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "InternalError",
        "RequestLimitExceeded",
        "TooManyRequests",
        "503",
        "500",
        "502",
        "504",
    }
)


# ------------------------------------------------------------------------------------------------
# Errors


class StoreError(Exception):
    """Base of every object-store failure. The message is for humans and free of credentials."""


class InvalidURI(StoreError):
    """The string is not an `s3://bucket/key` this adapter accepts."""


class ObjectNotFound(StoreError):
    """The object or its bucket does not exist."""


class AccessDenied(StoreError):
    """The store refused the credentials (missing, wrong, or without permission)."""


class StoreUnavailable(StoreError):
    """A transient failure: connection refused/reset, timeout, 5xx, throttling. Retry later."""


class EndpointNotAllowed(StoreError):
    """The endpoint is refused by the operator's endpoint policy (`adapters.endpoints`)."""


class TooLarge(StoreError):
    """The object is larger than the caller will hold in memory."""


class DigestMismatch(StoreError):
    """The bytes' sha256 is not the one expected."""

    def __init__(self, uri: str, expected: str, actual: str) -> None:
        super().__init__(f"sha256 of {uri} is {actual}, expected {expected}")
        self.uri = uri
        self.expected = expected
        self.actual = actual


# ------------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True)
class S3Location:
    """An object (or, for `is_under`, a prefix) in a bucket: `s3://bucket/key`."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        """Parse `s3://bucket/key`; raise InvalidURI for anything else (including an empty key)."""
        loc = cls._parse(uri)
        if not loc.key:
            raise InvalidURI(f"{uri!r} names a bucket, not an object: add a key after the bucket")
        return loc

    @classmethod
    def parse_prefix(cls, uri: str) -> S3Location:
        """Like `parse`, but a bare bucket (`s3://bucket` or `s3://bucket/`) is accepted."""
        return cls._parse(uri)

    @classmethod
    def _parse(cls, uri: str) -> S3Location:
        if not isinstance(uri, str):
            raise InvalidURI(f"expected an s3:// URI string, got {type(uri).__name__}")
        scheme, sep, rest = uri.partition("://")
        if not sep or scheme.lower() != "s3":
            shown = uri if len(uri) <= 80 else uri[:77] + "..."
            raise InvalidURI(f"{shown!r} is not an s3:// URI (expected s3://bucket/key)")
        bucket, _, key = rest.partition("/")
        if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
            raise InvalidURI(
                f"{uri!r}: bucket {bucket!r} is not a valid bucket name "
                "(3-63 lowercase letters, digits, '.', '-')"
            )
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
            raise InvalidURI(f"{uri!r}: the key contains control characters")
        if len(key.encode("utf-8")) > _KEY_MAX_BYTES:
            raise InvalidURI(f"{uri!r}: the key is longer than {_KEY_MAX_BYTES} bytes")
        segments = key.split("/")
        if any(s in (".", "..") for s in segments):
            raise InvalidURI(f"{uri!r}: '.' and '..' segments are not allowed in a key")
        return cls(bucket=bucket, key=key)

    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def __str__(self) -> str:
        return self.uri()

    def is_under(self, prefix: S3Location) -> bool:
        """True when this object lies under `prefix`, the prefix's key taken as a directory.

        `s3://b/a/b/x` is under `s3://b/a/b` and `s3://b/a/b/`, but `s3://b/a/bc` is not, and a
        prefix is not under itself.
        """
        if self.bucket != prefix.bucket:
            return False
        directory = prefix.key.rstrip("/")
        if not directory:
            return bool(self.key)
        head = directory + "/"
        return self.key.startswith(head) and len(self.key) > len(head)


@dataclass(frozen=True)
class StoreConfig:
    """Where the store is and how to sign in. None means boto3's default (AWS, its credential
    chain). Credentials are kept out of repr/str."""

    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Environment variables arrive as "" when unset in a pod spec; "" means "not given".
        for name in ("endpoint", "region", "access_key_id", "secret_access_key"):
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)
        if self.endpoint is not None:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidURI(
                    f"object-store endpoint {_redact_url(self.endpoint)!r} is not an "
                    "http:// or https:// URL"
                )
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise AccessDenied(
                "object-store credentials are incomplete: set both AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or neither"
            )


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str
    version_id: str | None = None  # S3 VersionId, in a versioned bucket only


@dataclass(frozen=True)
class Digest:
    sha256: str
    size: int
    etag: str
    version_id: str | None = None


# ------------------------------------------------------------------------------------------------
# The store


class ObjectStore:
    """Async facade over one boto3 S3 client. Safe to share between tasks; call `close()` once."""

    def __init__(
        self,
        config: StoreConfig,
        *,
        timeout: float = 10.0,
        chunk_bytes: int = 8 * 1024 * 1024,
        max_attempts: int = 2,
    ) -> None:
        if chunk_bytes < 64 * 1024:
            raise ValueError("chunk_bytes must be at least 64 KiB")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._config = config
        self._chunk = chunk_bytes
        self._secrets = tuple(s for s in (config.access_key_id, config.secret_access_key) if s)
        boto_config = botocore.config.Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": "path"} if config.endpoint else None,
        )
        try:
            session = boto3.session.Session()
            self._client: S3Client = session.client(
                "s3",
                endpoint_url=config.endpoint,
                region_name=config.region,
                aws_access_key_id=config.access_key_id,
                aws_secret_access_key=config.secret_access_key,
                config=boto_config,
            )
            # Every connection resolves its host and refuses link-local and metadata addresses.
            endpoints.guard_client(self._client)
        except (botocore.exceptions.BotoCoreError, ValueError) as e:
            raise StoreError(
                f"cannot configure the object-store client: {self._scrub(str(e))}"
            ) from e
        except endpoints.EndpointRefused as e:
            raise EndpointNotAllowed(str(e)) from e

    def __repr__(self) -> str:
        return f"ObjectStore({self._config!r})"

    # -- public API --------------------------------------------------------------------------

    async def head(self, uri: str) -> ObjectInfo:
        """Size, ETag and VersionId of the current object at `uri`."""
        loc = S3Location.parse(uri)
        return await asyncio.to_thread(self._head, loc)

    async def sha256(self, uri: str) -> Digest:
        """Stream the object and return its sha256 (hex), size, ETag and VersionId. Constant
        memory."""
        loc = S3Location.parse(uri)
        return await asyncio.to_thread(self._hash_object, loc, None)

    async def download(
        self, uri: str, dest: Path, expected_sha256: str, version_id: str | None = None
    ) -> Digest:
        """Fetch `uri` (the given S3 VersionId of it, when there is one) to `dest`, verified: the
        bytes land at `dest` only if their sha256 is `expected_sha256`; otherwise nothing is left
        behind and DigestMismatch is raised."""
        loc = S3Location.parse(uri)
        expected = _normalize_sha256(expected_sha256)
        return await asyncio.to_thread(self._download, loc, Path(dest), expected, version_id)

    async def delete(self, uri: str) -> None:
        """Delete the object at `uri` (its current version); a missing object is no error."""
        loc = S3Location.parse(uri)
        await asyncio.to_thread(self._delete, loc)

    async def read(self, uri: str, max_bytes: int) -> tuple[bytes, Digest]:
        """The whole object at `uri` in memory, with its digest; TooLarge past `max_bytes`."""
        loc = S3Location.parse(uri)
        return await asyncio.to_thread(self._read, loc, max_bytes)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()

    # -- blocking workers (run in threads) ----------------------------------------------------

    def _head(self, loc: S3Location) -> ObjectInfo:
        try:
            resp = self._client.head_object(Bucket=loc.bucket, Key=loc.key)
        except Exception as e:  # translated, never leaked
            self._translate(e, loc, "head")
        return ObjectInfo(
            size=int(resp["ContentLength"]),
            etag=_etag(resp.get("ETag")),
            version_id=_version_id(resp.get("VersionId")),
        )

    def _hash_object(
        self, loc: S3Location, sink: IO[bytes] | None, version_id: str | None = None
    ) -> Digest:
        """GET the object, hash it in chunks, and write each chunk to `sink` if given."""
        h = hashlib.sha256()
        size = 0
        try:
            if version_id:
                resp = self._client.get_object(Bucket=loc.bucket, Key=loc.key, VersionId=version_id)
            else:
                resp = self._client.get_object(Bucket=loc.bucket, Key=loc.key)
        except Exception as e:
            self._translate(e, loc, "get")
        body = resp["Body"]
        expected_size = int(resp.get("ContentLength", -1))
        try:
            for chunk in _chunks(body, self._chunk):
                h.update(chunk)
                size += len(chunk)
                if sink is not None:
                    _write(sink, chunk)
        except _LocalWriteError:
            raise
        except Exception as e:
            self._translate(e, loc, "read")
        finally:
            with contextlib.suppress(Exception):
                body.close()
        if expected_size >= 0 and size != expected_size:
            raise StoreUnavailable(
                f"read {size} of {expected_size} bytes of {loc.uri()}: the transfer was cut short"
            )
        return Digest(
            sha256=h.hexdigest(),
            size=size,
            etag=_etag(resp.get("ETag")),
            version_id=_version_id(resp.get("VersionId")),
        )

    def _delete(self, loc: S3Location) -> None:
        try:
            self._client.delete_object(Bucket=loc.bucket, Key=loc.key)
        except Exception as e:
            try:
                self._translate(e, loc, "delete")
            except ObjectNotFound:
                return

    def _read(self, loc: S3Location, max_bytes: int) -> tuple[bytes, Digest]:
        sink = _Bounded(max_bytes)
        try:
            digest = self._hash_object(loc, sink)
        except _LocalWriteError as e:
            raise TooLarge(f"{loc.uri()} is larger than {max_bytes} bytes: {e.reason}") from None
        return sink.getvalue(), digest

    def _download(
        self, loc: S3Location, dest: Path, expected: str, version_id: str | None
    ) -> Digest:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(
                prefix=f".{dest.name}.", suffix=".part", dir=dest.parent
            )
        except OSError as e:
            raise StoreError(f"cannot write into {dest.parent}: {e.strerror or e}") from e
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as sink:
                digest = self._hash_object(loc, sink, version_id)
                sink.flush()
                os.fsync(sink.fileno())
            if digest.sha256 != expected:
                raise DigestMismatch(loc.uri(), expected, digest.sha256)
            os.replace(tmp, dest)
        except _LocalWriteError as e:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write {dest}: {e.reason}") from e.__cause__
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest

    # -- error translation --------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _redact_urls_in(text)

    def _translate(self, e: BaseException, loc: S3Location, action: str) -> NoReturn:
        """Map a boto3/botocore/network exception to a StoreError; always raises."""
        error = (
            None
            if isinstance(e, StoreError)
            else translate(e, f"{action} {loc.uri()}", self._scrub)
        )
        if error is None:
            raise e
        raise error from e


def translate(e: BaseException, where: str, scrub: Callable[[str], str]) -> StoreError | None:
    """The StoreError for a boto3/botocore/network exception (callers `raise ... from e`), or
    None when `e` is no store failure (a bug: callers re-raise it as it is).

    The one translation of S3 failures, shared by this module and `adapters.upload`; `scrub`
    removes credentials from any text taken from the exception.
    """
    refused = (
        e if isinstance(e, endpoints.EndpointRefused) else getattr(e, "kwargs", {}).get("error")
    )
    if isinstance(refused, endpoints.EndpointRefused):
        return EndpointNotAllowed(f"{where}: {refused}")
    if isinstance(e, botocore.exceptions.ClientError):
        err = e.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        detail = scrub(str(err.get("Message") or code or f"HTTP {status}"))
        if code in _DENIED_CODES or status == 403:
            return AccessDenied(
                f"{where}: access denied ({code or status}: {detail}); check the "
                "credentials Secret and the bucket policy"
            )
        if code in _NOT_FOUND_CODES or status == 404:
            what = "bucket" if code == "NoSuchBucket" else "object"
            return ObjectNotFound(f"{where}: no such {what} ({code or status}: {detail})")
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            return StoreUnavailable(
                f"{where}: the store is unavailable ({code or status}: {detail})"
            )
        return StoreError(f"{where}: {code or status}: {detail}")
    if isinstance(
        e, (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError)
    ):
        return AccessDenied(
            f"{where}: no usable object-store credentials (set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, e.g. from the storage secretRef)"
        )
    if isinstance(e, botocore.exceptions.ParamValidationError):
        return InvalidURI(f"{where}: {scrub(str(e))}")
    if isinstance(
        e,
        (
            botocore.exceptions.ConnectionError,  # refused, connect timeout, proxy, TLS
            botocore.exceptions.HTTPClientError,  # read timeouts, resets
            botocore.exceptions.IncompleteReadError,
            botocore.exceptions.ResponseStreamingError,
            botocore.exceptions.CredentialRetrievalError,
            ConnectionError,
            TimeoutError,
        ),
    ):
        return StoreUnavailable(
            f"{where}: the store is unreachable ({type(e).__name__}: {scrub(str(e))})"
        )
    if isinstance(e, botocore.exceptions.BotoCoreError):
        return StoreError(f"{where}: {type(e).__name__}: {scrub(str(e))}")
    if isinstance(e, OSError):
        return StoreUnavailable(f"{where}: network failure ({type(e).__name__}: {scrub(str(e))})")
    # urllib3 errors that escape botocore's wrapping during body reads.
    if type(e).__module__.startswith("urllib3"):
        return StoreUnavailable(f"{where}: network failure ({type(e).__name__}: {scrub(str(e))})")
    return None


# ------------------------------------------------------------------------------------------------
# Helpers


class _LocalWriteError(Exception):
    """A failure writing the local file, kept apart from network failures while streaming."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Bounded(io.BytesIO):
    """An in-memory sink that refuses to grow past `limit` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > self._limit:
            raise OSError(f"more than {self._limit} bytes")
        return super().write(data)


def _chunks(body: Any, size: int) -> Iterator[bytes]:
    # iter_chunks defaults to 1 KiB reads; always pass the configured size.
    chunk: bytes
    for chunk in body.iter_chunks(chunk_size=size):
        if chunk:
            yield chunk


def _write(sink: IO[bytes], chunk: bytes) -> None:
    try:
        sink.write(chunk)
    except OSError as e:
        raise _LocalWriteError(e.strerror or str(e)) from e


def _etag(value: object) -> str:
    return str(value or "").strip('"')


def _version_id(value: object) -> str | None:
    # An unversioned bucket answers no VersionId, or "null" when versioning was suspended.
    text = str(value or "")
    return None if text in ("", "null") else text


def _normalize_sha256(value: str) -> str:
    v = (value or "").strip().lower()
    v = v.removeprefix("sha256:")
    if not _SHA256_RE.fullmatch(v):
        raise StoreError(
            f"expected sha256 {value!r} is not 64 hexadecimal characters; refusing to download"
        )
    return v


def _redact_url(url: str) -> str:
    """Drop user:password@ from a URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


_URL_USERINFO = re.compile(r"(?P<scheme>https?://)[^/@\s]+@")


def _redact_urls_in(text: str) -> str:
    return _URL_USERINFO.sub(r"\g<scheme>", text)
