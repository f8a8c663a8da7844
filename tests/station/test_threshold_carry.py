"""A quality engineer's threshold across a station's golden re-calibration: a registry version
set at a false-reject budget on the bundle's validation scores (the dashboard's Thresholds
page) is re-derived at that budget on the station's re-calibrated outputs; one that cannot be
carried is not applied and is named, as is what became of every later version."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from inspection.core.images import read_image
from inspection.core.operating_point import OperatingPoint, choose_threshold
from inspection.core.registry import Registry
from inspection.core.threshold import is_ng
from inspection.dashboard import thresholds
from inspection.dashboard.models import golden_outcome_frame
from inspection.refine.config import RefineConfig
from inspection.runtime.recalibration import golden_outcome_path, validation_samples
from inspection.station.live import LiveModel, LiveModels, station_loader
from tests.golden_helpers import drifting_bundle, station_folder

pytestmark = pytest.mark.slow

PRODUCT, LIVE = "brick", "v0001-fp32"


@pytest.fixture
def site(tmp_path: Path, fp32_bundle: Path, tiny_product: Path) -> tuple[Registry, LiveModels]:
    """A registry whose live bundle drifts on this CPU, and a station holding 30 good (and the
    defective) validation images of the product, so it re-calibrates the bundle at load."""
    registry = Registry(tmp_path / "registry")
    registry.bundles.add_bundle(PRODUCT, drifting_bundle(fp32_bundle, tmp_path), LIVE)
    registry.journal.promote(PRODUCT, LIVE, actor="tests", reason="drifts on this CPU")
    folder = station_folder(tiny_product, tmp_path)
    loader = station_loader(RefineConfig(method="none"), {PRODUCT: folder})
    return registry, LiveModels(registry, (PRODUCT,), loader=loader)


def _validation(registry: Registry) -> thresholds.LabelledScores:
    data = thresholds.read_validation_scores(registry.bundles.bundle_dir(PRODUCT, LIVE))
    assert data is not None and data.n_good == 4
    return data


def _set_at_budget(registry: Registry, budget: float) -> float:
    """A version saved at the budget's split-conformal rank among the bundle's good scores
    (export calibration's rule; the Thresholds page now suggests at 95 % confidence, which
    on 4 good parts lies above all of them), without recording the budget."""
    data = _validation(registry)
    good = data.scores[data.labels == 0]
    choice = choose_threshold(good, OperatingPoint(budget=budget))
    value = thresholds.applied_value(data, choice.threshold)
    saved = thresholds.save_threshold(
        registry, PRODUCT, value, actor="qe", reason=f"{budget:.0%} budget"
    )
    return saved.value


def _station_good_scores(model: LiveModel) -> np.ndarray:
    """The served (re-calibrated, normalised) scores of the station's 30 good images."""
    folder = Path(model.inspector.recalibration.folder)  # type: ignore[attr-defined]
    goods = [s.path for s in validation_samples(folder) if s.label == 0]
    return np.sort([model.inspect(read_image(path)).score for path in goods])


def test_a_threshold_set_at_a_budget_is_re_derived_at_it_on_the_stations_outputs(
    site: tuple[Registry, LiveModels],
) -> None:
    registry, models = site
    value = _set_at_budget(registry, 0.40)  # k = ceil(5 * 0.6) = 3: rejects 1 of 4 good
    good_before = _validation(registry)
    assert int(is_ng(good_before.scores[good_before.labels == 0], value).sum()) == 1
    models.refresh()
    model = models.get(PRODUCT)
    golden = models.status()[PRODUCT]["golden"]
    assert golden["outcome"] == "recalibrated"
    # 1 of 4 rejected guarantees P(reject) <= 2/5; on 30 good images that budget puts the
    # threshold above the ceil(31 * 3/5) = 19th: 11 of the station's 30 are rejected.
    good = _station_good_scores(model)
    assert good[18] < model.threshold < good[19]
    assert int(is_ng(good, model.threshold).sum()) == 11
    assert model.threshold != pytest.approx(value) and model.threshold_number == 1
    carried = golden["threshold_carried"]
    assert carried == {
        "version": 1, "from": value, "to": model.threshold,
        "how": carried["how"],
    }  # fmt: skip
    assert "held, 40.00% (1 of the bundle's 4 good" in carried["how"]
    assert "threshold_not_applied" not in golden
    frame = golden_outcome_frame(registry, PRODUCT)
    assert frame["registry_threshold"].iloc[0] == (
        f"v1 {value:.4f} → {model.threshold:.4f} (carried)"
    )
    assert "re-derived at the false-reject budget" in frame["note"].iloc[0]


