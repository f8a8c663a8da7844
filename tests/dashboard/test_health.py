"""Model health from measured rates, sessions, and exact threshold suggestions."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from inspection.core.config import SiteConfig
from inspection.core.operating_point import OperatingPoint
from inspection.core.registry import Registry
from inspection.dashboard import health, sessions, thresholds


@pytest.fixture
def live(tmp_path: Path, seed):
    """The seeded site's writer makes real bundles; reuse it for one product 'brick'."""
    site = seed.seed_site(tmp_path / "site", inspections=10, reviews=1, products=("brick",))
    return Registry(tmp_path / "site" / "registry"), site


def test_alarm_comes_from_measured_rates_at_the_live_threshold(live) -> None:
    registry, _ = live
    data = thresholds.validation_scores(registry, "brick", registry.journal.live("brick").bundle_id)
    good = data.scores[data.labels == 0]
    point = OperatingPoint(budget=0.01, miss_bound=0.10)
    strict = float(np.max(good)) + 1e-3  # rejects no good part
    item = health.model_health(registry, "brick", point=point, threshold=strict)
    assert item.rejected_good == 0 and item.n_good == len(good)
    missed = int(np.sum(data.scores[data.labels == 1] < strict))
    assert item.missed == missed and item.n_defective == data.n_defect
    # line-ready only when every kind's exact 95 % miss interval stays within the 10 % bound
    # and the live threshold's certificate shows the budget
    shown = all(binomtest(k.missed, k.n).proportion_ci().high <= 0.10 for k in item.kinds)
    certified = item.certificate is None or item.certificate.certified
    assert item.line_ready == (shown and certified and bool(item.kinds))
    assert shown or any("the bound is 10%" in r or "too few to show" in r for r in item.reasons)
    lax = float(np.min(data.scores)) - 1e-3  # flags everything: every good part rejected
    flagged = health.model_health(registry, "brick", point=point, threshold=lax)
    assert not flagged.line_ready
    rejects = f"rejects {len(good)} of {len(good)} good held-out parts (a 1.0% budget allows "
    assert any(reason.startswith(rejects) for reason in flagged.reasons), flagged.reasons
    table = health.kind_table(flagged)
    assert table.loc[table["kind"] == "good", "NG"].item() == len(good)


def test_no_live_bundle_and_no_scores_are_named(tmp_path: Path) -> None:
    item = health.model_health(Registry(tmp_path / "r"), "nothing")
    assert not item.line_ready and item.reasons == ("no bundle of nothing is live",)


def test_session_tokens_verify_expire_and_refuse_tampering(tmp_path: Path) -> None:
    site = SiteConfig(blob_dir=tmp_path / "var" / "blobs")
    secret = sessions.session_secret(site)
    assert sessions.session_secret(site) == secret  # created once, then read
    assert (sessions.secret_path(site).stat().st_mode & 0o777) == 0o600
    token = sessions.issue_token(secret, "alice")
    assert sessions.verify_token(secret, token, max_age_s=60) == "alice"
    assert sessions.verify_token("another site", token, max_age_s=60) is None
    assert sessions.verify_token(secret, token[:-2] + "xx", max_age_s=60) is None
    assert sessions.verify_token(secret, "", max_age_s=60) is None
    time.sleep(1.1)
    assert sessions.verify_token(secret, token, max_age_s=0.5) is None  # expired


@pytest.mark.parametrize(
    ("threshold", "expected", "alike"),
    [
        (0.12345, 0.1235, True),  # 0.12344 and 0.12336 OK at both
        (0.12337, 0.1234, True),  # rounding up would pass 0.12344 too, but nothing lies between
        (0.5, 0.5, True),
        (0.99995, 0.9999, False),  # kept inside the registry's (0, 1): 0.99991 turns NG
        (0.12341, 0.1234, True),
    ],
)
def test_applied_value_is_saved_as_is_and_judges_like_the_quote(threshold, expected, alike):
    from inspection.core.threshold import is_ng

    scores = np.array([0.12336, 0.12344, 0.5, 0.99991, 0.99996, 0.00002])
    data = thresholds.LabelledScores(scores, np.array([0, 1, 0, 1, 1, 0], np.int8), "t")
    value = thresholds.applied_value(data, threshold)
    assert value == pytest.approx(expected) and value == round(value, thresholds.SAVED_DECIMALS)
    assert np.array_equal(is_ng(scores, value), is_ng(scores, threshold)) == alike
    # and a suggestion quotes its rates at the applied value, never at the raw one
    assert thresholds.tradeoff(data, value).threshold == value


@pytest.mark.parametrize(
    ("drift", "tolerance", "verdict"),
    [(0.004, 0.01, "passed"), (0.0131, 0.01, "REFUSED"), (None, 0.01, "—"), (0.1, None, "—")],
)
def test_golden_verdict_per_station_cpu(drift, tolerance, verdict) -> None:
    from inspection.dashboard.models import golden_verdict

    assert golden_verdict(drift, tolerance) == verdict


