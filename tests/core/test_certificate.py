"""A bundle's threshold derived again from its calibration scores and audited good parts: the
bound grows with them, and bad input is refused with the reason (``core.certificate``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from inspection.core.bundle import BUNDLE_SCHEMA_VERSION, BundleMetadata, Preprocessing
from inspection.core.calibration import calibrate
from inspection.core.certificate import (
    AuditedPart,
    CertificationError,
    bundle_certificate,
    certify,
)
from inspection.core.operating_point import OperatingPoint, conformal_bound, conformal_rank
from inspection.core.validation_scores import ValidationScores

BUNDLE, BUDGET, N_GOOD = "v0001-fp32", 0.05, 40


def _bundle() -> BundleMetadata:
    """A bundle calibrated at a 5 % budget on 40 good and 10 defective raw scores."""
    rng = np.random.default_rng(0)
    scores = np.r_[rng.normal(1.0, 0.1, N_GOOD), rng.normal(2.0, 0.1, 10)]
    labels = np.r_[np.zeros(N_GOOD), np.ones(10)].astype(int)
    maps = rng.random((50, 4, 4)).astype(np.float32)
    masks = np.zeros((50, 4, 4), bool)
    masks[N_GOOD:, 1:3, 1:3] = True
    kinds = ["good"] * N_GOOD + ["crack"] * 10
    calibration = calibrate(scores, maps, labels, masks, kinds, point=OperatingPoint(budget=BUDGET))
    return BundleMetadata(
        schema_version=BUNDLE_SCHEMA_VERSION, bundle_id=BUNDLE, product="widget",
        model_kind="patchcore", model_version="widget/v0001", precision="fp32",
        preprocessing=Preprocessing((8, 8), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
        normalization=calibration.normalization,
    ).calibrated(calibration)  # fmt: skip


HELD_OUT = ValidationScores(
    scores=(*np.linspace(0.05, 0.45, 20), *np.linspace(0.55, 0.95, 20)),
    labels=(0,) * 20 + (1,) * 20,
    split="test",
)
"""Normalised held-out scores: every good part below the bundle's 0.5, every defect above."""


def _parts(scores: np.ndarray, bundle: str = BUNDLE) -> list[AuditedPart]:
    return [AuditedPart(f"part-{i}", bundle, float(s)) for i, s in enumerate(scores)]


def test_audited_good_parts_join_the_calibration_set_and_tighten_the_bound() -> None:
    bundle = _bundle()
    before = bundle_certificate(bundle)
    assert before is not None and (before.n_good, before.n_audited) == (N_GOOD, 0)
    audited = np.random.default_rng(1).uniform(0.1, 0.4, 60)
    certified = certify(bundle, _parts(audited), HELD_OUT)
    after = certified.certificate
    n = N_GOOD + 60
    assert (after.n_good, after.n_audited, after.rank) == (n, 60, conformal_rank(n, BUDGET))
    assert after.false_reject_bound == pytest.approx(conformal_bound(n, after.rank), abs=1e-6)
    assert after.false_reject_bound <= BUDGET and certified.gate.passed
    assert "(60 audited)" in after.describe()


def test_a_part_another_bundle_scored_is_refused() -> None:
    parts = [*_parts([0.2, 0.3]), AuditedPart("part-x", "v0002-int8", 0.25)]
    with pytest.raises(CertificationError, match="part-x was scored by bundle v0002-int8, not "):
        certify(_bundle(), parts, HELD_OUT)


def test_a_threshold_that_would_miss_beyond_the_gate_tolerance_is_refused() -> None:
    """Audited good parts scoring high raise the threshold above held-out defects: the miss
    rate rises beyond the export gate's tolerance (5 %), and the update is refused."""
    high = np.linspace(0.7, 0.9, 60)
    with pytest.raises(CertificationError, match=r"miss_rate .* > tolerance 0.05.*unchanged"):
        certify(_bundle(), _parts(high), HELD_OUT)


def test_a_bundle_without_its_calibration_scores_is_refused() -> None:
    bundle = _bundle()
    own = dataclasses.replace(bundle.output_calibration, good_scores=(), good_weights=())
    older = dataclasses.replace(bundle, output_calibration=own)
    with pytest.raises(CertificationError, match="records no good calibration scores"):
        certify(older, _parts([0.2]), HELD_OUT)


def test_the_bound_on_the_audited_parts_alone_holds_whatever_the_bundle_scores() -> None:
    """m bundle scores as arbitrary: the k-th of n pooled sits at or above the (k - m)-th of
    the audited ones, so the rate is at most (n + 1 - k) / (n - m + 1)."""
    certified = certify(_bundle(), _parts(np.linspace(0.1, 0.4, 60)), HELD_OUT)
    after = certified.certificate
    expected = (after.n_good + 1 - after.rank) / (60 + 1)
    assert after.line_bound == pytest.approx(expected)
    assert after.false_reject_bound < after.line_bound
    assert f"({after.line_bound:.2%} on the audited parts alone)" in after.describe()
