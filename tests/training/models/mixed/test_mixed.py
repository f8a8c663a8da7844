"""The mixed model: learned from labelled defects, fused in the graph, exported as one bundle."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from inspection.core.errors import DatasetError
from inspection.core.operating_point import OperatingPoint
from inspection.core.product_config import model_config_from_mapping
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.data.demo import write_demo_product
from inspection.training.models.mixed import (
    HEADS_AT_ONCE,
    _Checked,
    _fit_fusion,
    _Judge,
    _SidePeaks,
    _teach,
    _Teaching,
    _without_own_rows,
    keep,
    supervised_config,
)
from inspection.training.models.mixed.head import MixedCore, SupervisedHead, head_network
from inspection.training.models.patchcore.coreset import threads
from inspection.training.train import TrainOutcome, load_trained_model, train_model
from tests.conftest import TINY_PATCHCORE

MIXED = {**TINY_PATCHCORE, "supervised": "auto"}
ALWAYS = {**TINY_PATCHCORE, "supervised": True}  # the head kept whatever validation says


@pytest.fixture(scope="module")
def labelled_product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small grass product with 3 labelled defects per kind (masked), at 128 px."""
    root = tmp_path_factory.mktemp("labelled")
    return write_demo_product(
        root, "grass", seed=7, n_train=24, n_test_good=8, n_test_per_defect=4, size=128,
        n_labelled=3,
    )  # fmt: skip


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return Registry(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="module")
def mixed(labelled_product: Path, registry: Registry) -> TrainOutcome:
    config = model_config_from_mapping(ALWAYS, where="tests ALWAYS")
    dataset = load_dataset(labelled_product)
    return train_model(config, dataset, product="grass", registry=registry, progress=False)


def test_labelled_defects_train_the_mixed_model(mixed: TrainOutcome) -> None:
    record = mixed.record
    assert record.config["supervised"] is True
    choice = record.extra["supervised"]
    assert (
        choice["kept"]
        and choice["reason"] == "supervised: true"
        and choice["labelled"] == {k: 3 for k in ("crack", "hole", "scratch", "stain")}
    )
    assert choice["masked"] == 12 and choice["cells"]["positive"] > 0
    inner = mixed.model.model
    assert isinstance(inner, MixedCore) and inner.supervised.enabled
    # the good validation images fitted the fusion: they set no threshold
    assert record.extra["good_scores"]["validation_calibrates"] is False


def test_an_image_that_taught_is_never_held_out(mixed: TrainOutcome) -> None:
    splits = mixed.record.extra["splits"]
    evaluated = [*splits["validation"], *splits["test"]]
    assert evaluated and all(name.startswith("test/") for name in evaluated)