@pytest.mark.parametrize(("budget", "rank"), [(0.10, 30), (0.20, 28)])
def test_a_threshold_saved_at_a_budget_above_every_good_part_is_carried_at_it(
    site: tuple[Registry, LiveModels], budget: float, rank: int
) -> None:
    """The common case: the bundle's 4 good validation parts are too few for the budget, so
    the value the dashboard saves lies above all of them and its rank says nothing; the
    version records its budget and is re-derived at it on the station's 30 good images, kept
    with the page's 95 % confidence (on average, 20 % would reject 5 of them, not 2)."""
    registry, models = site
    data = dataclasses.replace(_validation(registry), held_out=False)  # as an audit sample
    suggestion, choice = thresholds.suggest_for_budget(data, budget)
    assert not choice.sufficient
    version = thresholds.save_threshold(
        registry, PRODUCT, suggestion.threshold, actor="qe", reason=f"{budget:.0%} budget",
        picked=thresholds.BudgetPick.of(suggestion, choice),
    )  # fmt: skip
    assert version.budget == budget
    assert not is_ng(data.scores[data.labels == 0], version.value).any()
    models.refresh()
    model = models.get(PRODUCT)
    golden = models.status()[PRODUCT]["golden"]
    carried = golden["threshold_carried"]
    assert (carried["from"], carried["to"]) == (version.value, model.threshold)
    assert carried["how"] == (
        f"re-derived at the false-reject budget it was set at, {budget:.2%}, on this station's "
        f"30 re-calibrated good images (above the {rank}-th)"
    )
    assert "threshold_not_applied" not in golden
    good = _station_good_scores(model)  # the most rejects whose 95 % upper bound <= budget
    assert int(is_ng(good, model.threshold).sum()) == 30 - rank
    assert golden_outcome_frame(registry, PRODUCT)["registry_threshold"].iloc[0] == (
        f"v1 {version.value:.4f} → {model.threshold:.4f} (carried)"
    )


def test_a_threshold_that_cannot_be_carried_is_not_applied_before_or_after_the_load(
    site: tuple[Registry, LiveModels],
) -> None:
    registry, models = site
    data = _validation(registry)
    assert data.scores[data.labels == 0].max() < 0.8  # above every good part: no budget
    registry.journal.set_threshold(PRODUCT, 0.8, actor="qe", reason="looser")
    models.refresh()
    model = models.get(PRODUCT)
    golden = models.status()[PRODUCT]["golden"]
    assert model.threshold == model.inspector.threshold == 0.5  # the re-calibrated point
    shown, note = golden, golden["threshold_not_applied"]
    assert note.startswith("threshold v1 (0.8000) was set for the bundle's export calibration")
    assert "above all 4 good validation scores" in note
    assert "threshold_carried" not in golden
    assert golden_outcome_frame(registry, PRODUCT)["registry_threshold"].iloc[0] == "not applied"

    value = _set_at_budget(registry, 0.40)  # a later version: carried across
    models.refresh()
    golden = models.status()[PRODUCT]["golden"]
    assert golden["threshold_carried"]["from"] == value
    assert models.get(PRODUCT).threshold == golden["threshold_carried"]["to"] != value
    assert "threshold_not_applied" not in golden
    # A status already handed to a /healthz request is replaced, never changed under it.
    assert shown["threshold_not_applied"] == note and "threshold_carried" not in shown

    registry.journal.set_threshold(PRODUCT, 0.9, actor="qe", reason="set for the re-calibration")
    models.refresh()  # later and not carriable: not applied, as at load (so after a restart)
    golden = models.status()[PRODUCT]["golden"]
    assert models.get(PRODUCT).threshold == model.inspector.threshold == 0.5
    assert golden["threshold_not_applied"].startswith("threshold v3 (0.9000) was set for")
    assert "Save the threshold at a false-reject budget" in golden["threshold_not_applied"]
    assert "threshold_carried" not in golden
    frame = golden_outcome_frame(registry, PRODUCT)
    assert frame["registry_threshold"].iloc[0] == "not applied"


def test_a_threshold_change_on_a_bundle_that_passed_its_golden_check_records_no_check(
    tmp_path: Path, fp32_bundle: Path
) -> None:
    """The registry's golden outcome of this CPU is the last check at load: a new threshold
    version of a bundle that passed (nothing to carry) does not write it again."""
    registry = Registry(tmp_path / "registry")
    registry.bundles.add_bundle(PRODUCT, fp32_bundle, LIVE)
    registry.journal.promote(PRODUCT, LIVE, actor="tests", reason="passes on this CPU")
    models = LiveModels(registry, (PRODUCT,), loader=station_loader(RefineConfig(method="none")))
    models.refresh()
    recorded = golden_outcome_path(registry, PRODUCT)
    assert models.status()[PRODUCT]["golden"]["outcome"] == "passed" and recorded.is_file()
    recorded.unlink()
    registry.journal.set_threshold(PRODUCT, 0.6, actor="qe", reason="tighter")
    models.refresh()
    assert models.get(PRODUCT).threshold == 0.6
    assert not recorded.exists()
