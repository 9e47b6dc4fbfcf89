"""Unit tests of modelreg.adapters.objectstore: URI rules, config hygiene, streaming hashes,
verified downloads and the translation of every boto3 failure into a StoreError.

The fake sits at the boto3 boundary (botocore's own Stubber on the real client); the network
failure test uses a real closed port. Real S3 round trips live in tests/e2e.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from modelreg.adapters.objectstore import (
    AccessDenied,
    DigestMismatch,
    InvalidURI,
    ObjectNotFound,
    ObjectStore,
    S3Location,
    StoreConfig,
    StoreError,
    StoreUnavailable,
)

KEY_ID = "AKIAEXAMPLEKEYID0001"
SECRET = "s3cr3t/VALUE+never-shown"
CFG = StoreConfig(
    endpoint="http://127.0.0.1:1",
    region="us-east-1",
    access_key_id=KEY_ID,
    secret_access_key=SECRET,
)
URI = "s3://models/credit/3/model.onnx"


# ------------------------------------------------------------------------------------------------
# S3Location


@pytest.mark.parametrize(
    ("uri", "bucket", "key"),
    [
        ("s3://models/a/b.onnx", "models", "a/b.onnx"),
        ("S3://models/a", "models", "a"),
        ("s3://my.bucket-1/x y/z?#", "my.bucket-1", "x y/z?#"),
        ("s3://models/prefix/", "models", "prefix/"),
    ],
)
def test_parse_accepts(uri: str, bucket: str, key: str) -> None:
    loc = S3Location.parse(uri)
    assert (loc.bucket, loc.key) == (bucket, key)
    assert loc.uri() == f"s3://{bucket}/{key}"


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("http://models/a", "not an s3:// URI"),
        ("models/a", "not an s3:// URI"),
        ("", "not an s3:// URI"),
        ("s3://models", "names a bucket"),
        ("s3://models/", "names a bucket"),
        ("s3:///key", "not a valid bucket"),
        ("s3://Models/key", "not a valid bucket"),
        ("s3://ab/key", "not a valid bucket"),
        ("s3://a..b/key", "not a valid bucket"),
        ("s3://models/a/../b", "'..' segments"),
        ("s3://models/./b", "'..' segments"),
        ("s3://models/a/..", "'..' segments"),
        ("s3://models/a\nb", "control characters"),
        ("s3://models/" + "k" * 1025, "longer than 1024"),
    ],
)
def test_parse_rejects(uri: str, fragment: str) -> None:
    with pytest.raises(InvalidURI, match=fragment):
        S3Location.parse(uri)


def test_parse_rejects_non_string() -> None:
    with pytest.raises(InvalidURI, match="got int"):
        S3Location.parse(42)  # type: ignore[arg-type]


def test_parse_prefix_accepts_bare_bucket() -> None:
    assert S3Location.parse_prefix("s3://models/") == S3Location("models", "")
    assert S3Location.parse_prefix("s3://models") == S3Location("models", "")


@pytest.mark.parametrize(
    ("obj", "prefix", "expected"),
    [
        ("s3://mdl/a/b/x", "s3://mdl/a/b", True),
        ("s3://mdl/a/b/x", "s3://mdl/a/b/", True),
        ("s3://mdl/a/b/c/d", "s3://mdl/a", True),
        ("s3://mdl/a/bc", "s3://mdl/a/b", False),
        ("s3://mdl/a/b", "s3://mdl/a/b", False),
        ("s3://mdl/a/b/", "s3://mdl/a/b", False),
        ("s3://other/a/b/x", "s3://mdl/a/b", False),
        ("s3://mdl/x", "s3://mdl/", True),
    ],
)
def test_is_under(obj: str, prefix: str, expected: bool) -> None:
    assert S3Location.parse(obj).is_under(S3Location.parse_prefix(prefix)) is expected


# ------------------------------------------------------------------------------------------------
# StoreConfig


def test_config_hides_credentials() -> None:
    text = repr(CFG) + str(CFG) + repr(ObjectStore(CFG))
    assert SECRET not in text
    assert KEY_ID not in text
    assert "127.0.0.1" in text


def test_config_empty_strings_mean_unset() -> None:
    cfg = StoreConfig(endpoint="", region="", access_key_id="", secret_access_key="")
    assert cfg == StoreConfig()


def test_config_rejects_half_credentials() -> None:
    with pytest.raises(AccessDenied, match="incomplete"):
        StoreConfig(access_key_id=KEY_ID)


def test_config_rejects_bad_endpoint_without_echoing_userinfo() -> None:
    with pytest.raises(InvalidURI) as info:
        StoreConfig(endpoint="ftp://user:pw@host")
    assert "pw" not in str(info.value)


# ------------------------------------------------------------------------------------------------
# The store, with botocore's Stubber on the real client


@pytest.fixture
def store() -> Iterator[ObjectStore]:
    s = ObjectStore(CFG, chunk_bytes=64 * 1024, max_attempts=1, timeout=2)
    yield s
    s.close()


@pytest.fixture
def stub(store: ObjectStore) -> Iterator[Stubber]:
    with Stubber(store._client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def _body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def _get(stub: Stubber, data: bytes, etag: str = '"abc"') -> None:
    stub.add_response(
        "get_object",
        {"Body": _body(data), "ContentLength": len(data), "ETag": etag},
        {"Bucket": "models", "Key": "credit/3/model.onnx"},
    )


def test_head(store: ObjectStore, stub: Stubber) -> None:
    stub.add_response(
        "head_object",
        {"ContentLength": 123, "ETag": '"e1"'},
        {"Bucket": "models", "Key": "credit/3/model.onnx"},
    )
    info = asyncio.run(store.head(URI))
    assert (info.size, info.etag) == (123, "e1")


@pytest.mark.parametrize(
    ("error", "exc", "fragment"),
    [
        (("NoSuchKey", 404), ObjectNotFound, "no such object"),
        (("404", 404), ObjectNotFound, "no such object"),
        (("NoSuchBucket", 404), ObjectNotFound, "no such bucket"),
        (("AccessDenied", 403), AccessDenied, "access denied"),
        (("SignatureDoesNotMatch", 403), AccessDenied, "access denied"),
        (("SlowDown", 503), StoreUnavailable, "unavailable"),
        (("InternalError", 500), StoreUnavailable, "unavailable"),
        (("Whatever", 502), StoreUnavailable, "unavailable"),
        (("InvalidRequest", 400), StoreError, "InvalidRequest"),
    ],
)
def test_client_errors_are_translated_and_scrubbed(
    store: ObjectStore,
    stub: Stubber,
    error: tuple[str, int],
    exc: type[StoreError],
    fragment: str,
) -> None:
    code, status = error
    # A store that echoes credentials in its message must not get them into ours.
    stub.add_client_error(
        "head_object",
        service_error_code=code,
        service_message=f"bad {KEY_ID} {SECRET}",
        http_status_code=status,
    )
    with pytest.raises(exc, match=fragment) as info:
        asyncio.run(store.head(URI))
    assert type(info.value) is exc
    assert isinstance(info.value.__cause__, botocore.exceptions.ClientError)
    assert SECRET not in str(info.value)
    assert KEY_ID not in str(info.value)
    assert URI in str(info.value)


def test_head_rejects_bad_uri_before_any_call(store: ObjectStore, stub: Stubber) -> None:
    with pytest.raises(InvalidURI):
        asyncio.run(store.head("s3://models/../etc/passwd"))


def test_sha256_streams_in_chunks(store: ObjectStore, stub: Stubber) -> None:
    data = bytes(range(256)) * 1000  # 256 kB: several 64 KiB reads
    _get(stub, data)
    reads: list[int] = []
    original = StreamingBody.iter_chunks

    def spy(self: StreamingBody, chunk_size: int = 1024) -> Iterator[bytes]:
        reads.append(chunk_size)
        return original(self, chunk_size)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(StreamingBody, "iter_chunks", spy)
        digest = asyncio.run(store.sha256(URI))
    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    assert (digest.size, digest.etag) == (len(data), "abc")
    assert reads == [64 * 1024]


def test_sha256_of_truncated_body_is_unavailable(store: ObjectStore, stub: Stubber) -> None:
    data = b"x" * 1000
    stub.add_response(
        "get_object",
        {"Body": StreamingBody(io.BytesIO(data[:500]), 1000), "ContentLength": 1000},
        {"Bucket": "models", "Key": "credit/3/model.onnx"},
    )
    with pytest.raises(StoreUnavailable):
        asyncio.run(store.sha256(URI))


def test_download_verified(store: ObjectStore, stub: Stubber, tmp_path: Path) -> None:
    data = b"onnx-bytes" * 10_000
    _get(stub, data)
    dest = tmp_path / "sub" / "model.onnx"
    digest = asyncio.run(store.download(URI, dest, hashlib.sha256(data).hexdigest().upper()))
    assert dest.read_bytes() == data
    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.onnx"]


def test_download_mismatch_leaves_nothing(
    store: ObjectStore, stub: Stubber, tmp_path: Path
) -> None:
    data = b"tampered"
    _get(stub, data)
    dest = tmp_path / "model.onnx"
    expected = "0" * 64
    with pytest.raises(DigestMismatch) as info:
        asyncio.run(store.download(URI, dest, expected))
    assert info.value.expected == expected
    assert info.value.actual == hashlib.sha256(data).hexdigest()
    assert list(tmp_path.iterdir()) == []


def test_download_mismatch_keeps_existing_file(
    store: ObjectStore, stub: Stubber, tmp_path: Path
) -> None:
    dest = tmp_path / "model.onnx"
    dest.write_bytes(b"good")
    _get(stub, b"evil")
    with pytest.raises(DigestMismatch):
        asyncio.run(store.download(URI, dest, hashlib.sha256(b"good").hexdigest()))
    assert dest.read_bytes() == b"good"


@pytest.mark.parametrize("bad", ["", "abc", "g" * 64, "0" * 63])
def test_download_rejects_malformed_expected_digest(
    store: ObjectStore, stub: Stubber, tmp_path: Path, bad: str
) -> None:
    with pytest.raises(StoreError, match="64 hexadecimal"):
        asyncio.run(store.download(URI, tmp_path / "m", bad))


class _BrokenBody:
    def __init__(self, exc: BaseException) -> None:
        self._exc = exc

    def iter_chunks(self, chunk_size: int = 1024) -> Iterator[bytes]:
        yield b"partial"
        raise self._exc

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "exc",
    [
        botocore.exceptions.ResponseStreamingError(error="connection reset"),
        botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
)
def test_download_network_failure_midway(
    store: ObjectStore, tmp_path: Path, exc: BaseException, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_get(**kwargs: Any) -> dict[str, Any]:
        return {"Body": _BrokenBody(exc), "ContentLength": 100, "ETag": '"e"'}

    monkeypatch.setattr(store._client, "get_object", fake_get)
    with pytest.raises(StoreUnavailable):
        asyncio.run(store.download(URI, tmp_path / "m", "0" * 64))
    assert list(tmp_path.iterdir()) == []


def test_download_into_unwritable_dir_is_a_store_error(store: ObjectStore, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(StoreError, match="cannot write"):
        asyncio.run(store.download(URI, blocker / "m", "0" * 64))


def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The port is closed now: a real EndpointConnectionError from botocore.
    cfg = StoreConfig(
        endpoint=f"http://user:pw@127.0.0.1:{port}",
        region="us-east-1",
        access_key_id=KEY_ID,
        secret_access_key=SECRET,
    )
    store = ObjectStore(cfg, timeout=1, max_attempts=1)
    try:
        with pytest.raises(StoreUnavailable, match="unreachable") as info:
            asyncio.run(store.head(URI))
    finally:
        store.close()
    assert isinstance(info.value.__cause__, botocore.exceptions.EndpointConnectionError)
    assert "pw" not in str(info.value)


def test_no_credentials_is_access_denied(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = ObjectStore(StoreConfig(endpoint="http://127.0.0.1:1", region="us-east-1"))
    try:
        with pytest.raises(AccessDenied, match="credentials"):
            asyncio.run(store.head(URI))
    finally:
        store.close()
