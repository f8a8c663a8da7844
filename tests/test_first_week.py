"""A QA engineer's first week, scripted on the session's tiny product: train -> export ->
serve -> ``train --update`` -> retrain -> review -> retrain.

Asserted along the way: no image the live model learned from is ever lost, no held-out image
is trained on in any form (compared by decoded pixels, as ``data check`` does), a camera at
the wrong bit depth is refused (422), and a retrain with nothing new registers nothing.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.config import load_site_config
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.data.leaks import held_out_copies, prints_of
from inspection.retrain.config import retrain_config_from_mapping
from inspection.retrain.pipeline import retrain_product
from inspection.store.store import Store
from tests.conftest import TrainedProduct
from tests.service.helpers import serve, station_config

pytestmark = pytest.mark.slow


def _png(path: Path) -> bytes:
    return path.read_bytes()


def _twelve_bit_tiff(path: Path) -> bytes:
    """The part from a mono camera set to 12 bits, saved as 16-bit TIFF."""
    grey = np.asarray(Image.open(path).convert("L"), dtype=np.uint16) << 4
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, "TIFF")
    return buffer.getvalue()


def _jpeg(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.open(source).save(target, quality=80)
    return target


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_a_first_week_loses_nothing_learned_and_trains_on_no_held_out_image(
    trained_patchcore: TrainedProduct, fp32_bundle: Path, tmp_path: Path
) -> None:
    import shutil

    from inspection.data.demo import write_demo_product

    # day 1: train and export (the session's tiny PatchCore and its FP32 bundle), go live
    shutil.copytree(trained_patchcore.registry.root, tmp_path / "registry")
    registry = Registry(tmp_path / "registry")
    product = trained_patchcore.dataset_root
    held_out = [s.path for s in load_dataset(product).test_samples]
    site_file = tmp_path / "site.yaml"
    site_file.write_text(
        "registry_dir: registry\nstore_url: sqlite:///inspection.db\nblob_dir: blobs\n"
        f"reports_dir: reports\ndatasets_dir: {product.parent}\n"
    )  # relative: beside the site file, wherever the commands run from
    said = _invoke(
        "promote", "brick", "v0001-fp32", "--actor", "qa", "--promote-not-ready",
        "--site", str(site_file),
    )  # fmt: skip
    assert "live bundle none -> v0001-fp32" in said
    line = write_demo_product(
        tmp_path / "line", "brick", seed=99, n_train=5, n_test_good=1, n_test_per_defect=1,
        size=128,
    )  # fmt: skip
    new_parts = sorted((line / "train" / "good").glob("*.png"))

    # day 2: serve; a camera left at 12 bits is refused, never judged
    with serve(station_config(tmp_path)) as station:
        ids = []
        for path in [*new_parts[3:], held_out[0]]:
            answer = station.inspect(_png(path))
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
        refused = station.inspect(_twelve_bit_tiff(new_parts[0]), request_id="cam-12bit")
        assert refused.status_code == 422 and "wrong camera bit depth" in refused.text
        assert station.station.store.count_inspections() == 3

    # day 3: add good parts; a held-out image re-saved as JPEG is refused by name
    leak = _jpeg(held_out[1], tmp_path / "leak" / "part.jpg")
    refused_update = CliRunner().invoke(
        app, ["train", "--update", "brick", "--images", str(leak.parent), "--site", str(site_file)]
    )
    assert f"{leak} is held-out {held_out[1]}" in str(refused_update.exception)
    added = tmp_path / "added"
    added.mkdir()
    for path in new_parts[:3]:
        shutil.copy(path, added / path.name)
    said = _invoke("train", "--update", "brick", "--images", str(added), "--site", str(site_file))
    assert "LINE-READY brick/v0002: " in said and ". Next: " in said  # the verdict, last
    export = ["export", "--product", "brick", "--version", "v0002", "--promote-not-ready", "--site"]
    said = _invoke(*export, str(site_file), "--allow-unsigned")
    assert "v0002-fp32" in said and registry.journal.live("brick").bundle_id == "v0002-fp32"

    # day 4: a retrain with nothing new keeps the champion and registers nothing
    site = load_site_config(site_file)
    config = retrain_config_from_mapping({
        "work_dir": str(tmp_path / "work"), "warmup": 1, "export": {"precisions": ["fp32"]},
        "gate": {"metrics": [{"name": "image_auroc", "tolerance": 1.0}], "latency_tolerance": None},
    })  # fmt: skip
    kept = retrain_product("brick", site=site, config=config, actor="qa")
    assert kept.status == "kept" and kept.details["nothing_new"]
    assert kept.details["data"]["train_learned_by_update"] == 3  # the update's images: there
    assert [v.version for v in registry.bundles.versions("brick")] == ["v0001", "v0002"]

    # day 5: review what the line saw: two new parts good, and the held-out one good too
    store = Store(site.store_url, site.blob_dir)
    for inspection_id in ids:
        store.add_review(inspection_id, label="good", reviewer="qa")

    # day 6: retrain: every learned image stays, no held-out image trains in any form
    result = retrain_product("brick", site=site, config=config, actor="qa")
    data = result.details["data"]
    assert result.details["training"] == "incremental from v0002"
    assert data["train_learned_by_update"] == 3 and data["train_reviewed_good"] == 2
    assert data["left_out"] == {ids[-1]: f"copies held-out test image {held_out[0]}"}
    challenger = registry.bundles.version("brick", result.details["challenger_version"])
    assert challenger.train_image_count() == 24 + 3 + 2
    trained_on = sorted((Path(data["train_root"]) / "train").rglob("*.png"))
    assert len(trained_on) == 24 + 3 + 2
    learned = [*new_parts[:3], *new_parts[3:]]
    assert set(held_out_copies(prints_of(learned), prints_of(trained_on))) == set(learned)
    assert not held_out_copies(prints_of(trained_on), prints_of(held_out))
