"""``inspection train`` on files as plants lay them out (#90 items 1-3): a shared
``ground_truth/`` linked in and a Latin-1 file name train (they raised ValueError and
UnicodeEncodeError); an image smaller than one tile is refused before the fit, by name."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from inspection.cli import app
from inspection.core.errors import DatasetError
from inspection.core.registry import Registry

TINY = ["--set", "image_size=[64,64]", "--set", "coreset_sampling_ratio=0.1"]


def _train(tmp_path: Path, root: Path, product_yaml: str = "") -> Result:
    site = tmp_path / "site"
    (site / "products").mkdir(parents=True, exist_ok=True)
    (site / "site.yaml").write_text("registry_dir: var/registry\n", encoding="utf-8")
    if product_yaml:
        (site / "products" / "line3.yaml").write_text(product_yaml, encoding="utf-8")
    base = ["train", "--product", "line3", "--data", str(root), "--site", "site/site.yaml"]
    return CliRunner().invoke(app, [*base, *TINY], env={"COLUMNS": "400"})


def test_an_image_smaller_than_a_tile_is_refused_before_the_fit(
    tiny_product: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It died in ``core/tiling.working_size`` naming no file (a test image: after the fit)."""
    monkeypatch.chdir(tmp_path)
    root = Path(shutil.copytree(tiny_product, tmp_path / "brick"))
    crop = root / "test/good/003.png"
    Image.fromarray(np.asarray(Image.open(crop))[:100, :100]).save(crop)
    tiling = "tiling: {tile_size: [64, 64], stride: [64, 64], scale: 0.5}\n"
    result = _train(tmp_path, root, tiling)
    assert isinstance(result.exception, DatasetError)
    assert str(result.exception) == (
        f"1 file(s) cannot be trained on: {crop}: image is 100x100 px, 50x50 at the tiling "
        "scale 0.5: smaller than one tile 64x64 (tiling.tile_size); lower tiling.tile_size or "
        "raise tiling.scale in the product's config, or take the image out of the product"
    )
    assert not (tmp_path / "site/var/registry/line3").exists()  # nothing was fitted


@pytest.mark.slow
def test_a_linked_ground_truth_and_a_latin_1_name_train(
    tiny_product: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    root = Path(shutil.copytree(tiny_product, tmp_path / "brick"))
    shutil.move(root / "ground_truth", tmp_path / "shared_ground_truth")
    (root / "ground_truth").symlink_to(tmp_path / "shared_ground_truth")
    os.rename(os.fsencode(root / "train/good/000.png"),
              os.path.join(os.fsencode(root / "train/good"), b"Pr\xfcfteil_000.png"))  # fmt: skip
    result = _train(tmp_path, root)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    record = Registry(tmp_path / "site/var/registry").bundles.version("line3", "v0001")
    files = record.dataset["files"]
    assert "train/good/Pr\ufffdfteil_000.png" in files and "train/good/000.png" not in files
    assert "ground_truth/scratch/000_mask.png" in files
