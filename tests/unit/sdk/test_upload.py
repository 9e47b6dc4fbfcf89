"""Unit tests of modelreg.adapters.upload: part sizing, bounded concurrency, the sha256 of the bytes
sent, aborting on failure, and translating botocore errors. The fake sits at the boto3 boundary
(a stand-in S3 client object); real round trips to an S3 server live in tests/e2e.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from modelreg.adapters.objectstore import (
    AccessDenied,
    ObjectNotFound,
    StoreConfig,
    StoreUnavailable,
)
from modelreg.adapters.upload import (
    MIB,
    MissingCredentials,
    ObjectExists,
    Uploader,
    part_size_for,
    s3_client,
)

CFG = StoreConfig(
    endpoint="http://127.0.0.1:1",
    region="us-east-1",
    access_key_id="AKIAKEY",
    secret_access_key="sEcReT",
)
URI = "s3://models/credit/1/model.bin"


def client_error(code: str, status: int, message: str = "") -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {
            "Error": {"Code": code, "Message": message or code},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "Op",
    )


class FakeS3:
    """Records calls; parts take `delay` seconds so concurrency is observable."""

    def __init__(
        self, delay: float = 0.0, fail_part: int | None = None, fail_with: Exception | None = None
    ) -> None:
        self.delay = delay
        self.fail_part = fail_part
        self.fail_with = fail_with
        self.parts: dict[int, bytes] = {}
        self.puts: dict[str, bytes] = {}
        self.completed: list[dict[str, Any]] = []
        self.aborted: list[str] = []
        self.created: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.existing: set[str] = set()
        self.closed = False

    def create_multipart_upload(self, **kw: Any) -> dict[str, Any]:
        self.created.append(kw)
        return {"UploadId": "up-1"}

    def upload_part(
        self, *, Bucket: str, Key: str, UploadId: str, PartNumber: int, Body: bytes
    ) -> dict[str, Any]:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            if PartNumber == self.fail_part:
                raise self.fail_with or client_error("InternalError", 500)
            self.parts[PartNumber] = bytes(Body)
            return {"ETag": f'"etag-{PartNumber}"'}
        finally:
            with self.lock:
                self.in_flight -= 1

    def complete_multipart_upload(self, **kw: Any) -> dict[str, Any]:
        self.completed.append(kw)
        if kw.get("IfNoneMatch") and kw["Key"] in self.existing:
            raise client_error("PreconditionFailed", 412)
        return {"ETag": '"final-3"'}

    def abort_multipart_upload(self, **kw: Any) -> None:
        self.aborted.append(kw["UploadId"])

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, **kw: Any) -> dict[str, Any]:
        if self.fail_with:
            raise self.fail_with
        self.puts[Key] = Body
        return {"ETag": '"single"'}

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        if Key not in self.existing:
            raise client_error("404", 404, "Not Found")
        return {"ContentLength": 1}

    def list_objects_v2(self, *, Bucket: str, Prefix: str, MaxKeys: int) -> dict[str, Any]:
        return {"KeyCount": sum(1 for k in self.existing if k.startswith(Prefix))}

    def delete_object(self, *, Bucket: str, Key: str) -> None:
        self.existing.discard(Key)

    def close(self) -> None:
        self.closed = True


def write(tmp_path: Path, size: int) -> Path:
    p = tmp_path / "model.bin"
    block = bytes(range(256)) * 4096  # 1 MiB, not constant, so part order matters
    with p.open("wb") as f:
        remaining = size
        while remaining:
            n = min(remaining, len(block))
            f.write(block[:n])
            remaining -= n
    return p


def test_part_size_grows_to_stay_within_10000_parts() -> None:
    assert part_size_for(100 * MIB, 8 * MIB) == 8 * MIB
    assert part_size_for(200_000 * MIB, 8 * MIB) == 20 * MIB
    assert part_size_for(1, 1) == 5 * MIB


def test_multipart_upload_is_bounded_and_hashes_the_bytes(tmp_path: Path) -> None:
    src = write(tmp_path, 23 * MIB + 123)
    fake = FakeS3(delay=0.05)
    progress: list[int] = []
    up = Uploader(CFG, part_bytes=5 * MIB, concurrency=2, client=fake)  # type: ignore[arg-type]
    result = up.upload(src, URI, progress=progress.append, content_type="application/octet-stream")
    data = src.read_bytes()
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.size == len(data)
    assert result.parts == 5
    assert result.etag == "final-3"
    assert b"".join(fake.parts[n] for n in sorted(fake.parts)) == data
    assert fake.max_in_flight == 2
    assert sum(progress) == len(data)
    assert fake.created[0]["ContentType"] == "application/octet-stream"
    parts = fake.completed[0]["MultipartUpload"]["Parts"]
    assert [p["PartNumber"] for p in parts] == [1, 2, 3, 4, 5]
    assert "IfNoneMatch" not in fake.completed[0]


def test_small_file_is_one_put(tmp_path: Path) -> None:
    src = write(tmp_path, 1000)
    fake = FakeS3()
    result = Uploader(CFG, client=fake).upload(src, URI)  # type: ignore[arg-type]
    assert fake.puts["credit/1/model.bin"] == src.read_bytes()
    assert result.parts == 1
    assert result.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert not fake.created


def test_failed_part_aborts_the_upload(tmp_path: Path) -> None:
    src = write(tmp_path, 16 * MIB)
    fake = FakeS3(fail_part=2, fail_with=client_error("AccessDenied", 403, "no write for AKIAKEY"))
    up = Uploader(CFG, part_bytes=5 * MIB, concurrency=2, client=fake)  # type: ignore[arg-type]
    with pytest.raises(
        AccessDenied, match=r"upload part 2 of s3://models/credit/1/model\.bin"
    ) as e:
        up.upload(src, URI)
    assert "AKIAKEY" not in str(e.value)
    assert fake.aborted == ["up-1"]
    assert not fake.completed


def test_conditional_write_reports_an_existing_object(tmp_path: Path) -> None:
    src = write(tmp_path, 11 * MIB)
    fake = FakeS3()
    fake.existing.add("credit/1/model.bin")
    up = Uploader(CFG, part_bytes=5 * MIB, client=fake)  # type: ignore[arg-type]
    with pytest.raises(ObjectExists):
        up.upload(src, URI, if_none_match=True)
    assert fake.aborted == ["up-1"]


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (client_error("NoSuchBucket", 404), ObjectNotFound),
        (client_error("XAdminUserNotFound", 404), AccessDenied),
        (client_error("InvalidAccessKeyId", 403), AccessDenied),
        (client_error("SlowDown", 503), StoreUnavailable),
        (
            botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
            StoreUnavailable,
        ),
        (botocore.exceptions.NoCredentialsError(), MissingCredentials),
    ],
)
def test_errors_are_translated(tmp_path: Path, exc: Exception, kind: type[Exception]) -> None:
    src = write(tmp_path, 10)
    with pytest.raises(kind):
        Uploader(CFG, client=FakeS3(fail_with=exc)).upload(src, URI)  # type: ignore[arg-type]


def test_exists_any_under_and_delete() -> None:
    fake = FakeS3()
    fake.existing.add("credit/1/model.bin")
    up = Uploader(CFG, client=fake)  # type: ignore[arg-type]
    assert up.exists(URI)
    assert not up.exists("s3://models/credit/2/model.bin")
    assert up.any_under("s3://models/credit/1")
    assert not up.any_under("s3://models/credit/11/")
    up.delete(URI)
    assert not up.exists(URI)
    up.close()
    assert fake.closed


def test_missing_source_file(tmp_path: Path) -> None:
    from modelreg.adapters.objectstore import StoreError

    with pytest.raises(StoreError, match="cannot read"):
        Uploader(CFG, client=FakeS3()).upload(tmp_path / "nope", URI)  # type: ignore[arg-type]


def test_client_configuration_for_s3_compatible_stores() -> None:
    c = s3_client(CFG, pool=6)
    cfg = c.meta.config
    assert cfg.request_checksum_calculation == "when_required"
    assert cfg.response_checksum_validation == "when_required"
    assert cfg.s3 == {"payload_signing_enabled": False, "addressing_style": "path"}
    assert cfg.max_pool_connections == 6
    with pytest.raises(ValueError, match="part_bytes"):
        Uploader(CFG, part_bytes=MIB)
