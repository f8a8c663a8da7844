"""Image-level synthetic anomalies teach the mixed model's head where no defect is labelled (#82)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import binary_erosion

from inspection.core.product_config import model_config_from_mapping
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.training.models.mixed import synthetic
from inspection.training.train import train_model
from tests.conftest import TINY_PATCHCORE

SYNTHETIC = {**TINY_PATCHCORE, "supervised": "auto", "synthetic": True}


def test_synthetic_anomalies_teach_a_head_the_keep_rule_judges(
    tiny_product: Path, tmp_path: Path
) -> None:
    """No labelled defect: the head learns from the image-level pool and is judged on CutPaste
    patches of the good images it did not learn from (not on the validation defects)."""
    config = model_config_from_mapping(SYNTHETIC, where="tests SYNTHETIC")
    dataset = load_dataset(tiny_product)
    assert not dataset.labelled_samples
    outcome = train_model(
        config, dataset, product="brick", registry=Registry(tmp_path), progress=False
    )
    choice = outcome.record.extra["supervised"]
    counted = choice["synthetic"]
    assert choice["labelled"] == {}
    assert counted["taught"] == synthetic.COPIES * choice["good_images"]
    evidence = choice["evidence"]
    assert counted["judged"] > 0 and evidence["defects"] == counted["judged"]
    assert evidence["good"] > len(dataset.train_samples) - choice["good_images"]
    decided = "error_change_bound" in evidence  # else PatchCore alone made no error: none taught
    assert choice["kept"] is (decided and evidence["error_change_bound"] < 0)
    assert outcome.model.model.supervised.enabled is choice["kept"]


def test_the_pool_draws_thin_strokes_and_perlin_blends(tiny_product: Path) -> None:
    """Half the pool are strokes at most 3 px wide, half Perlin blends of the product's
    texture; every synthetic image has a defect and differs from its source."""
    samples = load_dataset(tiny_product).train_samples
    pool = synthetic.teaching_pool(_Identity(), samples[:2], samples[2:], (64, 64), 8, 0)
    assert len(pool.images) == 2 * synthetic.COPIES
    areas = pool.masks.flatten(1).sum(1)
    strokes = (torch.arange(len(areas)) % synthetic.COPIES) >= synthetic.COPIES // 2
    assert bool((areas > 0).all())
    inner = [binary_erosion(m[0].numpy() > 0, np.ones((4, 4))).sum() for m in pool.masks]
    thick = torch.tensor(inner, dtype=torch.float32) / areas  # 1-3 px wide: only bends fill
    assert float(thick[strokes].max()) <= 0.25
    clean = synthetic._images(samples[:2], (64, 64), 8)[pool.source]
    assert bool(((pool.images - clean).abs().flatten(1).amax(1) > 0.05).all())


class _Identity:
    """A model whose pre-processor leaves images as they are."""

    @staticmethod
    def pre_processor(images: torch.Tensor) -> torch.Tensor:
        return images


def test_cutpaste_pastes_a_rectangle_of_another_image(tiny_product: Path) -> None:
    samples = load_dataset(tiny_product).train_samples[:4]
    pasted = synthetic.cutpaste_inputs(_Identity(), samples, (64, 64), 8, 0)
    clean = synthetic._images(samples, (64, 64), 8)
    changed = ((pasted - clean).abs().amax(1) > 0).flatten(1).sum(1).numpy()
    assert np.all(changed > 0) and np.all(changed <= synthetic.PATCH_AREA[1] * 64 * 64)
