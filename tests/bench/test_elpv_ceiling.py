"""Round 9's probe (bench/elpv_ceiling.py): who teaches, who certifies, who is counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspection.core.operating_point import OperatingPoint, validation_count
from tests.bench import bench_module
from tests.bench.test_real_data import fake_cells


@pytest.fixture(scope="module")
def ceiling():
    return bench_module("elpv_ceiling")


@pytest.fixture
def split(ceiling, tmp_path: Path):
    """A fake mono split's parts with the largest labelled pool and 30 % of each test kind
    taken as validation (as the product takes them)."""
    cells = fake_cells(tmp_path / "elpv")
    parts = ceiling.real_data.split_parts("mono", 0, 100, cells)
    rng = np.random.default_rng(0)
    validation = {
        Path(cell).name
        for part in ("test/good", "test/defective", "test/likely")
        for cell in rng.permutation(parts[part])[: validation_count(len(parts[part]))]
    }
    return parts, validation


def test_roles_are_disjoint_and_sized_as_the_design(ceiling, split) -> None:
    parts, validation = split
    cells = ceiling.probe_cells(parts, validation, parts["train/defective"], 30)
    assert len(cells.negatives) == 200 and len(cells.positives) == 30
    assert len(cells.certifying) == 250 + 30  # calibration + validation good
    assert {k: len(v) for k, v in cells.held_out.items()} == {
        "good": 70, "defective": 105, "likely": 39,
    }  # fmt: skip
    assert cells.positives == tuple(Path(c).name for c in parts["train/defective"][:30])
    taught = set(cells.negatives) | set(cells.positives)
    counted = {n for names in cells.held_out.values() for n in names}
    assert not taught & (set(cells.certifying) | counted | validation)
    assert len(cells.set_aside) == 45 + 17  # the validation defects: neither teach nor count


def test_a_calibration_negative_or_a_test_positive_is_refused(ceiling, split) -> None:
    parts, validation = split
    calibration = parts["calibration/good"]
    with pytest.raises(ValueError, match="teaching cells are also certifying"):
        ceiling.probe_cells(
            {**parts, "train/good": [*parts["train/good"], calibration[0]]},
            validation, parts["train/defective"], 10,
        )  # fmt: skip
    held = next(c for c in parts["test/defective"] if Path(c).name not in validation)
    with pytest.raises(ValueError, match="teaching cells are also held-out"):
        ceiling.probe_cells(parts, validation, [held, *parts["train/defective"]], 10)
    aside = next(c for c in parts["test/defective"] if Path(c).name in validation)
    with pytest.raises(ValueError, match="teaching cells are also set aside"):
        ceiling.probe_cells(parts, validation, [aside, *parts["train/defective"]], 10)
    with pytest.raises(ValueError, match="held-out cells also certify"):
        good = next(c for c in parts["test/good"] if Path(c).name not in validation)
        ceiling.probe_cells(
            {**parts, "calibration/good": [*calibration, good]},
            validation, parts["train/defective"], 10,
        )  # fmt: skip


def test_the_threshold_is_certified_on_the_certifying_cells_alone(ceiling) -> None:
    certifying = np.arange(280.0)  # rank 279 of 280 at 1 %: between 278 and 279
    held = {"good": np.full(70, 1000.0), "defective": np.array([278.0, 279.0, 500.0])}
    counts = ceiling.certified_counts(certifying, held, OperatingPoint(budget=0.01))
    assert counts["threshold"] == 278.5 and counts["rank"] == 279
    assert counts["good"]["rejected"] == 70  # the held-out good cells do not move it
    assert counts["defective"]["missed"] == 1
    assert counts["defective"]["oracle_missed"] == 3  # the oracle is the held-out goods' 99th
