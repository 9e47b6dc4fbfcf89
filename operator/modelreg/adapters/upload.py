"""Publishing artifacts: a streaming, multipart S3 upload that hashes the bytes on the way.

Caller: the SDK (`modelreg.sdk.client.Client.register`, the MLflow import), on the user's machine.
The operator and the model server only read, through `modelreg.adapters.objectstore`; this module
reuses that module's types (`StoreConfig`, `S3Location`, the `StoreError` family) so callers see a
single error vocabulary, and like it never lets a boto3/botocore exception escape.

How the upload stays fast and small:
- the file is read sequentially in parts on the calling thread, which also feeds the sha256
  (hashlib releases the GIL, so hashing overlaps with the parts being sent by the workers);
- at most `concurrency` parts are in flight, and a part is read only when a slot is free, so
  memory is bounded by concurrency x part size whatever the size of the file;
- the parts are sent with an UNSIGNED-PAYLOAD SigV4 signature: over plain http botocore would
  otherwise hash every part a second time to sign it. Integrity does not depend on it: the
  operator verifies the whole object's sha256 before the version can be used.
- boto3's default CRC checksums are off (`when_required`), which S3-compatible stores reject.

The client is built like `ObjectStore`'s (path-style addressing for custom endpoints, the same
checksum settings), plus a connection pool as large as the upload concurrency.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import boto3
import botocore.config
import botocore.exceptions

from modelreg.adapters.objectstore import (
    AccessDenied,
    ObjectNotFound,
    S3Location,
    StoreConfig,
    StoreError,
    translate,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["MissingCredentials", "ObjectExists", "UploadResult", "Uploader", "s3_client"]

MIB = 1024 * 1024
MIN_PART_BYTES = 5 * MIB  # S3: every part but the last is at least 5 MiB
MAX_PARTS = 10_000  # S3: at most 10,000 parts per upload

ProgressFn = Callable[[int], None]
"""Called on the calling thread with the number of bytes just confirmed by the store."""


class ObjectExists(StoreError):
    """A conditional write found an object already at the key."""


class MissingCredentials(AccessDenied):
    """No credentials were given and boto3's default chain found none."""


@dataclass(frozen=True)
class StoredObject:
    uri: str
    size: int
    modified: float  # epoch seconds


@dataclass(frozen=True)
class UploadResult:
    uri: str
    sha256: str
    size: int
    etag: str
    parts: int


def s3_client(
    config: StoreConfig,
    *,
    pool: int = 10,
    timeout: float = 60.0,
    max_attempts: int = 3,
    sign_payload: bool = False,
) -> S3Client:
    """A boto3 S3 client configured for S3-compatible stores (see the module docstring)."""
    s3_options: Any = {"payload_signing_enabled": sign_payload}
    if config.endpoint:
        s3_options["addressing_style"] = "path"
    boto_config = botocore.config.Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=min(timeout, 10.0),
        read_timeout=timeout,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=max(pool, 1),
        s3=s3_options,
    )
    try:
        client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=config.endpoint,
            region_name=config.region,
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key,
            config=boto_config,
        )
    except (botocore.exceptions.BotoCoreError, ValueError) as e:
        raise StoreError(f"cannot configure the object-store client: {e}") from e
    return client


