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


def shown_name(name: str | bytes | os.PathLike[str]) -> str:
    """``name`` as text for people, JSON, records and database rows: bytes of a file name that
    are not UTF-8 (a Latin-1 ``Pr\\xfcfteil.png`` from a Windows share, which Python keeps as
    surrogates) become U+FFFD; any other name is returned as it is."""
    return os.fsencode(name).decode("utf-8", "replace")


def relative_name(path: str | Path, root: str | Path) -> str:
    """``path``'s name under ``root`` (posix, ``shown_name``), as the dataset listed it: a file
    or folder that is a symbolic link keeps its own name, wherever it points. ``ValueError``
    naming both when ``path`` is not under ``root``."""
    return shown_name(_exact_name(path, root))


def path_of(root: str | Path, name: str) -> Path:
    """The file ``relative_name`` calls ``name`` under ``root``: each part of the name as it
    is, or else the one entry of its folder shown so (bytes not UTF-8 read back as U+FFFD);
    a part found neither way is kept, so opening the path names it."""
    path = Path(root)
    for part in name.split("/"):
        if not (path / part).exists() and "\ufffd" in part and path.is_dir():
            matches = [entry for entry in path.iterdir() if shown_name(entry.name) == part]
            part = matches[0].name if len(matches) == 1 else part
        path = path / part
    return path


def _exact_name(path: str | Path, root: str | Path) -> str:
    absolute, base = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    if absolute.is_relative_to(base):
        return absolute.relative_to(base).as_posix()
    resolved, real_base = Path(path).resolve(), Path(root).resolve()
    if resolved.is_relative_to(real_base):
        return resolved.relative_to(real_base).as_posix()
    raise ValueError(f"{shown_name(path)} is not inside the dataset folder {shown_name(root)}")


def fingerprint_files(paths: Iterable[str | Path], root: str | Path) -> dict:
    """``{"sha256": <hash over the sorted list>, "count": n, "files": {rel: sha}}`` of files
    named by ``relative_name``; the hash covers each name's bytes as the file system holds
    them. ``ValueError`` naming a file whose name differs from another's only in bytes that
    are not UTF-8 (both would show as one)."""
    named = {os.fsencode(_exact_name(path, root)): path for path in paths}
    files: dict[str, str] = {}
    digest = hashlib.sha256()
    for raw in sorted(named):
        rel = shown_name(raw)
        if rel in files:
            raise ValueError(
                f"{shown_name(named[raw])}: another file's name reads as {rel} too (they differ "
                "only in bytes that are not UTF-8); rename one"
            )
        files[rel] = sha256_file(named[raw])
        digest.update(raw + f"\0{files[rel]}\n".encode())
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
