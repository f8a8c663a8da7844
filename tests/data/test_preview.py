"""Contact sheets: a 12-bit camera's images drawn at the product's image_bits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from inspection.cli import app
from inspection.data.dataset import load_mvtec
from inspection.data.preview import contact_sheet


def test_a_12_bit_dataset_previews_at_its_image_bits(twelve_bit_pair: tuple[Path, Path]) -> None:
    """16-bit images holding 12-bit data were drawn at the high byte (near black): read at
    the product's image_bits the sheet is the 8-bit camera's, pixel for pixel."""
    grey, twelve = (load_mvtec(root) for root in twelve_bit_pair)
    expected = contact_sheet([grey], tile=48)
    at_12 = contact_sheet([twelve], tile=48, image_bits={twelve.name: 12})
    np.testing.assert_array_equal(at_12, expected)
    high_byte = contact_sheet([twelve], tile=48, image_bits={"another product": 12})
    assert not np.array_equal(high_byte, expected)  # a name not in image_bits: the default


def test_sheet_command_reads_image_bits_from_the_sites_product_config(
    twelve_bit_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    grey, twelve = twelve_bit_pair
    site = tmp_path / "site" / "site.yaml"
    (site.parent / "products").mkdir(parents=True)
    site.write_text("{}\n", encoding="utf-8")
    (site.parent / "products" / f"{twelve.name}.yaml").write_text("image_bits: 12\n")
    sheets = {}
    for name, args in {
        "grey": [str(grey)],
        "site": [str(twelve), "--site", str(site)],
        "option": [str(twelve), "--image-bits", "12"],
    }.items():
        out = tmp_path / f"{name}.png"
        result = CliRunner().invoke(app, ["data", "sheet", *args, "--out", str(out)])
        assert result.exit_code == 0, result.output
        sheets[name] = np.asarray(Image.open(out))
    np.testing.assert_array_equal(sheets["site"], sheets["grey"])
    np.testing.assert_array_equal(sheets["option"], sheets["grey"])
