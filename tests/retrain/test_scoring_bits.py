"""Retrain scoring reads each bundle's evaluation images at the bit depth it was trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bench._shared import write_mean_bundle
from inspection.retrain.assemble import EvalItem
from inspection.retrain.scoring import evaluate_bundles


def test_a_12_bit_bundle_is_scored_on_its_images_read_at_12_bits(tmp_path: Path) -> None:
    """Scoring read every image at the 16-bit default: a 12-bit part was near black (0..15)."""
    twelve = write_mean_bundle(tmp_path / "12", input_size=(32, 32), product="p", source_bits=12)
    sixteen = write_mean_bundle(tmp_path / "16", input_size=(32, 32), product="p")
    items = []
    for index, level in enumerate((1024, 3072)):  # a darker good part, a brighter defect
        path = tmp_path / f"{index}.png"
        Image.fromarray(np.full((32, 32), level, np.uint16)).save(path)
        items.append(EvalItem(path, index, "crack" if index else "good", None, "test"))
    scored = evaluate_bundles({"champion": sixteen, "challenger": twelve}, items, warmup=0)
    assert np.allclose(scored["challenger"].scores, [64 / 255, 192 / 255], atol=1e-3)
    assert np.allclose(scored["champion"].scores, [4 / 255, 12 / 255], atol=1e-3)
