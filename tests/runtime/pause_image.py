#!/usr/bin/python3
"""Build the pod sandbox ("pause") image locally, as an OCI image layout tar
that `ctr images import` loads, so the runtime tests never pull from a
registry.

The layer holds one static binary compiled from pause.c; all tars are
deterministic (sorted, uid/gid 0, mtime 0) so the image digest is stable.
The image name needs a registry part ("localhost/..."): a bare "e2e/pause"
would be normalised to docker.io/e2e/pause.

usage: pause_image.py SRC.c OUT.tar IMAGE_NAME
"""
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile


def tar_bytes(members):
    """members: [(name, bytes, mode)] -> deterministic tar as bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data, mode in sorted(members):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), mode, 0
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def main(src, out, name):
    with tempfile.TemporaryDirectory() as tmp:
        binary = os.path.join(tmp, "pause")
        subprocess.run(["gcc", "-Os", "-static", "-s", "-o", binary, src], check=True)
        with open(binary, "rb") as f:
            pause = f.read()

    blobs = {}

    def blob(data):
        digest = hashlib.sha256(data).hexdigest()
        blobs["blobs/sha256/" + digest] = data
        return {"digest": "sha256:" + digest, "size": len(data)}

    def js(obj):
        return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()

    layer = blob(tar_bytes([("pause", pause, 0o755)]))
    config = blob(js({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
    }))
    manifest = blob(js({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **config),
        "layers": [dict(mediaType="application/vnd.oci.image.layer.v1.tar", **layer)],
    }))
    index = js({
        "schemaVersion": 2,
        "manifests": [dict(
            mediaType="application/vnd.oci.image.manifest.v1+json",
            annotations={
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
            },
            platform={"architecture": "amd64", "os": "linux"},
            **manifest,
        )],
    })
    files = [(p, d, 0o644) for p, d in blobs.items()]
    files += [("index.json", index, 0o644), ("oci-layout", js({"imageLayoutVersion": "1.0.0"}), 0o644)]
    tmp_out = out + ".tmp"
    with open(tmp_out, "wb") as f:
        f.write(tar_bytes(files))
    os.rename(tmp_out, out)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
