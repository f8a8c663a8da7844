"""Images the dataset check decoded, handed on once to the training that follows in the
process, and (``DecodedImages.held``) every image a training decodes, kept for its next pass
(keyed by path, bits, value range, size and modification time; at most ``BUDGET_BYTES``), with
its ``data.leaks.pixel_print`` past that budget too (the version records them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from inspection.data.leaks import pixel_print

BUDGET_BYTES = 256 << 20
"""Decoded bytes kept at most: a plant's thousands of images are decoded again, not held."""

ValueRange = tuple[float, float] | None
_Key = tuple[Path, int, ValueRange, int, int]


def _key(path: Path, bits: int, value_range: ValueRange) -> _Key | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return path, bits, value_range, stat.st_size, stat.st_mtime_ns


class DecodedImages:
    """Decoded arrays by file (path, size, modification time), significant bits and value
    range (``core.images.decode_reduced``)."""

    def __init__(self, budget_bytes: int = BUDGET_BYTES) -> None:
        self._arrays: dict[_Key, np.ndarray] = {}
        self._prints: dict[_Key, np.ndarray] = {}
        self._left = budget_bytes
        self._holding = 0  # open ``held`` blocks

    @contextmanager
    def held(self) -> Iterator[None]:
        """Inside, a taken decoding stays kept and ``offer`` keeps new ones (read-only): a
        training decodes each file once, however many passes and models read it. Everything
        kept is dropped when the outermost block ends."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding:
                self.clear()

    def offer(
        self, path: Path, bits: int, array: np.ndarray, value_range: ValueRange = None
    ) -> None:
        """``keep`` a decoding made inside ``held`` (made read-only: later passes share it) and
        its ``pixel_print`` (4 KB, kept past the budget); outside, nothing is kept."""
        if self._holding:
            array.flags.writeable = False
            self.keep(path, bits, array, value_range)
            key = _key(path, bits, value_range)
            if key is not None and key not in self._prints:
                self._prints[key] = pixel_print(array)

    def print_of(self, path: Path, bits: int, value_range: ValueRange = None) -> np.ndarray | None:
        """The ``pixel_print`` of ``path``'s decoding at ``bits`` and ``value_range`` offered
        inside ``held``, or None."""
        key = _key(path, bits, value_range)
        return None if key is None else self._prints.get(key)

    def keep(
        self, path: Path, bits: int, array: np.ndarray, value_range: ValueRange = None
    ) -> None:
        """Keep ``array``, ``path`` decoded at ``bits`` and ``value_range``, unless the budget
        is spent."""
        key = _key(path, bits, value_range)
        if key is not None and array.nbytes <= self._left:
            self._arrays[key] = array
            self._left -= array.nbytes

    def take(self, path: Path, bits: int, value_range: ValueRange = None) -> np.ndarray | None:
        """The kept decoding of ``path`` at ``bits`` and ``value_range`` (once, outside
        ``held``: it is no longer kept), or None."""
        key = _key(path, bits, value_range)
        if key is None:
            return None
        if self._holding:
            return self._arrays.get(key)
        array = self._arrays.pop(key, None)
        if array is not None:
            self._left += array.nbytes
        return array

    def clear(self) -> None:
        while self._arrays:
            self._left += self._arrays.popitem()[1].nbytes
        self._prints.clear()


KEPT = DecodedImages()
"""The process's: filled by ``check_dataset(keep_decoded=True)``, read by the training."""
