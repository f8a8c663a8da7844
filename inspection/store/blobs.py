"""Content-addressed blob storage for images, anomaly maps, masks and overlays."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from inspection.core.fingerprint import sha256_bytes

_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".npy", ".bin"}


class BlobStore:
    """Stores bytes under ``<root>/<sha[:2]>/<sha><ext>``; writes are atomic and fsynced."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def put(self, data: bytes, ext: str = ".bin") -> str:
        """Store ``data`` (idempotent) and return its sha256."""
        ext = ext.lower() if ext.lower() in _EXTENSIONS else ".bin"
        sha = sha256_bytes(data)
        target = self._path(sha, ext)
        if target.exists():
            return sha
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
        return sha

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

    def _path(self, sha: str, ext: str) -> Path:
        return self.root / sha[:2] / f"{sha}{ext}"
