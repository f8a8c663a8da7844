"""Watch-folder mode: inspect every image dropped into ``incoming/`` (``incoming/<product>/``
for a product), moved to ``done/`` or ``failed/`` (with ``<name>.reason.txt``).

Exactly once: the request id hashes the file's content and name, so a restart finds the stored
result. Files still being written (temporary names, size or mtime changing within
``settle_seconds``) wait; symbolic links are never followed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy.exc import SQLAlchemyError

from inspection.core.background import Background
from inspection.core.errors import InspectionError
from inspection.core.fingerprint import shown_name
from inspection.service.config import WatchConfig
from inspection.station.errors import InvalidRequest, RequestRefused
from inspection.station.pipeline import Outcome, Pipeline

log = logging.getLogger(__name__)
TEMP_PREFIXES = (".", "~")
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart")
_FOLDERS = ("incoming", "done", "failed")


class WatchError(InspectionError):
    """The watch folder cannot be used (e.g. another process already watches it)."""


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file: ``done``, ``replayed``, ``failed`` or ``retry``."""

    name: str
    status: str
    detail: str = ""


class WatchFolder:
    """Scans the incoming folder and feeds stable files through the pipeline."""

    def __init__(
        self,
        config: WatchConfig,
        pipeline: Pipeline,
        *,
        on_file: Callable[[FileOutcome, Outcome | None], None] | None = None,
    ) -> None:
        self.config, self.pipeline = config, pipeline
        self.incoming, self.done, self.failed = (config.root / n for n in _FOLDERS)
        self._on_file = on_file
        self._seen: dict[Path, tuple[int, int]] = {}
        self._lock = FileLock(str(config.root / ".watch.lock"))
        self._worker = Background("watch-folder", self.run, join_s=60)
        self.counts = {"done": 0, "replayed": 0, "failed": 0, "retry": 0}

    # ------------------------------------------------------------------ running
    def acquire(self) -> None:
        """Create the folders and take the lock that keeps a second watcher out."""
        for folder in (self.incoming, self.done, self.failed):
            folder.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout as exc:
            raise WatchError(
                f"{self.config.root} is already watched by another process "
                f"(lock {self._lock.lock_file})"
            ) from exc

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    def start(self) -> None:
        """Acquire the folder and scan it every ``poll_seconds`` in a daemon thread."""
        self.acquire()
        self._worker.start()

    def run(self) -> None:
        """Scan until ``stop()``; call ``acquire()`` first when not using ``start()``."""
        while not self._worker.stopping.is_set():
            try:
                self.scan_once()
            except Exception:
                log.exception("watch-folder scan failed; retrying")
            self._worker.stopping.wait(self.config.poll_seconds)

    def stop(self) -> None:
        self._worker.stop()
        self.release()

    # ----------------------------------------------------------------- scanning
    def scan_once(self) -> list[FileOutcome]:
        """Process every file that is ready now; returns what happened to each."""
        outcomes = []
        for path, product in self._candidates():
            if self._worker.stopping.is_set():
                break
            if self._is_ready(path):
                outcomes.append(self.process(path, product))
        return outcomes

    def _candidates(self) -> list[tuple[Path, str | None]]:
        found: list[tuple[Path, str | None]] = []
        for entry in sorted(self.incoming.iterdir()):
            if _is_temporary(entry.name):
                continue
            if entry.is_symlink() and entry.is_dir():
                log.warning(
                    "%s: symlinked folder skipped (links are not followed)", shown_name(entry.name)
                )
            elif entry.is_file() or entry.is_symlink():
                found.append((entry, self.config.default_product))
            elif entry.is_dir():
                found.extend(
                    (child, shown_name(entry.name))
                    for child in sorted(entry.iterdir())
                    if (child.is_file() or child.is_symlink()) and not _is_temporary(child.name)
                )
        return found

    def _is_ready(self, path: Path) -> bool:
        try:
            stat = path.lstat()
        except FileNotFoundError:
            self._seen.pop(path, None)
            return False
        signature = (stat.st_size, stat.st_mtime_ns)
        settle = self.config.settle_seconds
        previous = self._seen.get(path)
        self._seen[path] = signature
        if settle == 0:
            return True
        return previous == signature and time.time() - stat.st_mtime >= settle

    # --------------------------------------------------------------- processing
    def process(self, path: Path, product: str | None) -> FileOutcome:
        """Inspect one file and move it to done/ or failed/ (left in place on a transient error)."""
        exact = path.relative_to(self.incoming).as_posix()  # moves keep the file's own bytes
        name = shown_name(exact)  # rows, logs and reasons: bytes not UTF-8 shown as U+FFFD
        self._seen.pop(path, None)
        outcome: Outcome | None = None
        try:
            data = _read_no_follow(path)
            if product is None:
                raise InvalidRequest(
                    "file is directly in incoming/ but watch.default_product is not set"
                )
            outcome = self.pipeline.run(
                data,
                product=product,
                station_id=self.config.station_id,
                request_id=watch_request_id(data, exact),
                source="watch",
                source_name=name,
            )
        except RequestRefused as exc:
            if exc.transient:
                result = FileOutcome(name, "retry", exc.message)
            else:
                result = self._to_failed(path, exact, exc.message)
        except (OSError, SQLAlchemyError) as exc:
            result = FileOutcome(name, "retry", f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a model that crashes on this image: park the file
            log.exception("inspecting %s failed", name)
            message = f"internal error while inspecting: {type(exc).__name__}: {exc}"
            result = self._to_failed(path, exact, message)
        else:
            _move(path, self.done / exact, data)
            result = FileOutcome(name, "done" if outcome.created else "replayed", outcome.row.id)
        self.counts[result.status] += 1
        if said := {"retry": "will retry", "failed": "moved to failed/"}.get(result.status):
            log.warning("%s: %s: %s", name, said, result.detail)
        if self._on_file is not None:
            self._on_file(result, outcome)
        return result

    def _to_failed(self, path: Path, name: str, reason: str) -> FileOutcome:
        target = self.failed / name
        target.parent.mkdir(parents=True, exist_ok=True)
        reason_file = target.with_name(target.name + ".reason.txt")
        tmp = reason_file.with_name(f".{reason_file.name}.tmp")
        tmp.write_text(reason.rstrip() + "\n", encoding="utf-8")
        os.replace(tmp, reason_file)
        os.replace(path, target)
        return FileOutcome(shown_name(name), "failed", reason)


def watch_request_id(data: bytes, name: str) -> str:
    """Content hash + name hash (of the name's bytes, any encoding): the same file under the
    same name is inspected once."""
    content = hashlib.sha256(data).hexdigest()[:48]
    named = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    return f"w{content}.{named}"


def _read_no_follow(path: Path) -> bytes:
    """The file's bytes; a symbolic link (even one swapped in just now) is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        if path.is_symlink():
            raise InvalidRequest("symbolic links are not followed; copy the file in") from exc
        raise
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def _move(path: Path, target: Path, data: bytes) -> None:
    """Move into done/; a different earlier file of the same name keeps its place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        digest = hashlib.sha256(data).hexdigest()[:8]
        target = target.with_name(f"{target.stem}-{digest}{target.suffix}")
    os.replace(path, target)


def _is_temporary(name: str) -> bool:
    lower = name.lower()
    return lower.startswith(TEMP_PREFIXES) or lower.endswith(TEMP_SUFFIXES)
