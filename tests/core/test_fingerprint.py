"""Dataset file names and content hashes: a symlinked file keeps the name the dataset lists."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inspection.core.fingerprint import relative_name, sha256_file
from inspection.data.dataset import load_mvtec


def test_relative_name_keeps_a_symlinked_file_s_own_name(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "000.png"
    outside.parent.mkdir()
    outside.write_bytes(b"image")
    link = tmp_path / "product" / "test" / "crack" / "000.png"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    assert relative_name(link, tmp_path / "product") == "test/crack/000.png"


def test_relative_name_refuses_a_path_outside_the_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not inside the dataset folder"):
        relative_name(tmp_path / "a.png", tmp_path / "product")


def test_a_dataset_of_symlinked_images_fingerprints_by_their_names(
    tmp_path: Path, tiny_product: Path
) -> None:
    """Images linked in from another folder (a common way to assemble a product) are
    fingerprinted under the product's own layout, with the linked files' content."""
    product = tmp_path / "linked"
    shutil.copytree(tiny_product, product)
    originals = tmp_path / "originals"
    for image in sorted((product / "test").rglob("*.png")):
        target = originals / image.relative_to(product)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(image, target)
        image.symlink_to(target)
    fingerprint = load_mvtec(product).fingerprint()
    some = next(iter(sorted((product / "test").rglob("*.png"))))
    name = some.relative_to(product).as_posix()
    assert fingerprint["files"][name] == sha256_file(some.resolve())
    assert all(not rel.startswith("..") for rel in fingerprint["files"])
