"""Helpers the tests and the benches share; tests import them (``bench._shared``), benches too
(``_shared``), and nothing here imports ``tests``.

A tiny hand-built OpenVINO bundle for fast runtime tests (torch-free): its anomaly map is the mean of the input channels and its score the map's maximum, with an
identity normalisation on [0, 1]: a bright spot in an image is a known defect, and a brighter
image a higher score.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from inspection.core.bundle import (
    BUNDLE_SCHEMA_VERSION,
    SIGNATURE_FILE,
    BundleMetadata,
    Preprocessing,
    read_bundle_metadata,
    write_bundle_metadata,
)
from inspection.core.calibration import Normalization


def mean_channel_model(input_size: tuple[int, int]) -> ov.Model:
    """(N, 3, h, w) -> score (N,) = max of the map, map (N, 1, h, w) = mean over channels."""
    image = ops.parameter([-1, 3, *input_size], np.float32, name="image")
    amap = ops.reduce_mean(image, np.array([1]), keep_dims=True)
    score = ops.reduce_max(amap, np.array([1, 2, 3]), keep_dims=False)
    model = ov.Model([score, amap], [image], "mean_channels")
    model.outputs[0].get_tensor().set_names({"pred_score"})
    model.outputs[1].get_tensor().set_names({"anomaly_map"})
    return model


def write_mean_bundle(
    target: Path,
    *,
    input_size: tuple[int, int],
    product: str,
    source_bits: int = 16,
    **fields: Any,
) -> Path:
    """Write the mean-channel bundle to ``target``; ``fields`` are further ``BundleMetadata``
    fields (tiling, ROI, alignment, input domain, …)."""
    target.mkdir(parents=True, exist_ok=True)
    ov.save_model(mean_channel_model(input_size), target / "model.xml")
    metadata = BundleMetadata(
        schema_version=BUNDLE_SCHEMA_VERSION,
        bundle_id="v0001-fp32",
        product=product,
        model_kind="patchcore",
        model_version=f"{product}/v0001",
        precision="fp32",
        preprocessing=Preprocessing(
            input_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), source_bits=source_bits
        ),
        normalization=Normalization(0.5, 0.5, 0.0, 1.0, 0.0, 1.0),  # identity on [0, 1]
        **fields,
    )
    write_bundle_metadata(target, metadata)
    return target


def copy_bundle(source: str | Path, target: str | Path, bundle_id: str) -> Path:
    """A copy of the bundle at ``source`` in ``target`` under a new ``bundle_id`` (and model
    version): the same weights standing in for a retrained challenger. The copy is unsigned
    (the source's signature no longer matches); sign it again."""
    target = Path(target)
    shutil.copytree(source, target)
    (target / SIGNATURE_FILE).unlink(missing_ok=True)
    metadata = read_bundle_metadata(target)
    model_version = f"{metadata.product}/{bundle_id.split('-', 1)[0]}"
    write_bundle_metadata(
        target, dataclasses.replace(metadata, bundle_id=bundle_id, model_version=model_version)
    )
    return target
