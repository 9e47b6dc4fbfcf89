"""Package one static binary as an OCI image archive `FROM scratch`, for `ctr images import`.

    python3 tools/oci_scratch.py BINARY REF OUT.tar

Used for the pause image (built from k8s' own pause.c by tools/build.sh): no registry, no image
builder. The archive is reproducible: fixed timestamps, owner root, the binary at /<name> as the
entrypoint.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile


def _blob(out: tarfile.TarFile, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    info.mtime = 0
    out.addfile(info, io.BytesIO(data))
    return f"sha256:{digest}", len(data)


def _layer(binary: str) -> bytes:
    buf = io.BytesIO()
    name = os.path.basename(binary)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as layer:
        info = layer.gettarinfo(binary, arcname=name)
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0
        info.mode = 0o755
        with open(binary, "rb") as f:
            layer.addfile(info, f)
    return buf.getvalue()


def build(binary: str, ref: str, out_path: str) -> None:
    name = os.path.basename(binary)
    layer = _layer(binary)
    tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else "latest"
    with tarfile.open(out_path + ".tmp", mode="w") as out:
        layer_digest, layer_size = _blob(out, layer)
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": [f"/{name}"], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
        cfg_digest, cfg_size = _blob(out, json.dumps(config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": cfg_digest,
                "size": cfg_size,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": layer_size,
                }
            ],
        }
        man_digest, man_size = _blob(out, json.dumps(manifest, sort_keys=True).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": man_digest,
                    "size": man_size,
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": ref,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }
        for fname, doc in (
            ("oci-layout", {"imageLayoutVersion": "1.0.0"}),
            ("index.json", index),
        ):
            data = json.dumps(doc, sort_keys=True).encode()
            info = tarfile.TarInfo(fname)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    os.replace(out_path + ".tmp", out_path)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: oci_scratch.py BINARY REF OUT.tar")
    build(*sys.argv[1:])
