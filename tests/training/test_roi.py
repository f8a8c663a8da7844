"""The product's ROI in training: patches outside it never reach the bank or the loss."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from inspection.core.product_config import model_config_from_mapping
from inspection.core.roi import RoiSpec
from inspection.core.tiling import TilingSpec
from inspection.data.dataset import Sample
from inspection.training.backbones import resolve_weights
from inspection.training.models import build_model
from inspection.training.models.stfpm.lightning_model import masked_stfpm_loss
from inspection.training.roi import TrainingRoi, centres, feature_grid
from inspection.training.tiled import TileDataset, tile_key
from inspection.training.train import fit

SIZE = 64
LEFT_HALF = RoiSpec((SIZE, SIZE), include=(((0, 0), (28, 0), (28, SIZE), (0, SIZE)),))


def test_centres_sample_each_cell_at_its_middle() -> None:
    mask = np.zeros((8, 8), bool)
    mask[:, :4] = True  # cells of 2 px: centres at x = 1, 3, 5, 7
    assert centres(mask, 4, 4).tolist() == [[True, True, False, False]] * 4
    assert centres(mask, 8, 8).sum() == 32 and not centres(mask, 2, 2)[:, 1].any()


@pytest.mark.parametrize(
    ("rows", "batch", "size", "expected"),
    [(2 * 32 * 32, 2, (256, 256), (32, 32)), (3 * 8 * 16, 3, (64, 128), (8, 16))],
)
def test_feature_grid(rows: int, batch: int, size: tuple, expected: tuple) -> None:
    assert feature_grid(rows, batch, size) == expected


def test_feature_grid_rejects_rows_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="cannot lay 100 embedding rows"):
        feature_grid(100, 3, (64, 64))


def _features(seed: int) -> dict[str, torch.Tensor]:
    rng = torch.Generator().manual_seed(seed)
    return {
        "a": torch.randn(2, 8, 16, 16, generator=rng),
        "b": torch.randn(2, 4, 8, 8, generator=rng),
    }


def test_masked_loss_with_every_position_is_anomalibs_stfpm_loss() -> None:
    from anomalib.models.image.stfpm.loss import STFPMLoss

    teacher, student = _features(0), _features(1)
    everything = {k: torch.ones(2, *v.shape[-2:], dtype=torch.bool) for k, v in teacher.items()}
    expected = STFPMLoss()(teacher, student)
    assert torch.allclose(masked_stfpm_loss(teacher, student), expected)
    assert torch.allclose(masked_stfpm_loss(teacher, student, everything), expected)


def test_masked_loss_ignores_positions_outside_and_sends_them_no_gradient() -> None:
    teacher = _features(0)
    student = {k: v.clone() for k, v in teacher.items()}
    keep = {}
    for layer, features in student.items():
        width = features.shape[-1]
        features[..., width // 2 :] = torch.randn_like(features[..., width // 2 :])  # outside
        keep[layer] = torch.zeros(2, *features.shape[-2:], dtype=torch.bool)
        keep[layer][..., : width // 2] = True
        features.requires_grad_(True)
    loss = masked_stfpm_loss(teacher, student, keep)
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-6)
    assert float(masked_stfpm_loss(teacher, student)) > 0.1  # unmasked: the outside counts
    loss.backward()
    assert all(float(f.grad[..., f.shape[-1] // 2 :].abs().sum()) == 0.0 for f in student.values())


def test_tile_dataset_skips_tiles_without_an_roi_pixel(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.zeros((SIZE, SIZE, 3), np.uint8))
    sample = Sample(path, "train", 0, "good")
    tiles = TileDataset([sample], TilingSpec((32, 32), (32, 32)), LEFT_HALF)
    assert tiles.total_tiles == 4 and len(tiles) == 2  # the right column holds no ROI pixel
    assert [tiles[i].image_path for i in range(2)] == [tile_key(path, 0), tile_key(path, 2)]
    mask = tiles.training_roi.input_mask(tile_key(path, 0))
    assert mask.shape == (32, 32) and mask[:, :28].all() and not mask[:, 29:].any()
    assert len(TileDataset([sample], TilingSpec((32, 32), (32, 32)))) == 4


def _busy_background_samples(tmp_path: Path, n: int = 6) -> list[Sample]:
    """A smooth part on the left, a different high-contrast pattern on the right of each image."""
    rng = np.random.default_rng(0)
    samples = []
    for index in range(n):
        image = np.full((SIZE, SIZE, 3), 120, np.uint8)
        image[:, :28] += rng.integers(0, 6, (SIZE, 28, 3), dtype=np.uint8)
        blocks = rng.integers(0, 2, (SIZE // 4, (SIZE - 32) // 4), dtype=np.uint8) * 255
        image[:, 32:] = np.kron(blocks, np.ones((4, 4), np.uint8))[..., None]
        path = tmp_path / f"{index}.png"
        cv2.imwrite(str(path), image)
        samples.append(Sample(path, "train", 0, "good"))
    return samples


@pytest.mark.slow
def test_patchcore_bank_holds_no_patch_from_outside_the_roi(tmp_path: Path) -> None:
    config = model_config_from_mapping(
        {"kind": "patchcore", "image_size": [SIZE, SIZE], "batch_size": 3,
         "coreset_sampling_ratio": 1.0, "num_neighbors": 1},
    )  # fmt: skip
    weights = resolve_weights(config.backbone.name, config.backbone.weights, None)
    samples = _busy_background_samples(tmp_path)
    masks = TrainingRoi.whole_image(LEFT_HALF, (SIZE, SIZE))
    masked, _ = fit(config, samples, samples[:2], weights, progress=False, roi=masks)
    plain, _ = fit(config, samples, samples[:2], weights, progress=False)
    assert plain.patches_kept == plain.patches_seen
    cells = feature_grid(plain.patches_seen, len(samples), (SIZE, SIZE))
    inside = int(centres(masks.input_mask("any"), *cells).sum())
    assert masked.patches_kept == inside * len(samples) < masked.patches_seen
    assert len(masked.model.memory_bank) <= masked.patches_kept

    image = torch.from_numpy(cv2.imread(str(samples[0].path))[..., ::-1].copy())
    batch = image.permute(2, 0, 1)[None].float() / 255.0

    def background_score(model: object) -> float:
        with torch.no_grad():
            amap = model.model(model.pre_processor(batch)).anomaly_map[0, 0]
        return float(amap[:, 40:].mean())

    # without the ROI the background is in the bank (a training image scores ~0 there)
    assert background_score(masked) > 3 * background_score(plain) + 1e-3


@pytest.mark.slow
def test_stfpm_training_step_uses_the_masked_loss() -> None:
    config = model_config_from_mapping(
        {"kind": "stfpm", "image_size": [SIZE, SIZE], "backbone": {"weights": "random"}}
    )
    weights = resolve_weights(config.backbone.name, "random", None)
    model = build_model(config, weights).train()
    model.training_roi = TrainingRoi.whole_image(LEFT_HALF, (SIZE, SIZE))
    from anomalib.data import ImageBatch

    torch.manual_seed(0)
    batch = ImageBatch(image=torch.rand(2, 3, SIZE, SIZE), image_path=["a", "b"])
    loss = model.training_step(batch)["loss"]
    teacher, student = model.model(batch.image)
    keep = {
        layer: model.training_roi.patch_keep(["a", "b"], *f.shape[-2:])
        for layer, f in teacher.items()
    }
    assert torch.allclose(loss, masked_stfpm_loss(teacher, student, keep))
    assert not torch.allclose(loss, model.loss(teacher, student))


def test_export_refuses_a_product_roi_other_than_the_one_trained_with(tmp_path: Path) -> None:
    from dataclasses import replace

    from inspection.core.bundle import BUNDLE_SCHEMA_VERSION, BundleMetadata, Preprocessing
    from inspection.core.calibration import Normalization
    from inspection.core.errors import BundleError
    from inspection.core.roi import RoiTraining
    from inspection.training.registry_export import with_part_setup

    (tmp_path / "products").mkdir()
    (tmp_path / "products" / "part.yaml").write_text(
        "roi:\n  reference_size: [64, 64]\n  include:\n    - [[0, 0], [40, 0], [40, 64], [0, 64]]\n"
    )
    base = BundleMetadata(
        schema_version=BUNDLE_SCHEMA_VERSION, bundle_id="v0001-fp32", product="part",
        model_kind="patchcore", model_version="part/v0001", precision="fp32",
        preprocessing=Preprocessing((SIZE, SIZE), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
        normalization=Normalization(0.5, 0.5, 0.0, 1.0, 0.0, 1.0),
        training_roi=RoiTraining(LEFT_HALF, 0.44),
    )  # fmt: skip
    product_file = re.escape(str(tmp_path / "products" / "part.yaml"))  # the site's, by path
    with pytest.raises(BundleError, match=f"trained with a different ROI than {product_file} has"):
        with_part_setup(base, tmp_path)
    configured = with_part_setup(replace(base, training_roi=None), tmp_path)[0].roi
    meta, _ = with_part_setup(replace(base, training_roi=RoiTraining(configured, 0.6)), tmp_path)
    assert meta.roi == configured and meta.training_roi.roi == configured
