"""The exported bundles agree with anomalib's torch model on the same images."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.core.images import read_image
from inspection.runtime.inspector import Inspector
from inspection.runtime.preprocess import model_batch, preprocess

pytestmark = pytest.mark.slow

# (score tolerance relative to the raw score range, map tolerance relative to the map range)
TOLERANCE = {"fp32": (1e-4, 1e-3), "fp16": (2e-2, 2e-2)}


@pytest.fixture(scope="module")
def torch_model(trained_patchcore):
    from inspection.training.train import load_trained_model

    return load_trained_model(trained_patchcore.record)


@pytest.fixture(scope="module")
def images(tiny_product: Path) -> list[np.ndarray]:
    """Test images resized to the model input (64 px) the way training does (bilinear)."""
    paths = sorted((tiny_product / "test").rglob("*.png"))[::3][:6]
    return [cv2.resize(read_image(p), (64, 64), interpolation=cv2.INTER_LINEAR) for p in paths]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_raw_outputs_match_torch(request, precision, torch_model, images) -> None:
    import torch

    bundle = request.getfixturevalue(f"{precision}_bundle")
    inspector = Inspector.from_bundle(bundle)
    prep = inspector.metadata.preprocessing  # in the graph: torch takes Python's tensors
    batch = np.stack(
        [preprocess(image, dataclasses.replace(prep, in_graph=False)) for image in images]
    )
    with torch.no_grad():
        expected = torch_model.model(torch.from_numpy(batch))
    ref_scores = expected.pred_score.reshape(-1).numpy()
    ref_maps = expected.anomaly_map[:, 0].numpy()
    raw = inspector.model.infer(model_batch(images, prep))
    scores, maps = raw.scores, raw.maps
    score_tol, map_tol = TOLERANCE[precision]
    norm = inspector.metadata.normalization
    score_range = norm.image_max - norm.image_min
    map_range = norm.pixel_max - norm.pixel_min
    np.testing.assert_allclose(scores, ref_scores, atol=score_tol * score_range)
    np.testing.assert_allclose(maps, ref_maps, atol=map_tol * map_range)


def test_normalised_results_match_anomalib_end_to_end(fp32_bundle, torch_model, images) -> None:
    """anomalib's module (its pre-processor, model and post-processor) vs ``Inspector.inspect``.

    The bundle's image threshold is its operating point's (``core.operating_point``), not
    anomalib's F1 one, so anomalib's post-processor is given the bundle's statistics first."""
    import torch

    inspector = Inspector.from_bundle(fp32_bundle)
    norm = inspector.metadata.normalization
    post = torch_model.post_processor
    for buffer, value in [
        (post._image_threshold, norm.image_threshold_raw),
        (post._pixel_threshold, norm.pixel_threshold_raw),
        (post.image_min, norm.image_min),
        (post.image_max, norm.image_max),
        (post.pixel_min, norm.pixel_min),
        (post.pixel_max, norm.pixel_max),
    ]:
        buffer.fill_(value)
    tensor = torch.stack([torch.from_numpy(i).permute(2, 0, 1).float() / 255.0 for i in images])
    with torch.no_grad():
        expected = torch_model(tensor)
    for k, image in enumerate(images):
        result = inspector.inspect(image)
        assert result.score == pytest.approx(float(expected.pred_score[k]), abs=1e-3)
        np.testing.assert_allclose(
            result.anomaly_map, expected.anomaly_map[k].reshape(64, 64).numpy(), atol=2e-3
        )


def test_batch_n_equals_batch_1_in_the_ir(fp32_bundle, images) -> None:
    inspector = Inspector.from_bundle(fp32_bundle)
    batch = model_batch(images, inspector.metadata.preprocessing)
    raw = inspector.model.infer(batch)
    scores, maps = raw.scores, raw.maps
    for k in range(len(images)):
        one = inspector.model.infer(batch[k : k + 1])
        one_score, one_map = one.scores, one.maps
        assert one_score[0] == pytest.approx(scores[k], rel=1e-5)
        np.testing.assert_allclose(one_map[0], maps[k], rtol=1e-5, atol=1e-6)
