"""The per-image intensity stretch (``core.intensity``), its config key and its bundle field."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.core.bundle import Preprocessing
from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import ConfigError
from inspection.core.intensity import stretch_intensity
from inspection.core.product_config import load_model_config
from inspection.runtime.preprocess import model_input

RAMP = np.repeat(np.arange(40, 140, dtype=np.uint8)[None, :, None], 3, axis=2)  # (1, 100, 3)


def test_the_percentiles_become_0_and_255_and_the_rest_follows_one_affine() -> None:
    out = stretch_intensity(RAMP, (1, 99))
    low, high = np.percentile(RAMP, (1, 99), method="inverted_cdf")  # 40 and 138
    assert (low, high) == (40, 138)
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 98].tolist() == [255, 255, 255]
    assert out[0, 99, 0] == 255  # above the high percentile: clipped
    expected = np.clip(np.rint((RAMP[0, :, 0] - 40.0) * 255 / 98), 0, 255)
    assert np.array_equal(out[0, :, 0], expected)


def test_a_dimmer_copy_of_a_cell_gives_the_same_input_and_a_flat_image_is_kept() -> None:
    rng = np.random.default_rng(0)
    cell = (rng.integers(30, 120, (32, 32, 1)) * 2).repeat(3, axis=2).astype(np.uint8)
    dim = cell // 2
    assert np.abs(cell.astype(int) - dim).max() > 50
    gap = stretch_intensity(cell, (1, 99)).astype(int) - stretch_intensity(dim, (1, 99))
    assert np.abs(gap).max() <= 1
    flat = np.full((8, 8, 3), 77, np.uint8)
    assert np.array_equal(stretch_intensity(flat, (1, 99)), flat)
    with pytest.raises(ValueError, match="expected a uint8 image, got float32"):
        stretch_intensity(cell.astype(np.float32), (1, 99))


BOUNDS = r"intensity_percentiles: expected \[low, high\] percentiles with 0 <= low < high <= 100"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[99, 1]", BOUNDS),
        ("[-1, 50]", BOUNDS),
        ("[1, 101]", BOUNDS),
        ("[1]", r"intensity_percentiles: expected 2 items, got 1"),
        ("[a, b]", r"intensity_percentiles\[0\]: expected a number, got 'a'"),
    ],
)
def test_the_config_refuses_percentiles_that_are_not_low_high_within_0_100(
    value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_model_config("patchcore", overrides=[f"intensity_percentiles={value}"])


def test_the_station_stretches_what_the_bundle_records_and_nothing_else() -> None:
    stretched = Preprocessing((1, 100), (0.0,) * 3, (1.0,) * 3, intensity_percentiles=(1, 99))
    assert from_mapping(Preprocessing, to_mapping(stretched)) == stretched
    legacy = {"input_size": [1, 100], "mean": [0, 0, 0], "std": [1, 1, 1]}
    plain = from_mapping(Preprocessing, legacy)
    assert plain.intensity_percentiles is None
    assert np.allclose(model_input(RAMP, plain)[0, 0] * 255, RAMP[0, :, 0])
    assert np.allclose(
        model_input(RAMP, stretched)[0, 0] * 255, stretch_intensity(RAMP, (1, 99))[0, :, 0]
    )
    in_graph = Preprocessing(
        (1, 100), (0.0,) * 3, (1.0,) * 3, in_graph=True, intensity_percentiles=(1, 99)
    )
    assert np.array_equal(model_input(RAMP, in_graph), stretch_intensity(RAMP, (1, 99)))
    with pytest.raises(ConfigError, match="intensity_percentiles"):
        from_mapping(
            Preprocessing, {**legacy, "intensity_percentiles": [5, 5]}, where="metadata.json"
        )
