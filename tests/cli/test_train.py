"""``inspection train``: what its dataset check tells a product trained under another name."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from inspection.cli import app


def test_the_bit_depth_finding_names_the_trained_products_file(
    tiny_product: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train --product line3 --data .../brick`` told to set image_bits in products/brick.yaml,
    a file this training never reads; it reads the site's products/line3.yaml."""
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    ramp = np.tile(np.arange(128, dtype=np.uint16), (128, 1)) * 32 + 31  # 12-bit data
    for index in range(3):
        Image.fromarray(ramp).save(root / f"train/good/{index:03d}.png")
    site = tmp_path / "site"
    site.mkdir()
    (site / "site.yaml").write_text("registry_dir: var/registry\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    args = ["train", "--product", "line3", "--data", str(root), "--site", "site/site.yaml"]
    result = CliRunner().invoke(app, [*args, "--model", "nosuch"], env={"COLUMNS": "400"})
    assert "unknown model kind 'nosuch'" in str(result.exception)  # stops before training
    said = " ".join(result.output.split())  # the console wraps long lines
    assert "set image_bits: 12 (the camera's bit depth) in site/products/line3.yaml so" in said
