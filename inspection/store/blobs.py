"""Content-addressed blob storage for images, anomaly maps, masks and overlays."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from inspection.core.fingerprint import sha256_bytes

_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".npy", ".bin"}


TRASH = ".trash"
"""Folder under the root where retention moves a blob before unlinking it (crash-safe GC)."""


class BlobStore:
    """Stores bytes under ``<root>/<sha[:2]>/<sha><ext>``; writes are atomic and fsynced.

    Garbage collection (``store.retention``) moves a file into ``<root>/.trash`` first,
    re-checks that no row uses it and that it was not written or re-used (``put`` refreshes
    the file's time) within a grace period, and only then unlinks it; otherwise it goes back.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def put(self, data: bytes, ext: str = ".bin") -> str:
        """Store ``data`` (idempotent) and return its sha256."""
        return self.put_new(data, ext)[0]

    def put_new(self, data: bytes, ext: str = ".bin") -> tuple[str, bool]:
        """Store ``data`` (idempotent): its sha256 and whether this call created its file
        (``False``: the file was there already, only its time refreshed)."""
        ext = ext.lower() if ext.lower() in _EXTENSIONS else ".bin"
        sha = sha256_bytes(data)
        target = self._path(sha, ext)
        with contextlib.suppress(FileNotFoundError):
            os.utime(target)  # re-used: fresh for the collector's grace check
            return sha, False
        try:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        except FileNotFoundError:  # the folder's first blob
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha, True

    def path(self, sha: str) -> Path:
        """The file holding blob ``sha``; ``FileNotFoundError`` when absent."""
        if not sha or not all(c in "0123456789abcdef" for c in sha) or len(sha) != 64:
            raise FileNotFoundError(f"not a blob id: {sha!r}")
        folder = self.root / sha[:2]
        matches = sorted(folder.glob(f"{sha}.*")) if folder.is_dir() else []
        if not matches:
            raise FileNotFoundError(f"blob {sha} not found under {self.root}")
        return matches[0]

    def exists(self, sha: str) -> bool:
        try:
            self.path(sha)
        except FileNotFoundError:
            return False
        return True

    def delete(self, sha: str) -> None:
        """Remove blob ``sha`` (cleanup of a write whose row was never committed)."""
        with contextlib.suppress(FileNotFoundError):
            self.path(sha).unlink(missing_ok=True)

    def get(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()

    def files(self) -> Iterator[tuple[str, int]]:
        """(sha, size in bytes) of every stored blob, one folder listing at a time; leftovers
        of interrupted writes (``.tmp-*`` older than a day) are removed on the way."""
        for folder in sorted(self.root.glob("[0-9a-f][0-9a-f]")):
            for entry in list(os.scandir(folder)):
                try:
                    stat = entry.stat()
                except FileNotFoundError:  # removed since the listing
                    continue
                if not entry.name.startswith(".tmp-"):
                    yield entry.name.split(".", 1)[0], stat.st_size
                elif time.time() - stat.st_mtime > 86400:
                    Path(entry.path).unlink(missing_ok=True)

    def trash(self, shas: list[str]) -> list[Path]:
        """Move the files of ``shas`` into the trash; returns everything in the trash
        (including files a crashed collector left there)."""
        bin_ = self.root / TRASH
        bin_.mkdir(parents=True, exist_ok=True)
        for sha in shas:
            with contextlib.suppress(FileNotFoundError):
                source = self.path(sha)
                os.replace(source, bin_ / source.name)
        return sorted(bin_.iterdir())

    def empty_trash(
        self, trashed: list[Path], in_use: Callable[[list[str]], set[str]], grace_s: float
    ) -> tuple[int, int]:
        """Unlink trashed files no row uses (``in_use``) and untouched for ``grace_s``;
        put the others back. Returns (files, bytes) unlinked."""
        shas = [path.name.split(".", 1)[0] for path in trashed]
        used = in_use(shas) if shas else set()
        removed = freed = 0
        for sha, path in zip(shas, trashed, strict=True):
            stat = path.stat()
            if sha in used or time.time() - stat.st_mtime < grace_s:
                os.replace(path, self._path(sha, path.suffix))  # same bytes if re-written
            else:
                path.unlink()
                removed, freed = removed + 1, freed + stat.st_size
        return removed, freed

    def _path(self, sha: str, ext: str) -> Path:
        return self.root / sha[:2] / f"{sha}{ext}"
