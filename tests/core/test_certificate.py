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
    Certificate,
    CertificationError,
    bundle_certificate,
    certified_choice,
    certify,
    complete_windows,
    line_bounds,
    newly_lacking,
    review_completion,
    select_audited,
)
from inspection.core.operating_point import (
    OperatingPoint,
    conformal_bound,
    conformal_rank,
    pools_out_of_fold,
)
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


def _parts(
    scores,
    bundle: str = BUNDLE,
    *,
    scale: str | None = None,
    labels=None,
    verdicts=None,
    station: str = "s1",
    rate: int = 500,
    start: int = 0,
) -> list[AuditedPart]:
    """Audit parts as ``queries.audit_parts`` returns them, on the bundle's signed scale."""
    scale = scale or _bundle().normalization.fingerprint
    n = len(scores)
    labels = ["good"] * n if labels is None else labels
    verdicts = ["OK"] * n if verdicts is None else verdicts
    return [
        AuditedPart(f"part-{start + i}", bundle, float(s), station, v, label, rate, scale)
        for i, (s, v, label) in enumerate(zip(scores, verdicts, labels, strict=True))
    ]


def test_audited_good_parts_join_the_calibration_set_and_tighten_the_bound() -> None:
    bundle = _bundle()
    before = bundle_certificate(bundle)
    assert before is not None and (before.n_good, before.n_audited) == (N_GOOD, 0)
    audited = np.random.default_rng(1).uniform(0.1, 0.4, 100)
    certified = certify(bundle, _parts(audited), HELD_OUT)
    after = certified.certificate
    n = N_GOOD + 100
    assert (after.n_good, after.n_audited, after.rank) == (n, 100, conformal_rank(n, BUDGET))
    assert after.false_reject_bound == pytest.approx(conformal_bound(n, after.rank), abs=1e-6)
    assert after.false_reject_bound <= BUDGET and certified.gate.passed
    assert "(100 audited)" in after.describe()
    assert after.certified_for_line and "certified for the line" in after.describe()


def test_parts_another_bundle_or_scale_scored_are_left_out_and_named() -> None:
    """A re-calibrated station re-fits the bundle's normalisation in place and keeps its id:
    only the fingerprint of what scaled a score tells its parts apart."""
    good = np.linspace(0.1, 0.4, 100)
    parts = [*_parts(good), *_parts([0.25], "v0002-int8", start=100)]
    parts += _parts([0.05] * 50, scale="0123456789abcdef", station="s9", start=200)
    certified = certify(_bundle(), parts, HELD_OUT)
    assert certified.certificate.n_audited == 100
    text = certified.selection.describe()
    assert "1 left out: scored by another bundle" in text
    assert "50 left out: scored at station s9 under a re-calibrated normalisation" in text
    legacy = select_audited(
        _parts(good, scale="x")[:0] + [dataclasses.replace(p, scale=None) for p in _parts(good)],
        BUNDLE,
        _bundle().normalization.fingerprint,
    )
    assert legacy.good == () and legacy.left_out == {
        "stored before score scales were recorded": 100
    }


def test_a_window_certifies_only_when_every_part_is_decided() -> None:
    """Windows of 50, oldest first: an unsure or unreviewed part holds its window open and
    every later one, whatever their scores."""
    scores = np.linspace(0.1, 0.4, 150)
    labels = ["good"] * 150
    labels[60] = "unsure"
    labels[120] = None
    held = select_audited(
        _parts(scores, labels=labels), BUNDLE, _bundle().normalization.fingerprint
    )
    assert (len(held.good), held.held_open) == (50, 100)
    labels[60] = "defect"
    labels[120] = "false_alarm"
    whole = select_audited(
        _parts(scores, labels=labels), BUNDLE, _bundle().normalization.fingerprint
    )
    assert (len(whole.good), whole.held_open) == (149, 0)  # the defect is not a good part
    newest = _parts(scores)[:49]
    assert complete_windows(newest) == (newest, 0)  # the newest window, shorter, is whole


