"""Position as a soft constraint of PatchCore's kNN (``training.models.patchcore.position``):
off by default and then the model of before, on: a patch matched only far away on the grid
scores higher, a training image shifted by one patch does not, and the exported graph carries
the columns."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from inspection.core.product_config import model_config_from_mapping
from inspection.data.dataset import Sample
from inspection.training.backbones import resolve_weights
from inspection.training.models.patchcore import build
from inspection.training.models.patchcore.out_of_fold import model_inputs
from inspection.training.models.patchcore.position import nearest_other_median
from inspection.training.train import fit
from tests.conftest import TINY_PATCHCORE

SIZE = (128, 128)  # a 16 x 16 patch grid (stride 8): one patch is 1/16 of the side


def _cell(seed: int, square: tuple[int, int] | None = (8, 8), shift: int = 0) -> np.ndarray:
    """A grey 128 px 'cell': noise, a bright vertical busbar, a dark 16 px square at ``square``
    (top-left corner in every training cell), rolled ``shift`` px to the right."""
    rng = np.random.default_rng(seed)
    image = np.full(SIZE, 160.0) + rng.normal(0, 12, SIZE)
    image[:, 60:68] = 230
    if square is not None:
        y, x = square
        image[y : y + 16, x : x + 16] = 40
    return np.roll(np.clip(image, 0, 255).astype(np.uint8), shift, axis=1)


def _samples(directory: Path, images: list[np.ndarray]) -> list[Sample]:
    directory.mkdir(parents=True, exist_ok=True)
    samples = []
    for index, image in enumerate(images):
        path = directory / f"{index:03d}.png"
        Image.fromarray(image).save(path)
        samples.append(Sample(path, "train", 0, "good"))
    return samples


def _config(**settings: Any) -> Any:
    return model_config_from_mapping({
        **TINY_PATCHCORE, "image_size": list(SIZE), "image_score": "map_peak",
        "image_score_blur": 0.0, **settings,
    })  # fmt: skip


def _fitted(train: list[Sample], **settings: Any) -> Any:
    config = _config(**settings)
    weights = resolve_weights(config.backbone.name, config.backbone.weights, None)
    model, _ = fit(config, train, [], weights, progress=False)
    return model.eval()


def _scores(model: Any, samples: list[Sample]) -> np.ndarray:
    with torch.no_grad():
        return model.model(model_inputs(model, samples, SIZE)).pred_score.numpy()


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Sample]]:
    root = tmp_path_factory.mktemp("cells")
    return {
        "train": _samples(root / "train", [_cell(seed) for seed in range(16)]),
        "moved": _samples(root / "moved", [_cell(200 + s, square=(56, 88)) for s in range(3)]),
        "shifted": _samples(root / "shifted", [_cell(seed, shift=8) for seed in range(3)]),
    }


@pytest.mark.slow
def test_factor_zero_is_the_model_of_before(cells: dict[str, list[Sample]]) -> None:
    before, off = _fitted(cells["train"]), _fitted(cells["train"], position_weight=0)
    assert off.model.position is None and off.position_record is None
    assert off.model.state_dict().keys() == before.model.state_dict().keys()
    torch.testing.assert_close(off.model.memory_bank, before.model.memory_bank, rtol=0, atol=0)
    samples = cells["moved"] + cells["shifted"]
    np.testing.assert_array_equal(_scores(off, samples), _scores(before, samples))


@pytest.fixture(scope="module")
def positioned(cells: dict[str, list[Sample]]) -> Any:
    return _fitted(cells["train"], position_weight=8)


@pytest.mark.slow
def test_a_patch_matched_only_far_away_scores_higher(
    cells: dict[str, list[Sample]], positioned: Any
) -> None:
    off = _fitted(cells["train"])
    record = positioned.position_record
    assert record.weight == pytest.approx(8 * record.median_distance, rel=1e-3)
    assert positioned.model.memory_bank.shape[1] == off.model.memory_bank.shape[1] + 2
    # the dark square in the middle: its only near matches are the training cells' corners
    moved_on, moved_off = _scores(positioned, cells["moved"]), _scores(off, cells["moved"])
    assert (moved_on > 1.4 * moved_off).all(), (moved_on, moved_off)
    # a training cell one patch to the right: its own rows, 1/16 of the grid away, still near
    shifted_on, shifted_off = _scores(positioned, cells["shifted"]), _scores(off, cells["shifted"])
    assert (shifted_on < 1.15 * shifted_off).all(), (shifted_on, shifted_off)
    assert shifted_on.max() < moved_on.min() / 2


def test_the_weight_rule_measures_other_images_only() -> None:
    """Each image's rows are a copy of one set of far-apart rows, shifted by a per-image offset
    along one axis: the nearest row of another image is the own row's copy one step away, never
    the row itself (at 0); the position columns (large here) are not measured."""
    base = 100 * torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    step = torch.zeros(8)
    step[0] = 3.0
    grid = 1000 * torch.rand(50, 2, generator=torch.Generator().manual_seed(1))
    rows = {f"{i}": torch.cat([base, grid], 1) + i * step for i in range(4)}
    assert nearest_other_median(rows) == pytest.approx(3.0, rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 training images"):
        nearest_other_median({"0": rows["0"]})


@pytest.mark.slow
def test_checkpoint_and_exported_graph_score_as_the_trained_model(
    cells: dict[str, list[Sample]], positioned: Any
) -> None:
    from inspection.training.convert import SCORE_OUTPUT, convert_torch_model
    from tests.ov_precision import compile_at

    config = _config(position_weight=8)
    reloaded = build(config, resolve_weights(config.backbone.name, config.backbone.weights, None))
    reloaded.model.load_state_dict(positioned.model.state_dict())  # the grid's buffer resized
    images = model_inputs(positioned, cells["moved"] + cells["shifted"], SIZE)
    with torch.no_grad():
        expected = positioned.model(images).pred_score
        torch.testing.assert_close(reloaded.eval().model(images).pred_score, expected)
    graph = convert_torch_model(copy.deepcopy(reloaded.model).eval(), SIZE)
    out = compile_at(graph, "f32")(images.numpy())[SCORE_OUTPUT]
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-4, atol=1e-4)
    without = copy.deepcopy(reloaded.model).eval()
    without.position.columns.zero_()  # the columns are in the graph: zeroed, the scores move
    moved = compile_at(convert_torch_model(without, SIZE), "f32")(images.numpy())[SCORE_OUTPUT]
    assert not np.allclose(moved, out, rtol=1e-2)
