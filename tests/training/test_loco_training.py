"""A product in the MVTec LOCO layout trains with its pixel metrics (issue #90 case 9: the
model was registered without them, every mask folder unread)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspection.core.product_config import model_config_from_mapping
from inspection.core.registry import Registry
from inspection.data.dataset import MVTEC_LOCO, load_dataset
from tests.conftest import TINY_PATCHCORE, TrainedProduct

pytestmark = pytest.mark.slow


def _as_loco(source: Path, target: Path) -> Path:
    """``source`` with each ``<stem>_mask.png`` split into a folder of two masks (left and
    right half): their union is the original mask."""
    shutil.copytree(source, target)
    for mask_path in sorted((target / "ground_truth").rglob("*_mask.png")):
        mask = np.asarray(Image.open(mask_path))
        folder = mask_path.parent / mask_path.stem.removesuffix("_mask")
        folder.mkdir()
        left, right = mask.copy(), mask.copy()
        left[:, mask.shape[1] // 2 :] = 0
        right[:, : mask.shape[1] // 2] = 0
        Image.fromarray(left).save(folder / "000.png")
        Image.fromarray(right).save(folder / "001.png")
        mask_path.unlink()
    return target


def test_a_loco_product_trains_with_the_pixel_metrics_of_its_mask_folders(
    trained_patchcore: TrainedProduct, tmp_path: Path
) -> None:
    # deferred: torch and anomalib, for this slow test only
    from inspection.training.train import train

    dataset = load_dataset(_as_loco(trained_patchcore.dataset_root, tmp_path / "brick"))
    assert dataset.layout == MVTEC_LOCO
    config = model_config_from_mapping(TINY_PATCHCORE, where="tests TINY_PATCHCORE")
    record = train(config, dataset, product="brick", registry=Registry(tmp_path / "registry"),
                   progress=False)  # fmt: skip
    loco, mvtec = record.evaluation().overall, trained_patchcore.record.evaluation().overall
    assert loco.pixel_auroc is not None and loco.aupro is not None
    # Two fits of the same data agree to float noise (multi-threaded CPU kernels), not bitwise.
    expected = (mvtec.pixel_auroc, mvtec.aupro)
    assert (loco.pixel_auroc, loco.aupro) == pytest.approx(expected, abs=1e-3)
