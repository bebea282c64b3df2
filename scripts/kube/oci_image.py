#!/usr/bin/env python3
"""Write a directory tree as a single-platform OCI image archive that `ctr images import` accepts.

    oci_image.py --out image.tar --name docker.io/library/budeval:0.1.0 --layer ROOTFS_DIR [--layer DIR ...]
        [--entrypoint '["budeval"]'] [--cmd '["serve"]'] [--env K=V ...] [--user 1000:1000] [--workdir /tmp]

Used by scripts/kube/images.sh to build the pause, runner and service images without Docker or a registry. Each
``--layer`` directory becomes one uncompressed layer (media type ``application/vnd.oci.image.layer.v1.tar``), its
contents at the image root, in the order given; files keep their numeric uid/gid and mode as they are on disk.
The contents of ``dev/``, ``proc/`` and ``sys/`` are left out (the runtime mounts them). The archive is an OCI
image layout (image-spec v1.0: ``oci-layout``, ``index.json``, ``blobs/sha256/...``); its manifest carries the
``io.containerd.image.name`` annotation with ``--name`` so containerd imports it under that name, and
``org.opencontainers.image.ref.name`` with the tag. Prints the manifest digest (``sha256:...``) on stdout.

Exit status 2 with a message on bad arguments (a layer that is not a directory, a malformed JSON list).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

SKIP_CONTENTS = ("dev", "proc", "sys")
CHUNK = 1 << 20
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def write_layer(src: Path, out: Path) -> None:
    """Tar ``src``'s contents (relative names, no leading ``./``) into ``out``, uncompressed, PAX format."""

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(src, followlinks=False):
            rel_root = os.path.relpath(root, src)
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(root, name)
                arc = name if rel_root == "." else f"{rel_root}/{name}"
                if rel_root.split("/")[0] in SKIP_CONTENTS and rel_root != ".":
                    continue
                info = tar.gettarinfo(full, arcname=arc)
                info.uname = info.gname = ""
                if info.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)


def _json_list(text: str | None, flag: str) -> list[str] | None:
    if text is None:
        return None
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SystemExit(f"oci_image.py: {flag} must be a JSON list of strings, got {text!r}")
    return value


def build(args: argparse.Namespace) -> None:
    """Write the OCI archive described by the parsed arguments to ``args.out``."""

    layers = [Path(p) for p in args.layer]
    for p in layers:
        if not p.is_dir():
            raise SystemExit(f"oci_image.py: layer {p} is not a directory")
    out = Path(args.out)
    work = Path(tempfile.mkdtemp(prefix="oci-", dir=out.parent))
    try:
        blobs = work / "blobs" / "sha256"
        blobs.mkdir(parents=True)

        def add_blob(path: Path) -> tuple[str, int]:
            digest = _sha256_file(path)
            size = path.stat().st_size
            path.rename(blobs / digest)
            return f"sha256:{digest}", size

        def add_json(obj: object) -> tuple[str, int]:
            tmp = work / "tmp.json"
            tmp.write_text(json.dumps(obj, separators=(",", ":"), sort_keys=True))
            return add_blob(tmp)

        layer_descs, diff_ids = [], []
        for i, src in enumerate(layers):
            tmp = work / f"layer{i}.tar"
            write_layer(src, tmp)
            digest, size = add_blob(tmp)
            layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest,
                                "size": size})
            diff_ids.append(digest)
        config: dict[str, object] = {"Env": args.env or [DEFAULT_PATH]}
        if args.entrypoint is not None:
            config["Entrypoint"] = _json_list(args.entrypoint, "--entrypoint")
        if args.cmd is not None:
            config["Cmd"] = _json_list(args.cmd, "--cmd")
        if args.user:
            config["User"] = args.user
        if args.workdir:
            config["WorkingDir"] = args.workdir
        cfg_digest, cfg_size = add_json({
            "architecture": "amd64", "os": "linux", "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        })
        man_digest, man_size = add_json({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest,
                       "size": cfg_size},
            "layers": layer_descs,
        })
        tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
        (work / "index.json").write_text(json.dumps({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man_digest, "size": man_size,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": args.name, "org.opencontainers.image.ref.name": tag},
            }],
        }))
        (work / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        tmp_out = out.with_suffix(out.suffix + ".part")
        with tarfile.open(tmp_out, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in ("oci-layout", "index.json", "blobs"):
                tar.add(work / name, arcname=name)
        tmp_out.rename(out)
        # The manifest digest: what `ctr images ls` shows for the imported image (images.sh skips a re-import).
        print(man_digest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--name", required=True, help="full image reference, e.g. docker.io/library/budeval:0.1.0")
    p.add_argument("--layer", action="append", required=True)
    p.add_argument("--entrypoint")
    p.add_argument("--cmd")
    p.add_argument("--env", action="append")
    p.add_argument("--user")
    p.add_argument("--workdir")
    build(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