def test_the_rebuilt_model_scores_as_the_trained_one(mixed: TrainOutcome) -> None:
    rebuilt = load_trained_model(mixed.record)
    assert rebuilt.model.supervised.enabled
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = mixed.model.model(images), rebuilt.model(images)
    torch.testing.assert_close(ours.pred_score, theirs.pred_score, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(ours.anomaly_map, theirs.anomaly_map, rtol=1e-4, atol=1e-3)


def test_the_fusion_never_scores_a_cell_below_its_distance(mixed: TrainOutcome) -> None:
    """An unlabelled kind is still caught by its kNN distance: the head can only add."""
    head: SupervisedHead = mixed.model.model.supervised
    channels = head.shift.shape[1]
    grid, distance = torch.randn(3, channels, 8, 8) * 3, torch.rand(3, 1, 8, 8) * 10
    assert bool((head.fuse(grid, distance) >= distance).all())


def test_a_product_without_labels_trains_plain_patchcore(
    trained_patchcore: object, tiny_product: Path
) -> None:
    config = model_config_from_mapping(MIXED, where="tests MIXED")
    dataset = load_dataset(tiny_product)
    assert supervised_config(config, dataset) is config
    record = trained_patchcore.record  # type: ignore[attr-defined]
    assert "supervised" not in record.extra
    model = load_trained_model(record)
    assert not any("supervised" in name for name in model.state_dict())


def test_supervised_true_without_labels_names_the_folder(tiny_product: Path) -> None:
    config = model_config_from_mapping({**MIXED, "supervised": True}, where="tests")
    with pytest.raises(DatasetError, match=r"no labelled defects \(train/<defect>/"):
        supervised_config(config, load_dataset(tiny_product))


def test_leave_own_out_distances_skip_the_images_own_bank_rows() -> None:
    rows = torch.randn(16, 5)
    other = torch.randn(8, 5) + 10
    bank = torch.cat([rows[:4], other])  # the image gave 4 of the bank's rows
    grid = rows.T.reshape(1, 5, 4, 4)
    distance = _without_own_rows(grid, bank)
    expected = torch.cdist(rows, other).amin(1).reshape(1, 1, 4, 4)
    torch.testing.assert_close(distance, expected.unsqueeze(0)[0])
    assert float(distance.min()) > 0


def test_leave_own_out_finds_own_rows_of_real_feature_norms() -> None:
    """Backbone rows (1,536 non-negative numbers, squared norms ~25,000) given back exactly or
    float16-rounded (a large fit's bank) are the image's own: ``cdist``'s rounding residue of
    the norms hid many of them, so the cells next to them scored ~0 (and which ones varied with
    the thread count)."""
    generator = torch.Generator().manual_seed(0)
    rows = (torch.rand(1024, 1536, generator=generator) * 3).square()
    other = (torch.rand(64, 1536, generator=generator) * 3).square()
    bank = torch.cat([rows[::40], rows[20::40].half().float(), other])
    grid = rows.T.reshape(1, 1536, 32, 32)
    expected = torch.cdist(rows, other).amin(1).reshape(1, 1, 32, 32)
    for count in (1, 2):
        with threads(count):
            torch.testing.assert_close(_without_own_rows(grid, bank), expected)


def test_the_bundle_carries_the_head(
    mixed: TrainOutcome, registry: Registry, labelled_product: Path
) -> None:
    """The FP32 export of the mixed version scores as the torch model (one graph)."""
    from inspection.training.bundle_runs import run_bundle
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle
    from inspection.training.samples import Predictions

    result = export_bundle(
        registry, "grass", ExportOptions(precision="fp32"),
        RegistryExport(version=mixed.record.version),
    )  # fmt: skip
    predictions: Predictions = mixed.predictions
    samples = load_dataset(labelled_product).test_samples
    held = [s for s in samples if str(s.path) in set(map(str, predictions.paths))]
    raw = run_bundle(result.bundle_dir, held)
    order = [list(map(str, predictions.paths)).index(str(s.path)) for s in held]
    np.testing.assert_allclose(raw.scores, predictions.scores[order], rtol=1e-3, atol=1e-3)


GOOD = np.array([1.0, 2.0, 3.0, 4.0])
BUDGET, F1 = OperatingPoint(), OperatingPoint(policy="f1")


@pytest.mark.parametrize(
    ("point", "patchcore", "mixed", "kept"),
    [
        (BUDGET, [2.0, 5.0, 6.0], [5.0, 6.0, 7.0], True),  # 1 -> 0 missed above the largest good
        (BUDGET, [2.0, 5.0, 6.0], [1.5, 6.0, 7.0], False),  # 1 -> 1 on every draw: a tie
        # 1 -> 1 above the largest good, 1 -> 0 only in the 32 % of draws without it: not shown
        (BUDGET, [2.0, 5.0, 6.0], [3.0, 6.0, 7.0], False),
        (BUDGET, [5.0, 6.0, 7.0], [2.0, 6.0, 7.0], False),  # 0 -> 1
        (F1, [1.5, 5.0, 6.0], [5.0, 6.0, 7.0], True),  # a good one rejected (or a miss) -> none
        (F1, [5.0, 6.0, 7.0], [5.0, 6.0, 7.0], False),  # 0 -> 0
    ],
)
def test_the_head_is_kept_only_where_it_errs_less_at_the_operating_point(
    point: OperatingPoint, patchcore: list[float], mixed: list[float], kept: bool
) -> None:
    decided, reason, evidence = keep.decide(
        keep.Peaks(GOOD, np.array(patchcore)), keep.Peaks(GOOD, np.array(mixed)), point, 12
    )
    assert decided is kept
    assert reason.startswith("learned from 12" if kept else "off: learned from 12")
    assert evidence["defects"] == 3 and evidence["good"] == 4


def test_one_good_outlier_does_not_decide_the_head() -> None:
    """PatchCore's one good outlier sets its threshold above most defects, so at the sample's
    operating point the head looks better though it raises 8 good peaks near the defects: over
    draws of the good images (about 37 % leave the outlier out) it is expected to err more."""
    defects = np.linspace(1.5, 12.0, 84)
    patchcore = keep.Peaks(np.r_[np.linspace(0.0, 1.0, 77), 10.0], defects)
    mixed = keep.Peaks(np.r_[np.linspace(0.0, 1.0, 70), np.linspace(8.0, 8.7, 8)], defects)
    assert sum(keep.errors(mixed, BUDGET)) < sum(keep.errors(patchcore, BUDGET))  # 61 < 72
    kept, reason, evidence = keep.decide(patchcore, mixed, BUDGET, 20)
    assert not kept and reason.startswith("off")
    assert evidence["mixed_expected"] > evidence["patchcore_expected"]
    assert evidence["error_change"] == pytest.approx(
        evidence["mixed_expected"] - evidence["patchcore_expected"]
    )
    # the outlier on the head's side: fewer errors expected, but not in 95 % of the draws
    swapped = keep.decide(mixed, patchcore, BUDGET, 20)
    assert swapped[2]["error_change"] == pytest.approx(-evidence["error_change"])
    assert not swapped[0] and swapped[2]["error_change_bound"] > 0


def test_each_distinct_draw_of_the_good_images_is_scored_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Of 1,000 draws of 4 good images only 35 hold different images: each side's threshold is
    set once per distinct draw, and the mean and bound are scipy's over all 1,000 draws."""
    from scipy.stats import bootstrap

    sides = [keep.Peaks(GOOD, np.array([2.0, 5.0, 6.0])), keep.Peaks(GOOD, np.array([3.0, 6.0]))]

    def statistic(rows: np.ndarray) -> np.ndarray:
        counts = [sum(keep.errors(keep.Peaks(s.good[rows], s.defect), F1)) for s in sides]
        return np.array([*counts, counts[1] - counts[0]], float)

    every = bootstrap(
        (np.arange(4),), statistic, vectorized=False, n_resamples=keep.DRAWS,
        method="percentile", alternative="less", rng=0,
    )  # fmt: skip
    calls = []
    errors = keep.errors
    monkeypatch.setattr(keep, "errors", lambda *a: calls.append(a) or errors(*a))
    mean, bound = keep._drawn(sides, F1)
    assert len(calls) <= 2 * 35
    np.testing.assert_array_equal(mean, every.bootstrap_distribution.mean(axis=-1))
    np.testing.assert_array_equal(bound, every.confidence_interval.high)


def test_nothing_to_judge_keeps_the_head() -> None:
    empty = keep.Peaks(GOOD, np.zeros(0))
    decided, reason, _ = keep.decide(empty, empty, BUDGET, 3)
    assert decided and reason == "learned from 3 labelled defects (no defects to judge it on)"


def test_every_fold_holds_each_kind() -> None:
    kinds = ["crack"] * 4 + ["hole"] * 3
    ids = keep.fold_ids(kinds)
    for fold in range(keep.FOLDS):
        assert {k for k, f in zip(kinds, ids, strict=True) if f == fold} == {"crack", "hole"}


def test_a_head_never_judges_the_images_that_taught_it() -> None:
    kinds = ["crack", "hole"] * 4
    judged_good, judged_defect = np.zeros(5), np.zeros(8)

    def teach_and_score(good: np.ndarray, defect: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        judged_good[~good] += 1
        judged_defect[~defect] += 1
        return np.flatnonzero(~good).astype(float), np.flatnonzero(~defect).astype(float)

    good, defect = keep.cross_fitted(teach_and_score, 5, kinds)
    assert (judged_good == 1).all() and (judged_defect == 1).all()  # each left out once
    np.testing.assert_array_equal(good, np.arange(5))  # in order
    np.testing.assert_array_equal(defect, np.arange(8))
    assert keep.cross_fitted(teach_and_score, 5, kinds[:2]) is None  # fewer than FOLDS


def test_auto_judges_on_the_labelled_defects_out_of_fold(
    labelled_product: Path, registry: Registry
) -> None:
    config = model_config_from_mapping(MIXED, where="tests MIXED")
    outcome = train_model(
        config, load_dataset(labelled_product), product="grass-auto", registry=registry,
        progress=False,
    )  # fmt: skip
    choice = outcome.record.extra["supervised"]
    validation = outcome.record.extra["splits"]["validation"]
    defects = sum("/good/" not in path for path in validation)
    evidence = choice["evidence"]
    assert evidence["defects"] == defects + 12  # validation defects and the labelled ones
    train = load_dataset(labelled_product).train_samples  # every good one, out of fold
    assert evidence["good"] == len(validation) - defects + len(train) > choice["good_images"]
    change = evidence["mixed_expected"] - evidence["patchcore_expected"]
    assert evidence["error_change"] == pytest.approx(change)
    assert evidence["error_change_bound"] >= evidence["error_change"]
    kept = evidence["error_change_bound"] < 0
    assert choice["kept"] is kept and outcome.model.model.supervised.enabled is kept


def test_auto_turns_the_head_on_where_labelled_defects_are(labelled_product: Path) -> None:
    config = model_config_from_mapping(MIXED, where="tests MIXED")
    assert supervised_config(config, load_dataset(labelled_product)).supervised is True


def test_fold_heads_side_by_side_score_as_one_after_another(mixed: TrainOutcome) -> None:
    """The keep rule's fold heads, taught side by side on one thread each, give each fold the
    peaks the same heads taught one after another give (same seeded init and batches)."""
    channels = mixed.model.model.supervised.shift.shape[1]
    draw = torch.Generator().manual_seed(0)

    def cells(n: int, shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        grid = torch.randn(n, channels, 8, 8, generator=draw)
        return grid, torch.rand(n, 1, 8, 8, generator=draw) + shift

    targets = (torch.rand(9, 1, 8, 8, generator=draw) > 0.8).float()
    teaching = _Teaching(
        *cells(6),
        *cells(9, 0.5),
        targets,
        torch.ones_like(targets),
        torch.zeros(9, dtype=torch.bool),
    )
    judge = _Judge(mixed.model, teaching, _Checked(*cells(4), np.array([0, 0, 1, 1])), (64, 64), 0)
    kinds = ["crack", "hole", "stain"] * 3
    alone = keep.cross_fitted(judge.fold, 6, kinds)
    with threads(1), ThreadPoolExecutor(HEADS_AT_ONCE) as pool:
        together = keep.cross_fitted(judge.fold, 6, kinds, pool.map)
    assert alone is not None and together is not None
    for one_after_another, side_by_side in zip(alone, together, strict=True):
        np.testing.assert_allclose(side_by_side, one_after_another, rtol=1e-3, atol=1e-4)


def test_the_keep_rule_judges_patchcore_with_its_local_statistics() -> None:
    """Where the product without the head fuses local statistics, the rule's PatchCore side
    is that fused score: a defect the statistics see is caught by PatchCore too."""
    labels = np.array([0, 0, 0, 1])
    checked = _Checked(torch.zeros(4, 1, 1, 1), torch.zeros(4, 1, 1, 1), labels)
    side = _SidePeaks(np.array([1.0, 1.0, 1.0, 5.0]), np.array([1.0, 5.0]), np.array([1.0, 2.0]))
    # validation images first, then the cross-fitted teaching ones
    distance = keep.Peaks(np.array([1.0, 2.0, 3.0, 2.0, 2.0]), np.array([1.5, 1.5, 4.0]))
    judge = _Judge(None, None, checked, (8, 8), 0, side, teaches=np.array([True, True]))
    judged = keep.Peaks(np.array([1.0, 1.0, 1.0, 1.0, 2.0]), np.array([5.0, 1.0, 5.0]))
    patchcore, mixed = judge.as_shipped(distance, distance, judged)
    # each part standardised on good peaks (median 2, scale 1; median 1, scale 1), then max
    np.testing.assert_allclose(patchcore.good, [0.0, 0.0, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(patchcore.defect, [4.0, 0.0, 4.0])
    np.testing.assert_allclose(mixed.defect, patchcore.defect)
    assert keep.errors(patchcore, BUDGET) == (1, 0)  # the distance alone: 2 missed
    assert keep.errors(distance, BUDGET) == (2, 0)
    alone = dataclasses.replace(judge, statistics=None)
    assert alone.as_shipped(distance, distance, judged) == (distance, distance)


def test_auto_judges_against_patchcore_as_shipped_with_local_statistics(
    labelled_product: Path, registry: Registry
) -> None:
    config = model_config_from_mapping(
        {**MIXED, "local_statistics": True}, where="tests MIXED + local statistics"
    )
    outcome = train_model(
        config, load_dataset(labelled_product), product="grass-statistics", registry=registry,
        progress=False,
    )  # fmt: skip
    extra = outcome.record.extra
    assert extra["supervised"]["evidence"]["local_statistics"] == 1.0
    assert extra["local_statistics"]["kept"]  # fitted again, after the head, as before
    assert outcome.model.model.local_stats.enabled


def _channel_zero_head(channels: int) -> SupervisedHead:
    """A head whose fused cell is max(distance, ReLU(the grid's channel 0))."""
    head = SupervisedHead()
    network = head_network(channels)
    with torch.no_grad():
        network[0].weight.zero_()[0, 0] = 1.0
        network[0].bias.zero_()
        network[2].weight.zero_()[0, 0, 1, 1] = 1.0
        network[2].bias.zero_()
    head.set_weights(network)
    head.shift, head.scale = torch.zeros(1, channels, 1, 1), torch.ones(1, channels, 1, 1)
    return head


def test_the_head_is_judged_on_every_good_training_image(mixed: TrainOutcome) -> None:
    """A head that raises false alarms on good training images it did not teach is dropped,
    though the validation images alone (the rule's old good side) would keep it."""

    def cells(distance: float, channel_zero: float, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        grid = torch.zeros(n, 2, 4, 4)
        grid[:, 0] = channel_zero
        return grid, torch.full((n, 1, 4, 4), distance)

    # validation: 3 good, 2 defects the distance misses but the head sees, 1 the distance sees
    good, seen, other = cells(1.0, 0.0, 3), cells(0.9, 2.0, 2), cells(1.2, 0.0, 1)
    checked = _Checked(
        torch.cat([good[0], seen[0], other[0]]),
        torch.cat([good[1], seen[1], other[1]]),
        np.array([0] * 3 + [1] * 3),
    )
    head = _channel_zero_head(2)
    judge = _Judge(mixed.model, None, checked, (32, 32), 0)
    kept, _, evidence = judge.decide(head, ["crack"] * 3, None, BUDGET)
    assert kept and evidence["mixed_missed"] == 0 and evidence["patchcore_missed"] == 2
    # 4 good training images the head did not teach, where it raises false alarms above all 3
    judge = dataclasses.replace(judge, others=cells(1.0, 3.0, 4))
    kept, reason, evidence = judge.decide(head, ["crack"] * 3, None, BUDGET)
    assert not kept and reason.startswith("off")
    assert evidence["good"] == 7 and evidence["mixed_missed"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("point", [BUDGET, F1])
def test_an_unbeatable_patchcore_decides_off_as_the_whole_rule_does(point: OperatingPoint) -> None:
    """Where PatchCore makes no errors, ``unbeatable`` decides off before any head is taught,
    as ``decide`` does for every head; where it errs, it leaves the decision to ``decide``."""
    draw = np.random.default_rng(0)
    perfect = keep.Peaks(GOOD, np.array([5.0, 6.0, 7.0]))
    off = keep.unbeatable(perfect, point, 12)
    assert off is not None and not off[0] and off[1].startswith("off: PatchCore makes no errors")
    assert off[2]["patchcore_missed"] == off[2]["patchcore_rejected"] == 0
    for _ in range(50):
        head = keep.Peaks(draw.uniform(0, 4, 4), draw.uniform(0, 8, 3))
        kept, _, evidence = keep.decide(perfect, head, point, 12)
        assert not kept and {k: evidence[k] for k in off[2]} == off[2]
    missed = keep.Peaks(GOOD, np.array([2.0, 6.0, 7.0]))
    assert keep.unbeatable(missed, point, 12) is None
    assert keep.unbeatable(keep.Peaks(GOOD, np.zeros(0)), point, 12) is None


def test_no_head_is_taught_where_none_could_be_kept(mixed: TrainOutcome) -> None:
    """Where PatchCore makes no errors on what the rule judges, ``_Judge.unbeatable`` decides
    off before teaching, as the whole rule decides after teaching the model's and fold heads;
    where it errs, it leaves the decision to the rule."""
    draw = torch.Generator().manual_seed(1)

    def cells(n: int, distance: float) -> tuple[torch.Tensor, torch.Tensor]:
        grid = torch.randn(n, 2, 4, 4, generator=draw)
        return grid, distance + 0.1 * torch.rand(n, 1, 4, 4, generator=draw)

    kinds = ["crack", "hole", "stain"]
    targets = (torch.rand(3, 1, 4, 4, generator=draw) > 0.5).float()
    teaching = _Teaching(
        *cells(3, 1.0), *cells(3, 3.0), targets, torch.ones_like(targets), torch.zeros(3) > 0
    )
    (good_grid, good_distance), (grid, distance) = cells(3, 1.0), cells(3, 3.0)
    labels = np.array([0, 0, 0, 1, 1, 1])
    checked = _Checked(torch.cat([good_grid, grid]), torch.cat([good_distance, distance]), labels)
    judge = _Judge(mixed.model, teaching, checked, (32, 32), 0)
    off = judge.unbeatable(kinds, BUDGET)
    head = SupervisedHead()
    _teach(head, teaching, 0)
    _fit_fusion(head, checked)
    folds = keep.cross_fitted(judge.fold, 3, kinds)
    kept, _, evidence = judge.decide(head, kinds, folds, BUDGET)
    assert off is not None and off[0] is kept is False
    assert off[2] == {
        k: v for k, v in evidence.items() if not k.startswith(("mixed", "error_change"))
    }
    assert off[2]["good"] == 6 and off[2]["defects"] == 6  # the teaching images judged too
    missed = dataclasses.replace(checked, distance=torch.cat([good_distance, distance - 2.5]))
    assert dataclasses.replace(judge, checked=missed).unbeatable(kinds, BUDGET) is None