def test_certification_refuses_when_ng_audit_parts_are_reviewed_less_than_ok_ones() -> None:
    scores = np.r_[np.linspace(0.1, 0.4, 96), [0.6, 0.7, 0.8, 0.9]]
    verdicts = ["OK"] * 96 + ["NG"] * 4
    labels = ["good"] * 96 + [None] * 4
    parts = _parts(scores, labels=labels, verdicts=verdicts)
    completion = review_completion(parts)
    assert completion.by_verdict == {"NG": (0, 4), "OK": (96, 96)} and completion.differs
    with pytest.raises(CertificationError, match=r"reviewed by verdict: NG 0/4 \(0%\), OK 96/96"):
        certify(_bundle(), parts, HELD_OUT)
    labels[-4:] = ["false_alarm"] * 4
    assert not review_completion(_parts(scores, labels=labels, verdicts=verdicts)).differs
    # NG parts reviewed ahead (the NG queue labels them too): harmless, windows count whole
    ahead = ["good"] * 10 + [None] * 86 + ["false_alarm"] * 4
    assert not review_completion(_parts(scores, labels=ahead, verdicts=verdicts)).differs


def _choice(own, sources, audited=()):
    point = OperatingPoint(budget=0.01)
    return certified_choice(np.asarray(own), np.ones(len(own)), sources, list(audited), point, "b")


def test_out_of_fold_scores_set_the_threshold_only_below_n_needed() -> None:
    rng = np.random.default_rng(3)
    oof, never = rng.uniform(0, 0.5, 240), rng.uniform(0, 1, 99)
    sources = ["out_of_fold_train"] * 240 + ["calibration"] * 99
    _, alone = _choice(np.r_[oof, never], sources)
    assert alone.sources == {"calibration": 99} and alone.certified
    assert pools_out_of_fold(0.01, 98) and not pools_out_of_fold(0.01, 99)
    _, pooled = _choice(np.r_[oof, never[:60]], sources[:300])
    assert pooled.sources == {"out_of_fold_train": 240, "calibration": 60}
    assert not pooled.certified and "which do not certify new parts" in pooled.describe()
    # audited parts count as never-trained: 60 + 39 audited drop the out-of-fold scores
    _, later = _choice(np.r_[oof, never[:60]], sources[:300], _parts(never[60:], "b"))
    assert later.sources == {"calibration": 60, "audited_good": 39}


def test_certified_for_the_line_needs_the_audited_parts_own_bound_within_the_budget() -> None:
    """100 light bundle scores and 200 audited heavier ones: the pooled bound keeps 1 %, the
    audited parts alone do not, and the text says what it is certified for."""
    rng = np.random.default_rng(4)
    own = rng.uniform(0, 0.5, 100)
    audited = _parts(rng.uniform(0, 1, 200), "b")
    choice, cert = _choice(own, ["calibration"] * 100, audited)
    above = sum(p.score >= choice.threshold for p in audited)
    assert cert.line_bound == pytest.approx((above + 1) / 201, abs=1e-6)
    assert cert.certified and cert.line_bound > 0.01 and not cert.certified_for_line
    assert "NOT for the line" in cert.describe()


def test_audit_parts_weigh_by_their_inclusion_probability_station_by_station() -> None:
    """Station a audits 1 in 2000, b 1 in 200: weighted split-conformal p-values."""
    parts = _parts([0.1, 0.2, 0.9], "b", station="a", rate=2000)
    parts += _parts([0.1, 0.95, 0.97, 0.2], "b", station="b", rate=200, start=3)
    line, stations = line_bounds(parts, 0.8)
    assert line == pytest.approx((2000 + 400 + 2000) / (3 * 2000 + 4 * 200 + 2000))
    assert stations == pytest.approx({"a": 2 / 4, "b": 3 / 5})


