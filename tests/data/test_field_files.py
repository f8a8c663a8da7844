"""Files as plants lay them out (#90 items 1-3): folders and files that are symbolic links, names
that are not UTF-8 (a Latin-1 name from a Windows share), and an image smaller than one tile.
Each is read under its name inside the dataset folder, or refused by name with the fix."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.errors import DatasetError
from inspection.core.fingerprint import fingerprint_files, path_of, shown_name
from inspection.core.tiling import TilingSpec
from inspection.data.check import check_dataset
from inspection.data.dataset import load_dataset

LATIN_1 = b"Pr\xfcfteil_000.png"  # "Prüfteil" as a Windows share in Latin-1 writes it
SHOWN = "Pr\ufffdfteil_000.png"


def _copy(tiny_product: Path, where: Path) -> Path:
    return Path(shutil.copytree(tiny_product, where / tiny_product.name))


def _rename_latin_1(folder: Path, name: str) -> Path:
    """``folder/name`` renamed to ``LATIN_1`` (its bytes, as the share gave them)."""
    target = os.path.join(os.fsencode(folder), LATIN_1)
    os.rename(os.fsencode(folder / name), target)
    return Path(os.fsdecode(target))


# ------------------------------------------------------------------- symbolic links (item 1)
@pytest.mark.parametrize(
    "linked", ["ground_truth", "ground_truth/scratch", "ground_truth/scratch/000_mask.png",
               "train/good", "test/scratch/001.png"],
)  # fmt: skip
def test_linked_folders_and_files_are_read_under_their_layout_names(
    tiny_product: Path, tmp_path: Path, linked: str
) -> None:
    """A ``ground_truth/`` shared by a link once passed ``data check`` and then stopped
    ``train`` with "... is not inside the dataset folder"."""
    plain = load_dataset(_copy(tiny_product, tmp_path / "plain"))
    root = _copy(tiny_product, tmp_path / "linked")
    shared = tmp_path / "share" / linked
    shared.parent.mkdir(parents=True)
    shutil.move(root / linked, shared)
    (root / linked).symlink_to(shared)
    dataset = load_dataset(root)
    assert check_dataset(dataset).ok
    assert dataset.fingerprint() == plain.fingerprint()  # the same names and contents
    assert all(not s.mask_path or s.mask_path.is_relative_to(root) for s in dataset.samples)


def test_a_dangling_link_is_refused_by_name(tiny_product: Path, tmp_path: Path) -> None:
    root = _copy(tiny_product, tmp_path)
    (root / "ground_truth/scratch/000_mask.png").unlink()
    (root / "ground_truth/scratch/000_mask.png").symlink_to(tmp_path / "gone/000_mask.png")
    report = check_dataset(load_dataset(root))
    [problem] = [p for p in report.errors if p.code == "broken_link"]
    assert problem.path == root / "ground_truth/scratch/000_mask.png"
    assert problem.message == (
        f"symbolic link to {tmp_path}/gone/000_mask.png, which does not exist: restore its "
        "target, or remove the link"
    )


# -------------------------------------------------------------- names not in UTF-8 (item 2)
def test_a_latin_1_name_is_fingerprinted_by_its_bytes_and_shown_with_u_fffd(
    tiny_product: Path, tmp_path: Path
) -> None:
    root = _copy(tiny_product, tmp_path)
    content = (root / "train/good/000.png").read_bytes()
    _rename_latin_1(root / "train/good", "000.png")
    fingerprint = load_dataset(root).fingerprint()  # raised UnicodeEncodeError
    assert fingerprint["files"][f"train/good/{SHOWN}"] == hashlib.sha256(content).hexdigest()
    assert "train/good/000.png" not in fingerprint["files"]
    json.dumps(fingerprint).encode("utf-8")  # a record writes it as it is


def test_names_that_differ_only_in_bytes_not_utf_8_are_refused(tmp_path: Path) -> None:
    for name in (b"Pr\xfcf.png", b"Pr\xe4f.png"):  # "Prüf", "Präf": both read "Pr?f"
        Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), name))).write_bytes(name)
    with pytest.raises(ValueError, match=r"reads as Pr\ufffdf.png too \(they differ only in bytes"):
        fingerprint_files(sorted(tmp_path.iterdir()), tmp_path)


def test_without_test_folder_a_latin_1_name_is_held_out_by_its_bytes(
    tiny_product: Path, tmp_path: Path
) -> None:
    """``data check`` without ``test/`` raised UnicodeEncodeError in ``_name_hash``."""
    root = _copy(tiny_product, tmp_path)
    shutil.rmtree(root / "test")
    shutil.rmtree(root / "ground_truth")
    _rename_latin_1(root / "train/good", "000.png")
    dataset = load_dataset(root)
    assert dataset.held_out_of_train and len(dataset.samples) == 24
    assert check_dataset(dataset).ok


def test_data_check_shows_a_latin_1_name_with_u_fffd_in_its_table_and_json(
    tiny_product: Path, tmp_path: Path
) -> None:
    root = _copy(tiny_product, tmp_path)
    _rename_latin_1(root / "train/good", "000.png").write_bytes(b"not an image")
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["data", "check", str(root), "--json", str(out)])
    assert result.exit_code == 1, result.output
    assert f"train/good/{SHOWN}" in result.output
    [problem] = json.loads(out.read_text(encoding="utf-8"))["problems"]
    assert problem["path"] == shown_name(root / "train/good") + "/" + SHOWN
    assert problem["message"] == "image: not an image (unrecognised format)"


# ------------------------------------------------------- smaller than one tile (item 3)
TILING = TilingSpec((64, 64), (64, 64), scale=0.5)


def test_an_image_smaller_than_one_tile_is_named_with_its_size_and_the_fix(
    tiny_product: Path, tmp_path: Path
) -> None:
    """A 100x100 crop among 128 px images at scale 0.5 is 50x50, below a 64 px tile: ``data
    check`` called it "mixed sizes", and ``train`` died in ``working_size`` naming no file."""
    root = _copy(tiny_product, tmp_path)
    crop = root / "test/good/003.png"
    Image.fromarray(np.asarray(Image.open(crop))[:100, :100]).save(crop)
    report = check_dataset(load_dataset(root), tiling=TILING)
    assert [(p.path, p.code) for p in report.errors] == [(crop, "smaller_than_tile")]
    assert report.errors[0].message == (
        "image is 100x100 px, 50x50 at the tiling scale 0.5: smaller than one tile 64x64 "
        "(tiling.tile_size); lower tiling.tile_size or raise tiling.scale in the product's "
        "config, or take the image out of the product"
    )
    assert check_dataset(load_dataset(tiny_product), tiling=TILING).ok


def test_dataset_fingerprint_refusal_is_a_dataset_error(tmp_path: Path, tiny_product: Path) -> None:
    root = _copy(tiny_product, tmp_path)
    for index, name in enumerate((b"Pr\xfcf.png", b"Pr\xe4f.png")):
        os.rename(os.fsencode(root / f"train/good/{index:03d}.png"),
                  os.path.join(os.fsencode(root / "train/good"), name))  # fmt: skip
    with pytest.raises(DatasetError, match=r"cannot fingerprint dataset 'brick': .* rename one"):
        load_dataset(root).fingerprint()


def test_a_recorded_name_shown_with_u_fffd_finds_its_file_again(tmp_path: Path) -> None:
    """Export and ``--update`` rebuild paths from the names a record holds: ``root / name``
    was a file that does not exist for a Latin-1 name."""
    folder = tmp_path / "train/good"
    folder.mkdir(parents=True)
    (folder / "000.png").touch()
    latin_1 = _rename_latin_1(folder, "000.png")
    assert path_of(tmp_path, f"train/good/{SHOWN}") == latin_1
    assert path_of(tmp_path, "train/good/other.png") == folder / "other.png"  # kept: named


def test_a_folder_spec_reads_a_linked_mask_folder_under_its_own_name(
    tiny_product: Path, tmp_path: Path
) -> None:
    """A spec's ``mask_dir`` linked to a share was resolved to the share: the dataset root
    became their common parent and every name changed with the link's target."""
    from tests.data.test_dataset import _custom_tree

    tree = _custom_tree(tiny_product, tmp_path / "widget", test_good=True)
    spec = tree / "widget.yaml"
    spec.write_text(
        "name: widget\nnormal_dir: images/ok\nnormal_test_dir: images/ok_holdout\n"
        "abnormal_dirs: {crack: images/ng_crack, stain: images/ng_stain}\nmask_dir: labels\n"
    )
    plain = load_dataset(spec).fingerprint()
    shutil.move(tree / "labels", tmp_path / "share")
    (tree / "labels").symlink_to(tmp_path / "share")
    dataset = load_dataset(spec)
    assert dataset.root == tree.resolve()
    assert dataset.fingerprint() == plain
    assert "labels/crack/000.png" in plain["files"]