def part_size_for(total: int, preferred: int) -> int:
    """The part size for a file of `total` bytes: `preferred`, grown to fit in 10,000 parts."""
    return max(preferred, MIN_PART_BYTES, -(-total // MAX_PARTS))


class Uploader:
    """Uploads files to one store. Thread-safe for sequential use; call `close()` when done."""

    def __init__(
        self,
        config: StoreConfig,
        *,
        part_bytes: int = 8 * MIB,
        concurrency: int = 4,
        timeout: float = 60.0,
        max_attempts: int = 3,
        sign_payload: bool = False,
        client: S3Client | None = None,
    ) -> None:
        if part_bytes < MIN_PART_BYTES:
            raise ValueError(f"part_bytes must be at least {MIN_PART_BYTES} (S3's minimum)")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.part_bytes = part_bytes
        self.concurrency = concurrency
        self._secrets = tuple(s for s in (config.access_key_id, config.secret_access_key) if s)
        self._client = client or s3_client(
            config,
            pool=concurrency + 2,
            timeout=timeout,
            max_attempts=max_attempts,
            sign_payload=sign_payload,
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()

    def __enter__(self) -> Uploader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API --------------------------------------------------------------------------

    def upload(
        self,
        src: Path,
        uri: str,
        *,
        progress: ProgressFn | None = None,
        content_type: str | None = None,
        if_none_match: bool = False,
    ) -> UploadResult:
        """Stream the file `src` to `uri` and return the sha256 of exactly the bytes sent.

        `if_none_match` makes the write conditional (S3 `If-None-Match: *`): it fails with
        ObjectExists when the key is taken. Best effort: a store answering 501 NotImplemented
        gets an unconditional write.
        """
        loc = S3Location.parse(uri)
        extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
        cond: dict[str, Any] = {"IfNoneMatch": "*"} if if_none_match else {}
        with _open(Path(src)) as f:
            total = os.fstat(f.fileno()).st_size
            part = part_size_for(total, self.part_bytes)
            if total <= part:
                return self._put_single(f, src, loc, extra | cond, progress)
            return self._put_multipart(
                f, src, loc, part=part, extra=extra, cond=cond, progress=progress
            )

    def exists(self, uri: str) -> bool:
        """True when an object is at `uri`."""
        loc = S3Location.parse(uri)
        try:
            self._client.head_object(Bucket=loc.bucket, Key=loc.key)
        except Exception as e:
            try:
                self._translate(e, loc, "head")
            except ObjectNotFound:
                return False
        return True

    def any_under(self, prefix_uri: str) -> bool:
        """True when at least one object's key starts with the prefix (a directory) `prefix_uri`."""
        loc = S3Location.parse_prefix(prefix_uri)
        prefix = loc.key if loc.key.endswith("/") or not loc.key else loc.key + "/"
        try:
            resp = self._client.list_objects_v2(Bucket=loc.bucket, Prefix=prefix, MaxKeys=1)
        except Exception as e:
            self._translate(e, loc, "list")
        return int(resp.get("KeyCount", 0)) > 0

    def list_under(self, prefix_uri: str, limit: int = 100_000) -> list[StoredObject]:
        """Every object under the prefix (a directory) `prefix_uri`, paged, at most `limit`."""
        loc = S3Location.parse_prefix(prefix_uri)
        prefix = loc.key if loc.key.endswith("/") or not loc.key else loc.key + "/"
        out: list[StoredObject] = []
        token: str | None = None
        while len(out) < limit:
            kwargs: dict[str, Any] = {"Bucket": loc.bucket, "Prefix": prefix, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            try:
                resp = self._client.list_objects_v2(**kwargs)
            except Exception as e:
                self._translate(e, loc, "list")
            for item in resp.get("Contents", []) or []:
                modified = item.get("LastModified")
                out.append(
                    StoredObject(
                        uri=f"s3://{loc.bucket}/{item['Key']}",
                        size=int(item.get("Size", 0)),
                        modified=modified.timestamp() if modified is not None else 0.0,
                    )
                )
            token = resp.get("NextContinuationToken")
            if not resp.get("IsTruncated") or not token:
                break
        return out[:limit]

    def copy(self, src_uri: str, dst_uri: str) -> None:
        """Server-side copy (multipart for large objects); the bytes do not travel through here."""
        src, dst = S3Location.parse(src_uri), S3Location.parse(dst_uri)
        try:
            self._client.copy({"Bucket": src.bucket, "Key": src.key}, dst.bucket, dst.key)
        except Exception as e:
            self._translate(e, dst, f"copy {src.uri()} to")

    def delete(self, uri: str) -> None:
        """Delete the object at `uri`; a missing object is not an error."""
        loc = S3Location.parse(uri)
        try:
            self._client.delete_object(Bucket=loc.bucket, Key=loc.key)
        except Exception as e:
            try:
                self._translate(e, loc, "delete")
            except ObjectNotFound:
                return

    # -- workers ------------------------------------------------------------------------------

    def _put_single(
        self,
        f: IO[bytes],
        src: Path,
        loc: S3Location,
        extra: dict[str, Any],
        progress: ProgressFn | None,
    ) -> UploadResult:
        data = _read(f, src, -1)
        digest = hashlib.sha256(data).hexdigest()
        cond = {k: extra.pop(k) for k in list(extra) if k == "IfNoneMatch"}
        resp = self._call(
            self._client.put_object,
            loc,
            "put",
            cond,
            Bucket=loc.bucket,
            Key=loc.key,
            Body=data,
            **extra,
        )
        if progress:
            progress(len(data))
        return UploadResult(loc.uri(), digest, len(data), _etag(resp.get("ETag")), 1)

    def _put_multipart(
        self,
        f: IO[bytes],
        src: Path,
        loc: S3Location,
        *,
        part: int,
        extra: dict[str, Any],
        cond: dict[str, Any],
        progress: ProgressFn | None,
    ) -> UploadResult:
        try:
            upload_id = self._client.create_multipart_upload(
                Bucket=loc.bucket, Key=loc.key, **extra
            )["UploadId"]
        except Exception as e:
            self._translate(e, loc, "start upload")
        h = hashlib.sha256()
        size = 0
        etags: dict[int, str] = {}
        pending: set[Future[tuple[int, str, int]]] = set()

        def collect(done: set[Future[tuple[int, str, int]]]) -> None:
            for fut in done:
                number, etag, sent = fut.result()  # re-raises a part's StoreError
                etags[number] = etag
                if progress:
                    progress(sent)

        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="upload")
        try:
            number = 0
            while True:
                # A slot first, then the read: at most `concurrency` parts exist in memory.
                while len(pending) >= self.concurrency:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    collect(done)
                chunk = _read(f, src, part)
                if not chunk:
                    break
                number += 1
                pending.add(pool.submit(self._upload_part, loc, upload_id, number, chunk))
                # Hash while the part is on its way: hashlib drops the GIL for large buffers.
                h.update(chunk)
                size += len(chunk)
                del chunk  # only the in-flight futures keep parts alive
            done, pending = wait(pending)
            collect(done)
            parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
            resp = self._call(
                self._client.complete_multipart_upload,
                loc,
                "complete upload",
                cond,
                Bucket=loc.bucket,
                Key=loc.key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            # Best effort: an abandoned multipart upload holds storage until a lifecycle rule.
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(
                    Bucket=loc.bucket, Key=loc.key, UploadId=upload_id
                )
            raise
        pool.shutdown(wait=True)
        return UploadResult(loc.uri(), h.hexdigest(), size, _etag(resp.get("ETag")), len(parts))

    def _call(
        self, fn: Callable[..., Any], loc: S3Location, action: str, cond: dict[str, Any], **kw: Any
    ) -> Any:
        """Call `fn` with the conditional-write headers `cond`; a store that does not implement
        conditional writes (501 NotImplemented) gets the plain call instead (best effort)."""
        try:
            return fn(**kw, **cond)
        except Exception as e:
            if cond and _not_implemented(e):
                try:
                    return fn(**kw)
                except Exception as again:
                    self._translate(again, loc, action)
            self._translate(e, loc, action)

    def _upload_part(
        self, loc: S3Location, upload_id: str, number: int, chunk: bytes
    ) -> tuple[int, str, int]:
        try:
            resp = self._client.upload_part(
                Bucket=loc.bucket,
                Key=loc.key,
                UploadId=upload_id,
                PartNumber=number,
                Body=chunk,
            )
        except Exception as e:
            self._translate(e, loc, f"upload part {number} of")
        return number, str(resp["ETag"]), len(chunk)

    # -- error translation --------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _translate(self, e: BaseException, loc: S3Location, action: str) -> NoReturn:
        """Map a boto3/botocore/network exception onto the StoreError family; always raises.

        Conditional writes and missing credentials mean something particular here; everything
        else is the object store's one translation (`objectstore.translate`).
        """
        where = f"{action} {loc.uri()}"
        if isinstance(e, StoreError):
            raise e
        if isinstance(e, botocore.exceptions.ClientError):
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412:
                raise ObjectExists(f"{where}: an object already exists at this key") from e
        if isinstance(
            e, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
        ):
            raise MissingCredentials(f"{where}: no usable object-store credentials") from e
        error = translate(e, where, self._scrub)
        if error is None:
            raise e
        raise error from e


def _not_implemented(e: BaseException) -> bool:
    if not isinstance(e, botocore.exceptions.ClientError):
        return False
    code = str(e.response.get("Error", {}).get("Code", ""))
    status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code == "NotImplemented" or status == 501


def _open(src: Path) -> IO[bytes]:
    try:
        return src.open("rb")
    except OSError as e:
        raise StoreError(f"cannot read {src}: {e.strerror or e}") from e


def _read(f: IO[bytes], src: Path, n: int) -> bytes:
    try:
        return f.read(n)
    except OSError as e:
        raise StoreError(f"cannot read {src}: {e.strerror or e}") from e


def _etag(value: object) -> str:
    return str(value or "").strip('"')