def test_the_certificate_says_its_bound_is_marginal_with_the_95_quantile() -> None:
    from scipy.stats import beta

    _, cert = _choice(np.linspace(0, 1, 200), ["calibration"] * 200)
    quantile = beta.ppf(0.95, 200 + 1 - cert.rank, cert.rank)
    assert cert.realised_quantile() == pytest.approx(quantile)
    assert (
        f"bound {cert.false_reject_bound:.2%} on average over calibration sets, below "
        f"{quantile:.2%} with 95% probability" in cert.describe()
    )
    assert f"{quantile:.2%}" == "2.35%"  # docs/statistics.md's n = 200 figure


def test_certificates_signed_before_the_new_fields_keep_their_signed_rows() -> None:
    from inspection.core.decisions import ThresholdVersion

    old = Certificate("b", 0.01, 200, 0, 199, 0.00995, None)
    row = ThresholdVersion("p", 1, 0.5, "a", "r", "t", certificate=old).row()
    assert set(row["certificate"]) == {
        "bundle_id",
        "budget",
        "n_good",
        "n_audited",
        "rank",
        "false_reject_bound",
        "n_needed",
    }


def test_a_threshold_that_would_miss_beyond_the_gate_tolerance_is_refused() -> None:
    """Audited good parts scoring high raise the threshold above held-out defects: the miss
    rate rises beyond the export gate's tolerance (5 %), and the update is refused."""
    high = np.linspace(0.7, 0.9, 100)
    with pytest.raises(CertificationError, match=r"miss_rate .* > tolerance 0.05.*unchanged"):
        certify(_bundle(), _parts(high), HELD_OUT)


def test_a_threshold_letting_one_kind_through_is_refused_naming_it() -> None:
    """Pooled, 7 more misses of 72 are within +0.05 only of many kinds; of one kind they are
    not: the gate refuses naming it."""
    good = tuple(np.linspace(0.05, 0.40, 200))
    stain = tuple(np.r_[np.linspace(0.52, 0.58, 12), np.linspace(0.7, 0.95, 24)])
    crack = tuple(np.linspace(0.7, 0.95, 200))
    held = ValidationScores(
        scores=good + stain + crack, labels=(0,) * 200 + (1,) * 236, split="test",
        defect_types=("good",) * 200 + ("stain",) * 36 + ("crack",) * 200,
    )  # fmt: skip
    newly = newly_lacking(held, 0.6, 0.10)
    assert len(newly) == 1 and newly[0].startswith("stain newly lacking: misses 12/36")
    assert newly_lacking(held, 0.5, 0.10) == ()


def test_a_bundle_without_its_calibration_scores_is_refused() -> None:
    bundle = _bundle()
    own = dataclasses.replace(bundle.output_calibration, good_scores=(), good_weights=())
    older = dataclasses.replace(bundle, output_calibration=own)
    with pytest.raises(CertificationError, match="records no good calibration scores"):
        certify(older, _parts([0.2]), HELD_OUT)


def test_each_calibration_score_records_its_source() -> None:
    """Written by ``calibrate``; read from its order for bundles exported before."""
    rng = np.random.default_rng(5)
    scores = np.r_[rng.normal(1.0, 0.1, 20), rng.normal(2.0, 0.1, 5)]
    labels = np.r_[np.zeros(20), np.ones(5)].astype(int)
    maps = rng.random((25, 4, 4)).astype(np.float32)
    masks = np.zeros((25, 4, 4), bool)
    masks[20:, 1:3, 1:3] = True
    extra = np.r_[rng.normal(0.9, 0.1, 30), rng.normal(1.0, 0.1, 10)]
    calibration = calibrate(
        scores, maps, labels, masks, ["good"] * 20 + ["crack"] * 5,
        extra_good_scores=extra, good_sources={"out_of_fold_train": 30, "calibration": 10},
    )  # fmt: skip
    expected = ("out_of_fold_train",) * 30 + ("calibration",) * 10 + ("validation",) * 20
    assert calibration.good_score_sources == expected
    legacy = dataclasses.replace(calibration, good_score_sources=())
    assert legacy.score_sources()[:30] == expected[:30]
    assert "out_of_fold_train" not in legacy.score_sources()[30:]
