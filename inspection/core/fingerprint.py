"""Content hashes for files, folders and datasets."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint_files(paths: Iterable[str | Path], root: str | Path) -> dict:
    """Fingerprint a set of files: their paths relative to ``root`` and content hashes.

    Returns ``{"sha256": <hash over the sorted list>, "count": n, "files": {rel: sha}}``.
    """
    root = Path(root)
    files = {
        Path(p).resolve().relative_to(root.resolve()).as_posix(): sha256_file(p) for p in paths
    }
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"{rel}\0{files[rel]}\n".encode())
    return {"sha256": digest.hexdigest(), "count": len(files), "files": dict(sorted(files.items()))}
