"""The dataset check's decoded images handed on to the training: read_image's arrays, once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from inspection.core.images import read_image
from inspection.data.check import check_dataset
from inspection.data.dataset import load_dataset
from inspection.data.decoded import KEPT, DecodedImages
from inspection.data.leaks import pixel_print


def test_the_check_keeps_what_read_image_decodes(twelve_bit_pair: tuple[Path, Path]) -> None:
    _, twelve = twelve_bit_pair
    dataset = load_dataset(twelve)
    check_dataset(dataset, image_bits=12, keep_decoded=True)
    try:
        for sample in dataset.samples:
            kept = KEPT.take(sample.path, 12)
            assert kept is not None
            assert np.array_equal(kept, read_image(sample.path, bits=12))
            assert KEPT.take(sample.path, 12) is None  # handed over once
        assert KEPT.take(dataset.samples[0].path, 16) is None  # other bits: decoded again
    finally:
        KEPT.clear()


def test_nothing_is_kept_unless_asked(tiny_product: Path) -> None:
    dataset = load_dataset(tiny_product)
    check_dataset(dataset)
    assert all(KEPT.take(s.path, 16) is None for s in dataset.samples)


def test_a_file_changed_since_or_past_the_budget_is_not_handed_over(
    tiny_product: Path, tmp_path: Path
) -> None:
    root = shutil.copytree(tiny_product, tmp_path / "copy")
    first, second = sorted((root / "train" / "good").iterdir())[:2]
    array = read_image(first)
    kept = DecodedImages(budget_bytes=array.nbytes)
    kept.keep(first, 16, array)
    kept.keep(second, 16, read_image(second))  # over the budget
    assert kept.take(second, 16) is None
    stat = first.stat()
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert kept.take(first, 16) is None


def test_held_decodings_are_shared_read_only_until_the_outermost_block_ends(
    tiny_product: Path,
) -> None:
    first, second = sorted((tiny_product / "train" / "good").iterdir())[:2]
    kept = DecodedImages()
    kept.offer(first, 16, read_image(first))
    assert kept.take(first, 16) is None  # outside ``held``: nothing offered is kept
    with kept.held():
        kept.offer(first, 16, read_image(first))
        with kept.held():
            kept.offer(second, 16, read_image(second))
        shared = kept.take(first, 16)
        assert shared is kept.take(first, 16)  # taken again: the same decoding
        assert not shared.flags.writeable
        assert np.array_equal(kept.take(second, 16), read_image(second))
    assert kept.take(first, 16) is None and kept.take(second, 16) is None


def test_a_held_decoding_past_the_budget_keeps_its_print(tiny_product: Path) -> None:
    """A training records its images' prints: each decoding offered inside ``held`` keeps
    its 32x32 print, however many images are past the budget of kept decodings."""
    first = sorted((tiny_product / "train" / "good").iterdir())[0]
    kept = DecodedImages(budget_bytes=0)
    kept.offer(first, 16, read_image(first))
    assert kept.print_of(first, 16) is None  # outside ``held``: nothing offered is kept
    with kept.held():
        kept.offer(first, 16, read_image(first))
        assert kept.take(first, 16) is None  # past the budget
        assert np.array_equal(kept.print_of(first, 16), pixel_print(read_image(first)))
        assert kept.print_of(first, 12) is None  # other bits: another decoding
    assert kept.print_of(first, 16) is None
