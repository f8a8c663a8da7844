"""Data fixtures: one product as an 8-bit grey camera and as a 12-bit camera writes it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def twelve_bit_pair(tiny_product: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(8-bit grey copy, 12-bit copy) of ``tiny_product``, both folders named like it: the
    12-bit images hold each grey value shifted left by 4 (0..4080 in a 16-bit PNG), so read
    at 12 bits they are exactly the 8-bit copy; masks are copied as they are."""
    grey, twelve = tmp_path / "grey" / tiny_product.name, tmp_path / "12bit" / tiny_product.name
    for source in tiny_product.rglob("*.png"):
        relative = source.relative_to(tiny_product)
        for root in (grey, twelve):
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
        if "ground_truth" in relative.parts:
            shutil.copyfile(source, grey / relative)
            shutil.copyfile(source, twelve / relative)
            continue
        values = np.asarray(Image.open(source).convert("L"))
        Image.fromarray(values).save(grey / relative)
        Image.fromarray(values.astype(np.uint16) << 4).save(twelve / relative)
    return grey, twelve
