"""Warm-on-trigger at the model: a warm run never changes a part's outputs and is skipped
while the cores are still warm."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from inspection.core.images import read_image
from inspection.runtime.inspector import Inspector
from inspection.runtime.preprocess import model_input
from inspection.runtime.warmup import RUN_MS_WEIGHT, WarmStats


def _tensor(inspector: Inspector, tiny_product: Path) -> np.ndarray:
    image = read_image(sorted((tiny_product / "test").rglob("*.png"))[0])
    return model_input(image, inspector.metadata.preprocessing)[None]


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
    assert stats.run_ms is not None and stats.run_ms > 0  # timed, finished or cancelled
    assert inspector.warm_run_ms == stats.run_ms


def test_warm_run_times_are_a_running_mean_and_a_cancelled_one_a_lower_bound() -> None:
    stats = WarmStats()
    stats.time_run(6.0)
    stats.time_run(4.0)
    assert stats.run_ms == 6.0 + RUN_MS_WEIGHT * (4.0 - 6.0)
    stats.time_run(3.0, lower_bound=True)  # cancelled after 3 ms: says nothing new
    assert stats.run_ms == 6.0 + RUN_MS_WEIGHT * (4.0 - 6.0)
    stats.time_run(9.0, lower_bound=True)  # cancelled after 9 ms: the run takes longer
    assert stats.run_ms == 9.0


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