def test_held_out_pictures_are_read_at_the_live_bundles_bits(tmp_path: Path) -> None:
    """A 12-bit camera's held-out images (values <= 4095 in 16 bits) showed near black on the
    Defect kinds page: they were read at the default high byte, not at the bundle's bits."""
    from PIL import Image

    from bench._shared import write_mean_bundle
    from inspection.core.validation_scores import ValidationScores, write_validation_scores

    registry = Registry(tmp_path / "registry")
    for bits in (12, 16):
        bundle = tmp_path / f"bundle{bits}"
        bundle.mkdir()
        scores = ValidationScores((0.1, 0.9), (0, 1), "test", ("good", "crack"), ("a.png", "b.png"))
        write_validation_scores(bundle, scores)
        write_mean_bundle(bundle, input_size=(8, 8), product=f"p{bits}", source_bits=bits)
        registry.bundles.add_bundle(f"p{bits}", bundle, "v0001-fp32")
        registry.journal.promote(f"p{bits}", "v0001-fp32", actor="test", reason="test")
        folder = tmp_path / "datasets" / f"p{bits}" / "test" / "good"
        folder.mkdir(parents=True)
        Image.fromarray(np.full((8, 8), 2048, np.uint16)).save(folder / "a.png")

    def shown(product: str) -> tuple[int, int]:
        example = next(
            o for o in health.outcomes(registry, product, tmp_path / "datasets") if o.path
        )
        return example.bits, int(health.picture(example).max())

    assert shown("p12") == (12, 128)  # 2048 >> 4
    assert shown("p16") == (16, 8)  # the high byte, as before
    gone = health.source_reading(registry, "p12", "v0009-fp32")
    assert gone == (16, None)  # a bundle gone: the defaults


def test_a_threshold_set_by_value_is_not_held_out_for_the_split_that_judges_it(live) -> None:
    registry, _ = live
    version = registry.journal.set_threshold("brick", 0.62, actor="qa", reason="by hand")
    by_hand = health.model_health(registry, "brick")
    assert f"not held-out: threshold v{version.number} was set by value" in by_hand.summary()
    registry.journal.set_threshold("brick", 0.62, actor="qa", reason="1 %", budget=0.01)
    assert "not held-out" not in health.model_health(registry, "brick").summary()


@pytest.mark.parametrize(("missed", "needed"), [(0, 36), (1, 54), (2, 70)])
def test_images_needed_are_counted_from_the_kinds_own_misses(missed: int, needed: int) -> None:
    """scratch 1/36 is not shown within 10 %: with no further miss, 54 images would show it."""
    from inspection.core.bootstrap import count_interval
    from inspection.core.operating_point import KindMiss

    kind = KindMiss("scratch", 30, missed, count_interval(missed, 30))
    item = health.ModelHealth(
        "p", "b", 0.5, OperatingPoint(budget=0.01, miss_bound=0.10), split="test",
        n_good=100, kinds=(kind,),
    )  # fmt: skip
    assert item.reasons[-1].endswith(
        f"that takes at least {needed} scratch images with "
        + ("no miss" if not missed else f"no miss beyond the {missed} already missed")
    )


def test_a_line_ready_summary_names_where_its_bound_and_its_counts_come_from() -> None:
    """The bound comes from the calibration images, the rejects from the held-out split: the
    summary once ended '(test split)' after the bound, and the caveat on 42 held-out good parts
    ('treat the reject rate as rough') read as doubting the verdict it sat under."""
    from inspection.core.bootstrap import count_interval
    from inspection.core.certificate import certified_choice
    from inspection.core.operating_point import KindMiss
    from inspection.dashboard.panels import caveats

    point = OperatingPoint(budget=0.01, miss_bound=0.10)
    _, cert = certified_choice(
        np.linspace(0, 1, 138), np.ones(138), ["calibration"] * 138, [], point, "b"
    )
    item = health.ModelHealth(
        "p", "b", 0.5, point, split="test", n_good=42,
        kinds=(KindMiss("crack", 36, 0, count_interval(0, 36)),), certificate=cert,
    )  # fmt: skip
    assert item.line_ready
    summary = item.summary()
    assert summary.endswith("(138 never-trained good images); held-out parts: the test split")
    assert "(test split)" not in summary
    [note] = caveats(item)
    assert note.startswith("The false-alarm bound comes from 138 never-trained good images; ")
    assert "0 of 42 held-out good parts rejected only check it" in note
    assert "rough" not in note
    uncertified = replace(item, certificate=None)
    assert "treat their reject rate as rough" in caveats(uncertified)[0]
