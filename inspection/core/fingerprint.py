"""What a model or bundle was made from: content hashes of files, folders and datasets, and the
versions of installed packages."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from importlib import metadata
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


def relative_name(path: str | Path, root: str | Path) -> str:
    """``path``'s name under ``root`` (posix), as the dataset listed it: a file that is a
    symbolic link keeps its own name, wherever it points. ``ValueError`` naming both when
    ``path`` is not under ``root``."""
    absolute, base = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    if absolute.is_relative_to(base):
        return absolute.relative_to(base).as_posix()
    resolved, real_base = Path(path).resolve(), Path(root).resolve()
    if resolved.is_relative_to(real_base):
        return resolved.relative_to(real_base).as_posix()
    raise ValueError(f"{path} is not inside the dataset folder {root}")


def fingerprint_files(paths: Iterable[str | Path], root: str | Path) -> dict:
    """``{"sha256": <hash over the sorted list>, "count": n, "files": {rel: sha}}`` of files,
    named relative to ``root``."""
    files = {relative_name(p, root): sha256_file(p) for p in paths}
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"{rel}\0{files[rel]}\n".encode())
    return {"sha256": digest.hexdigest(), "count": len(files), "files": dict(sorted(files.items()))}


def package_versions(names: Iterable[str], missing: str | None = None) -> dict[str, str]:
    """Installed versions of ``names``; one not installed gets ``missing`` (None: left out)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if missing is not None:
                versions[name] = missing
    return versions
