"""The object-store adapter against the real S3 server (versitygw) of the local environment.

What the unit tests can only fake: real ETags (multipart ones are not digests), real error codes
for missing keys and buckets and for bad credentials, and streaming hashes of real bodies. Used by
the runtime (download) and the operator (head, sha256).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import boto3.s3.transfer
import pytest

from modelreg.adapters.objectstore import (
    AccessDenied,
    DigestMismatch,
    ObjectNotFound,
    ObjectStore,
    StoreConfig,
)
from tests.e2e.helpers import S3

MIB = 1024 * 1024


@pytest.fixture
def store(s3: S3) -> Iterator[ObjectStore]:
    st = ObjectStore(
        StoreConfig(
            endpoint=s3.endpoint,
            region=s3.region,
            access_key_id=s3.access_key_id,
            secret_access_key=s3.secret_access_key,
        ),
        chunk_bytes=1 * MIB,
    )
    yield st
    st.close()


@pytest.fixture
def prefix(s3: S3) -> Iterator[str]:
    p = f"e2e-objectstore-{secrets.token_hex(4)}"
    yield p
    client = s3.client()
    listed = client.list_objects_v2(Bucket=s3.bucket, Prefix=p + "/")
    for obj in listed.get("Contents", []):
        client.delete_object(Bucket=s3.bucket, Key=obj["Key"])


def test_head_hash_download_small_object(
    s3: S3, store: ObjectStore, prefix: str, tmp_path: Path
) -> None:
    data = os.urandom(100_000)
    sha = s3.put(f"{prefix}/small.bin", data)
    uri = f"s3://{s3.bucket}/{prefix}/small.bin"
    info = asyncio.run(store.head(uri))
    assert info.size == len(data)
    digest = asyncio.run(store.sha256(uri))
    assert (digest.sha256, digest.size, digest.etag) == (sha, len(data), info.etag)
    dest = tmp_path / "m" / "small.bin"
    got = asyncio.run(store.download(uri, dest, sha))
    assert got.sha256 == sha
    assert dest.read_bytes() == data


def test_multipart_object_hashes_to_the_file_sha256(
    s3: S3, store: ObjectStore, prefix: str, tmp_path: Path
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(12 * MIB))
    key = f"{prefix}/big.bin"
    config = boto3.s3.transfer.TransferConfig(
        multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB
    )
    s3.client().upload_file(str(src), s3.bucket, key, Config=config)
    uri = f"s3://{s3.bucket}/{key}"
    info = asyncio.run(store.head(uri))
    assert info.etag.endswith("-3"), info.etag  # a multipart ETag: no digest of the bytes
    expected = hashlib.sha256(src.read_bytes()).hexdigest()
    assert asyncio.run(store.sha256(uri)).sha256 == expected
    dest = tmp_path / "copy.bin"
    asyncio.run(store.download(uri, dest, expected))
    assert dest.read_bytes() == src.read_bytes()


def test_mismatch_leaves_nothing(s3: S3, store: ObjectStore, prefix: str, tmp_path: Path) -> None:
    s3.put(f"{prefix}/x.bin", b"real bytes")
    with pytest.raises(DigestMismatch):
        asyncio.run(
            store.download(f"s3://{s3.bucket}/{prefix}/x.bin", tmp_path / "x.bin", "0" * 64)
        )
    assert list(tmp_path.iterdir()) == []


def test_missing_key_and_bucket(s3: S3, store: ObjectStore, prefix: str) -> None:
    with pytest.raises(ObjectNotFound, match="no such object"):
        asyncio.run(store.head(f"s3://{s3.bucket}/{prefix}/absent.bin"))
    with pytest.raises(ObjectNotFound, match="no such object"):
        asyncio.run(store.sha256(f"s3://{s3.bucket}/{prefix}/absent.bin"))
    with pytest.raises(ObjectNotFound):
        asyncio.run(store.sha256(f"s3://no-such-bucket-{secrets.token_hex(4)}/k"))


def test_wrong_secret_is_access_denied_without_the_secret(s3: S3, prefix: str) -> None:
    s3.put(f"{prefix}/y.bin", b"y")
    wrong = "wrong-" + secrets.token_hex(8)
    st = ObjectStore(
        StoreConfig(
            endpoint=s3.endpoint,
            region=s3.region,
            access_key_id=s3.access_key_id,
            secret_access_key=wrong,
        ),
        max_attempts=1,
    )
    try:
        with pytest.raises(AccessDenied) as info:
            asyncio.run(st.sha256(f"s3://{s3.bucket}/{prefix}/y.bin"))
    finally:
        st.close()
    assert wrong not in str(info.value)
    assert s3.access_key_id not in str(info.value)
