"""Judge image files with an ``Inspector``: folders expanded, unreadable files and images the
bundle refuses (unlike its training images, not alignable) reported, the others judged."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inspection.core.errors import AlignmentError, ImageDecodeError, InputDomainError
from inspection.core.fingerprint import shown_name
from inspection.core.images import IMAGE_SUFFIXES, DecodedImage
from inspection.core.input_domain import check_bit_depth
from inspection.core.types import InspectionResult
from inspection.runtime.bounds import Reading, with_camera_size
from inspection.runtime.predictor import Predictor


@dataclass(frozen=True)
class PathOutcome:
    """One file of a batch: a result, or the reason it could not be inspected."""

    path: Path
    result: InspectionResult | None = None
    error: str | None = None
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    """The decoded working copy (for overlays); ``None`` on error."""
    refused: bool = False
    """The file decoded but the bundle refused it (input domain, alignment): never a verdict."""

    @property
    def ok(self) -> bool:
        return self.result is not None


def inspect_paths(
    inspector: Predictor, paths: Iterable[str | Path], *, batch_size: int = 1
) -> list[PathOutcome]:
    """Read and judge files (folders are expanded); unreadable files become error outcomes."""
    return list(iter_paths(inspector, expand_paths(paths), batch_size=batch_size))


def iter_paths(
    inspector: Predictor, files: Iterable[Path], *, batch_size: int = 1
) -> Iterator[PathOutcome]:
    """Judge ``files`` in order, yielding each outcome as soon as its batch is done. Files are
    decoded at the working size (latency includes the decode); a refused file is an error
    outcome, the rest of its batch still judged."""
    pending: list[tuple[Path, DecodedImage, float]] = []

    def flush() -> Iterator[PathOutcome]:
        if pending:
            results = _judge(inspector, [decoded.image for _, decoded, _ in pending])
            for (path, decoded, decode_ms), result in zip(pending, results, strict=True):
                if isinstance(result, str):
                    yield PathOutcome(path, error=result, refused=True)
                    continue
                result = with_camera_size(result, decoded)
                result = dataclasses.replace(
                    result,
                    latency_ms=result.latency_ms + decode_ms,
                    timings_ms={"decode": decode_ms, **result.timings_ms},
                )
                yield PathOutcome(path, result, image=decoded.image)
            pending.clear()

    reading = Reading.of(inspector)  # files read as the bundle's training images were
    for path in files:
        try:
            begin = time.perf_counter()
            decoded = reading.read(path)
            check_bit_depth(decoded, reading.bits, inspector.input_check)
            pending.append((path, decoded, (time.perf_counter() - begin) * 1e3))
        except ImageDecodeError as exc:
            yield from flush()
            yield PathOutcome(path, error=str(exc))
            continue
        except InputDomainError as exc:
            yield from flush()
            yield PathOutcome(path, error=str(exc), refused=True)
            continue
        if len(pending) >= max(1, batch_size):
            yield from flush()
    yield from flush()


REFUSALS = (InputDomainError, AlignmentError)
"""Why an inspector refuses a decoded image: an error outcome, never a verdict."""


def _judge(inspector: Predictor, images: Sequence[np.ndarray]) -> list[InspectionResult | str]:
    """Results of one batch; when one image is refused, each is judged alone (refusal: reason)."""
    try:
        return list(inspector.inspect_batch(images))
    except REFUSALS as exc:
        if len(images) == 1:
            return [str(exc)]
    judged: list[InspectionResult | str] = []
    for image in images:
        try:
            judged.append(inspector.inspect_batch([image])[0])
        except REFUSALS as exc:
            judged.append(str(exc))
    return judged


@dataclass(frozen=True)
class FoundFile:
    """A file to inspect and its POSIX path below its folder argument (or its name), as
    ``shown_name`` shows it (for reports, JSON and overlay names)."""

    path: Path
    relative: str


def expand_paths(paths: Iterable[str | Path], *, exclude: Iterable[Path] = ()) -> list[Path]:
    return [found.path for found in find_files(paths, exclude=exclude)]


def find_files(paths: Iterable[str | Path], *, exclude: Iterable[Path] = ()) -> list[FoundFile]:
    """Files as given, folders expanded to their image files, sorted per folder argument;
    folders under one of ``exclude`` are skipped."""
    skip = [Path(folder).resolve() for folder in exclude]
    found: list[FoundFile] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            found.append(FoundFile(path, shown_name(path.name)))
            continue
        found.extend(
            FoundFile(file, shown_name(file.relative_to(path).as_posix()))
            for file in _image_files(path, skip)
        )
    return found


def _image_files(root: Path, skip: list[Path]) -> list[Path]:
    """Image files under ``root``, sorted; folder symlinks followed, each real folder once. The
    folders reachable without symlinks are read first, so none is listed under an alias;
    then each symlink in sorted depth-first order."""
    walk = _Walk(root, skip)
    walk.folders(root, follow=False)
    for link in sorted(walk.links, key=lambda path: path.parts):  # sorted depth-first order
        walk.folders(link, follow=True)
    return sorted(walk.files)


@dataclass
class _Walk:
    """What ``_image_files`` found so far: files, symlinks to follow, real folders read."""

    root: Path
    skip: list[Path]
    files: list[Path] = field(default_factory=list)
    links: list[Path] = field(default_factory=list)
    seen: set[Path] = field(default_factory=set)

    def folders(self, top: Path, *, follow: bool) -> None:
        """Read ``top`` and below, depth-first sorted; ``follow``: into folder symlinks too."""
        stack = [top]
        while stack:
            folder = stack.pop()
            real = folder.resolve()
            if real in self.seen or (folder != self.root and _is_under(real, self.skip)):
                continue
            self.seen.add(real)
            below = self._read(folder, follow)
            stack += sorted(below, reverse=True)

    def _read(self, folder: Path, follow: bool) -> list[Path]:
        """Note ``folder``'s image files; its subfolders (unreadable ones passed over)."""
        below = []
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return []
        for entry in entries:
            path = Path(entry.path)
            if _is(entry.is_dir):
                (below if follow or not entry.is_symlink() else self.links).append(path)
            elif path.suffix.lower() in IMAGE_SUFFIXES and _is(entry.is_file):
                self.files.append(path)
        return below


def _is(test: Callable[[], bool]) -> bool:
    try:
        return test()
    except OSError:
        return False


def _is_under(path: Path, folders: list[Path]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)
