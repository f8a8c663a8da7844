"""Content-addressed blob storage for images, anomaly maps, masks and overlays.

A central blob folder is written by every station, so a file is created once (linked into
place; on storage without hard links, exFAT and SMB shares, claimed by an exclusive create and
renamed over its claim), read-only, in sticky fan-out folders: no station's account replaces
another's (docs/security.md). Every read that hands bytes on hashes them and refuses a file
whose sha256 is not its name; of several files of one blob (a decoy ``<sha>.bin``) readers take
the first that hashes right, and ``put`` writes beside a decoy.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
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


LINKLESS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})
"""What ``os.link`` raises on storage without hard links (exFAT and FAT: EPERM; SMB shares
and some FUSE file systems: EOPNOTSUPP or ENOSYS)."""

_refused_lock = threading.Lock()


def _claim(target: Path) -> bool:
    """Create ``target`` empty, exclusively: False when it exists (another writer's)."""
    try:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444))
    except FileExistsError:
        return False
    return True


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
            if data and target.stat().st_size == 0:  # a claim left by a write that crashed
                return self._reclaim(data, sha, target)
            self._refuse(sha, target)
        return sha, False

    def _reclaim(self, data: bytes, sha: str, target: Path) -> tuple[str, bool]:
        """Finish the write an empty claim of ``target`` stands for (``_write`` on storage
        without hard links, interrupted): any writer of it writes these same bytes."""
        log.warning("blob %s: an empty claim left by an interrupted write; writing it", target)
        tmp = self._temporary(target.parent, data)
        try:
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return sha, True

    def _write(self, data: bytes, sha: str, target: Path) -> tuple[str, bool]:
        """Write ``data`` to ``target`` (create-only, fsynced): (sha, whether this call made it).
        A file is linked into place; where the storage has no hard links (``LINKLESS``), the
        target is claimed by an exclusive create and the written file renamed over the claim."""
        tmp = self._temporary(target.parent, data)
        try:
            try:
                os.link(tmp, target)  # create-only: never replaces an existing file
            except FileExistsError:
                return sha, False  # written by another writer meanwhile
            except OSError as exc:
                if exc.errno not in LINKLESS:
                    raise
                if not _claim(target):
                    return sha, False
                os.replace(tmp, target)  # over this call's own empty claim
        finally:
            tmp.unlink(missing_ok=True)
        return sha, True

    def _temporary(self, folder: Path, data: bytes) -> Path:
        """A new read-only ``.tmp-*`` file in ``folder`` holding ``data``, fsynced (the folder
        made, group-writable and sticky, for its first blob)."""
        tmp = folder / f".tmp-{secrets.token_hex(8)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileNotFoundError:  # the folder's first blob
            folder.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(PermissionError):  # another account's, or exFAT (no modes)
                os.chmod(folder, FOLDER_MODE)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return tmp

    def unwritable(self) -> str | None:
        """Why no blob can be stored under ``root`` now (a file cannot be created, written and
        removed there), naming the folder; None when one can (``/healthz``)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._temporary(self.root, b"probe").unlink()
        except OSError as exc:
            return f"core.blob_dir {self.root}: {exc.strerror or exc}; nothing can be stored"
        return None

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
