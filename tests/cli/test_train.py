"""``inspection train``: arguments answered before the dataset is read; what its dataset check
tells a product trained under another name."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from inspection.cli import app


def _twelve_bit_copy(tiny_product: Path, tmp_path: Path) -> Path:
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    ramp = np.tile(np.arange(128, dtype=np.uint16), (128, 1)) * 32 + 31  # 12-bit data
    for index in range(3):
        Image.fromarray(ramp).save(root / f"train/good/{index:03d}.png")
    return root


def _train(tmp_path: Path, root: Path, *args: str) -> Result:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "site.yaml").write_text("registry_dir: var/registry\n", encoding="utf-8")
    base = ["train", "--product", "line3", "--data", str(root), "--site", "site/site.yaml"]
    return CliRunner().invoke(app, [*base, *args], env={"COLUMNS": "400"})


def test_an_unknown_model_kind_is_refused_before_the_dataset_is_read(
    tiny_product: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--model nosuch`` (or a bad --set) answered only after every image had been read."""
    monkeypatch.chdir(tmp_path)
    result = _train(tmp_path, _twelve_bit_copy(tiny_product, tmp_path), "--model", "nosuch")
    assert "unknown model kind 'nosuch'" in str(result.exception)
    assert "data check" not in result.output


@pytest.mark.slow
def test_the_bit_depth_finding_names_the_trained_products_file(
    tiny_product: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train --product line3 --data .../brick`` told to set image_bits in products/brick.yaml,
    a file this training never reads; it reads the site's products/line3.yaml."""
    monkeypatch.chdir(tmp_path)
    tiny = ["--set", "image_size=[64,64]", "--set", "coreset_sampling_ratio=0.1"]
    result = _train(tmp_path, _twelve_bit_copy(tiny_product, tmp_path), *tiny)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # the console wraps long lines
    assert "set image_bits: 12 (the camera's bit depth) in site/products/line3.yaml so" in said
