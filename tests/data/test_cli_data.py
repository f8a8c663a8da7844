"""``inspection data``: exit codes 0 (ok) / 1 (problems) / 2 (unusable path), no tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.errors import ConfigError, DatasetError

runner = CliRunner()


def flat(text: str) -> str:
    """``text`` without whitespace and table borders: a console narrower than COLUMNS asks
    (pytest-xdist workers) wraps a long line inside a word or a table cell."""
    return "".join(text.split()).replace("│", "").replace("┃", "")


def test_check_ok_exits_0_and_writes_json(tiny_product: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = runner.invoke(app, ["data", "check", str(tiny_product), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "brick: OK" in result.output
    report = json.loads(out.read_text())
    assert report["ok"] is True
    assert report["counts"]["test"]["hole"] == 3


def test_check_problems_exit_1_and_name_the_file(tiny_product: Path, tmp_path: Path) -> None:
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    (root / "ground_truth" / "stain" / "001_mask.png").unlink()
    result = runner.invoke(app, ["data", "check", str(root)], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert "test/stain/001.png" in result.output
    assert "defective image has no mask" in result.output


def test_check_bad_path_raises_dataset_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "check", str(tmp_path / "nope")])
    assert isinstance(result.exception, DatasetError)


def test_bad_path_is_one_line_exit_2_through_main(tmp_path: Path) -> None:
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": repo, "COLUMNS": "400"}
    proc = subprocess.run(
        [sys.executable, "-m", "inspection", "data", "check", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: dataset folder not found: {tmp_path / 'nope'}"


def test_demo_and_sheet_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # its log goes to ./var/logs: here, not the checkout's
    args = ["data", "demo", "--out", str(tmp_path), "--size", "48", "--products", "grass"]
    result = runner.invoke(app, [*args, "--train", "2", "--test-good", "1", "--per-defect", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "grass" / "ground_truth" / "stain" / "000_mask.png").is_file()
    sheet = tmp_path / "sheet.png"
    result = runner.invoke(
        app, ["data", "sheet", str(tmp_path / "grass"), "--out", str(sheet), "--tile", "48"]
    )
    assert result.exit_code == 0, result.output
    width, height = Image.open(sheet).size
    assert width == 5 * (48 + 2) and height > 48


def test_demo_unknown_product_is_a_dataset_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "demo", "--out", str(tmp_path), "--products", "tiles"])
    assert isinstance(result.exception, DatasetError)
    assert "valid products: brick, grass, gravel" in str(result.exception)


def test_check_takes_the_products_image_bits(tiny_product: Path, tmp_path: Path) -> None:
    import shutil

    import numpy as np
    from PIL import Image

    root = shutil.copytree(tiny_product, tmp_path / "brick")
    Image.fromarray(np.full((128, 128), 4095, np.uint16)).save(root / "train/good/000.png")
    env = {"COLUMNS": "300"}
    undeclared = runner.invoke(app, ["data", "check", str(root)], env=env)
    assert flat("set image_bits: 12") in flat(undeclared.output)
    declared = runner.invoke(app, ["data", "check", str(root), "--image-bits", "12"], env=env)
    assert declared.exit_code == 0 and "image_bits" not in declared.output


def test_check_reads_image_bits_from_the_sites_product_config(
    tiny_product: Path, tmp_path: Path
) -> None:
    """A product that declares image_bits: 12 was told to 'set image_bits: 12' by data check
    unless --image-bits was given too."""
    import numpy as np

    root = shutil.copytree(tiny_product, tmp_path / "cam12")
    Image.fromarray(np.full((128, 128), 4095, np.uint16)).save(root / "train/good/000.png")
    site = tmp_path / "site" / "site.yaml"
    (site.parent / "products").mkdir(parents=True)
    site.write_text("{}\n", encoding="utf-8")
    (site.parent / "products" / "cam12.yaml").write_text("image_bits: 12\n", encoding="utf-8")
    env = {"COLUMNS": "300"}
    result = runner.invoke(app, ["data", "check", str(root), "--site", str(site)], env=env)
    said = " ".join(result.output.split())
    assert result.exit_code == 0, said
    assert "image_bits: 12 (products/cam12.yaml" in said and "set image_bits" not in said
    (site.parent / "products" / "cam12.yaml").write_text("image_bits: 7\n", encoding="utf-8")
    bad = runner.invoke(app, ["data", "check", str(root), "--site", str(site)], env=env)
    assert isinstance(bad.exception, ConfigError)  # main() prints it as one line
    assert "cam12.yaml: image_bits" in str(bad.exception)


def test_check_measures_the_budget_note_against_the_products_budget(
    tiny_product: Path, tmp_path: Path
) -> None:
    """A product set to a 5 % budget (19 good calibration images needed, 26 here) was told
    its 1 % default needs 99 and to 'raise the budget', which it had done."""
    root = shutil.copytree(tiny_product, tmp_path / "bracket")
    site = tmp_path / "site" / "site.yaml"
    (site.parent / "products").mkdir(parents=True)
    site.write_text("{}\n", encoding="utf-8")
    env = {"COLUMNS": "300"}
    default = runner.invoke(app, ["data", "check", str(root), "--site", str(site)], env=env)
    said = " ".join(default.output.split())
    assert default.exit_code == 0, said
    assert "the 1.0% false-reject budget needs 99" in said
    products = site.parent / "products" / "bracket.yaml"
    assert flat(f"raise operating_point.budget in {products}") in flat(said)
    products.write_text("operating_point: {budget: 0.05}\n", encoding="utf-8")
    raised = runner.invoke(app, ["data", "check", str(root), "--site", str(site)], env=env)
    assert raised.exit_code == 0, raised.output
    assert "note:" not in raised.output and "false-reject budget" not in raised.output
    products.write_text("operating_point: {budget: 0.03}\n", encoding="utf-8")  # needs 33
    short = runner.invoke(app, ["data", "check", str(root), "--site", str(site)], env=env)
    assert "the 3.0% false-reject budget needs 33" in " ".join(short.output.split())


def test_check_names_image_bits_only_for_16_bit_images(tiny_product: Path, tmp_path: Path) -> None:
    """``data check`` said 'image_bits: 16' for a product of 8-bit images, whose decoding never
    uses it; it names the product's image_bits when 16-bit images are there to read with it."""
    root = shutil.copytree(tiny_product, tmp_path / "cam")
    site = tmp_path / "site" / "site.yaml"
    (site.parent / "products").mkdir(parents=True)
    site.write_text("{}\n", encoding="utf-8")
    (site.parent / "products" / "cam.yaml").write_text("{}\n", encoding="utf-8")
    args, env = ["data", "check", str(root), "--site", str(site)], {"COLUMNS": "300"}

    eight = runner.invoke(app, args, env=env)
    Image.fromarray(np.full((128, 128), 60000, np.uint16)).save(root / "train/good/000.png")
    sixteen = runner.invoke(app, args, env=env)

    assert eight.exit_code == 0, eight.output
    assert "image_bits: " not in eight.output
    assert "image_bits: 16 (products/cam.yaml in " in " ".join(sixteen.output.split())


def test_demo_sends_library_logs_to_a_file(tmp_path: Path) -> None:
    """``data demo`` poured its INFO logs onto the terminal; like ``train`` it now writes them
    to ``var/logs`` beside the site's registry and names the file."""
    args = ["data", "demo", "--out", "d", "--size", "48", "--products", "weave", "--train", "2"]
    run = subprocess.run(
        [sys.executable, "-m", "inspection", *args, "--test-good", "1", "--per-defect", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    (log,) = (tmp_path / "var" / "logs").glob("data-demo-*.log")
    assert "INFO" not in run.stdout + run.stderr
    assert "wrote demo product weave" in log.read_text(encoding="utf-8")
    assert f"library logs and warnings: var/logs/{log.name}" in run.stdout
