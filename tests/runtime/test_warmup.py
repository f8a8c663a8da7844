"""Warm-on-trigger at the model: a warm run never changes a part's outputs and is skipped
while the cores are still warm."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from inspection.core.images import read_image
from inspection.runtime.inspector import Inspector
from inspection.runtime.preprocess import preprocess


def _tensor(inspector: Inspector, tiny_product: Path) -> np.ndarray:
    image = read_image(sorted((tiny_product / "test").rglob("*.png"))[0])
    return preprocess(image, inspector.metadata.preprocessing)[None]


def test_a_warm_run_leaves_the_parts_outputs_unchanged(
    fp32_bundle: Path, tiny_product: Path
) -> None:
    inspector = Inspector.from_bundle(fp32_bundle, golden=False)
    model = inspector.model
    tensor = _tensor(inspector, tiny_product)
    cold = model.run(tensor)
    time.sleep(0.05)
    assert inspector.warm(idle_ms=10.0) == "started"
    warmed = model.run(tensor)  # right after the trigger: the warm run is cancelled or done
    np.testing.assert_array_equal(warmed.scores, cold.scores)
    np.testing.assert_array_equal(warmed.maps, cold.maps)
    stats = model.warm_stats
    assert stats.started == 1 and stats.finished + stats.cancelled == 1


def test_a_warm_run_is_skipped_while_the_last_inference_is_recent(
    fp32_bundle: Path, tiny_product: Path
) -> None:
    inspector = Inspector.from_bundle(fp32_bundle, golden=False)
    tensor = _tensor(inspector, tiny_product)
    inspector.model.run(tensor)
    assert inspector.warm(idle_ms=60_000.0) == "recent"
    assert inspector.warm(idle_ms=0.0) == "started"
    outcome = inspector.warm(idle_ms=0.0)  # the first may still be running
    assert outcome in ("busy", "started")
    inspector.model.run(tensor)
    stats = inspector.model.warm_stats
    assert stats.started == (2 if outcome == "started" else 1)
    assert stats.finished + stats.cancelled == stats.started
