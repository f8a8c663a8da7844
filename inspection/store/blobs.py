"""Content-addressed blob storage for images, anomaly maps, masks and overlays.

A central blob folder is written by every station, so a file is created once (linked into
place), read-only, in sticky fan-out folders: no station's account replaces another's
(docs/security.md). Every read that hands bytes on hashes them and refuses a file whose sha256
is not its name; of several files of one blob (a decoy ``<sha>.bin``) readers take the first
that hashes right, and ``put`` writes beside a decoy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from inspection.core.fingerprint import sha256_bytes, sha256_file

log = logging.getLogger(__name__)

_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".npy", ".bin"}


FOLDER_MODE = 0o1775
"""Fan-out folders: group-writable for the stations' group, sticky (only a file's owner may
rename or unlink it)."""
TRASH = ".trash"
"""Folder under the root where retention moves a blob before unlinking it (crash-safe GC)."""


class BlobMismatch(FileNotFoundError):
    """A blob file whose bytes do not hash to its name: the blob asked for is not there (the
    file was altered or replaced); refused, logged and counted (``BlobStore.refused``)."""


_refused_lock = threading.Lock()


def _none_holds(sha: str, files: list[Path]) -> BlobMismatch:
    shown = ", ".join(map(str, files))
    return BlobMismatch(f"blob {sha}: the bytes of {shown} do not hash to its name; refused")


class BlobStore:
    """Stores bytes under ``<root>/<sha[:2]>/<sha><ext>``, atomically and fsynced. Removal goes
    through ``<root>/.trash``: a file still used, or written within the grace period, goes back."""

    refused = 0
    """Blob reads refused in this process because the file's sha256 is not its name."""

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
        try:
            os.utime(target)  # re-used: fresh for the collector's grace check
        except PermissionError:  # another account's file: there, and left as it is
            pass
        except FileNotFoundError:
            return self._write(data, sha, target)
        if sha256_file(target) != sha:
            self._refuse(sha, target)
        return sha, False

    def _write(self, data: bytes, sha: str, target: Path) -> tuple[str, bool]:
        """Write ``data`` to ``target`` (create-only, fsynced): (sha, whether this call made it)."""
        try:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        except FileNotFoundError:  # the folder's first blob
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(PermissionError):  # made by another account meanwhile
                os.chmod(target.parent, FOLDER_MODE)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o444)
            try:
                os.link(tmp, target)  # create-only: never replaces an existing file
            except FileExistsError:
                return sha, False  # written by another writer meanwhile
        finally:
            Path(tmp).unlink(missing_ok=True)
        return sha, True

    def path(self, sha: str) -> Path:
        """A file named for blob ``sha`` (unchecked: its size, its removal); ``FileNotFoundError``
        when absent."""
        return self._files(sha)[0]

    def _files(self, sha: str) -> list[Path]:
        """Every file named for blob ``sha``, sorted; ``FileNotFoundError`` when none."""
        if not sha or not all(c in "0123456789abcdef" for c in sha) or len(sha) != 64:
            raise FileNotFoundError(f"not a blob id: {sha!r}")
        folder = self.root / sha[:2]
        matches = sorted(folder.glob(f"{sha}.*")) if folder.is_dir() else []
        if not matches:
            raise FileNotFoundError(f"blob {sha} not found under {self.root}")
        return matches

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
        """Blob ``sha``'s bytes; ``BlobMismatch`` when no file of its name hashes to ``sha``."""
        return self.read(sha)[0]

    def read(self, sha: str) -> tuple[bytes, str]:
        """Blob ``sha``'s bytes, read once and hashed, and its file's extension (a copy to the
        central store); ``BlobMismatch`` when no file of its name holds them."""
        files = self._files(sha)
        for path in files:
            data = path.read_bytes()
            if sha256_bytes(data) == sha:
                return data, path.suffix
            with contextlib.suppress(BlobMismatch):
                self._refuse(sha, path)
        raise _none_holds(sha, files)

    def checked_path(self, sha: str) -> Path:
        """The first file of blob ``sha`` whose bytes hash to ``sha`` (for readers that hand
        the file on: a retraining set, an HTTP response); ``BlobMismatch`` when none does,
        each refused file logged and counted."""
        files = self._files(sha)
        for path in files:
            if sha256_file(path) == sha:
                return path
            with contextlib.suppress(BlobMismatch):
                self._refuse(sha, path)
        raise _none_holds(sha, files)

    def holds(self, sha: str) -> bool:
        """Whether a file of blob ``sha`` holds its bytes (hashed: a decoy does not count)."""
        try:
            self.checked_path(sha)
        except FileNotFoundError:
            return False
        return True

    def _refuse(self, sha: str, path: Path) -> None:
        with _refused_lock:
            BlobStore.refused += 1
        message = f"blob {path}: its bytes do not hash to its name (altered or replaced); refused"
        log.error(message)
        raise BlobMismatch(message)

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
