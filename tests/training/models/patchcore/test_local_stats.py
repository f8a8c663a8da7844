"""Local colour statistics fused into PatchCore (``training.models.patchcore.local_stats``): the statistics
against numpy, the fusion against anomalib's own model, fitting and its decision, the checkpoint,
the out-of-fold banks and the exported graph."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from anomalib.models.image.patchcore.torch_model import PatchcoreModel

from inspection.core.model_record import ModelRecord
from inspection.core.product_config import model_config_from_mapping
from inspection.core.registry import Registry
from inspection.data.dataset import Dataset, load_dataset
from inspection.training.backbones import in_process
from inspection.training.models.patchcore.local_stats import (
    MAX_PIXEL_LOSS,
    MIN_GAIN,
    STRIDE,
    WINDOW,
    FusedPatchcoreModel,
    LazyImages,
    LocalStatsHead,
    _decide,
    fit_for_model,
    fit_local_statistics,
    no_room_to_gain,
    side_out_of_fold,
    standardiser_images,
)
from inspection.training.models.patchcore.out_of_fold import (
    fold_of,
    model_inputs,
    out_of_fold_scores,
)
from inspection.training.roi import TrainingRoi
from inspection.training.train import (
    CHECKPOINT_FILE,
    TrainOutcome,
    evaluation_splits,
    load_trained_model,
    train_model,
)
from tests.conftest import TINY_PATCHCORE

SIZE = (64, 64)
slow = pytest.mark.slow


# ------------------------------------------------------------------ the statistics, by hand


def _windowed_mean_std(image: np.ndarray) -> np.ndarray:
    """(6, h, w) float64: per channel mean and population std of each ``WINDOW`` px window at
    stride ``STRIDE``, over the pixels inside the image only (no zero padding counted)."""
    channels, height, width = image.shape
    pad = (WINDOW - STRIDE) // 2
    rows, cols = (height + 2 * pad - WINDOW) // STRIDE + 1, (width + 2 * pad - WINDOW) // STRIDE + 1
    out = np.empty((2 * channels, rows, cols))
    for i in range(rows):
        for j in range(cols):
            top, left = i * STRIDE - pad, j * STRIDE - pad
            window = image[:, max(top, 0) : top + WINDOW, max(left, 0) : left + WINDOW]
            flat = window.reshape(channels, -1).astype(np.float64)
            out[:channels, i, j] = flat.mean(1)
            out[channels:, i, j] = flat.std(1)
    return out


def _relative(image: np.ndarray) -> np.ndarray:
    flat = image.reshape(image.shape[0], -1)
    return (image - flat.mean(1)[:, None, None]) / flat.std(1, ddof=1)[:, None, None]


def test_raw_cells_are_windowed_mean_and_std_without_padding() -> None:
    rng = np.random.default_rng(0)
    # a ramp across the image: zero padding counted in the mean would show at the borders
    ramp = np.linspace(-3.0, 3.0, 56)[None, None, None, :]
    images = (rng.normal(size=(2, 3, 40, 56)) + ramp).astype(np.float32)
    cells = LocalStatsHead().raw_cells(torch.from_numpy(images)).numpy()
    assert cells.shape == (2, 6, 40 // STRIDE, 56 // STRIDE)
    for got, image in zip(cells, images, strict=True):
        expected = _windowed_mean_std(_relative(image.astype(np.float64)))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_cells_ignore_a_part_lit_brighter_or_with_more_contrast() -> None:
    rng = np.random.default_rng(2)
    images = torch.from_numpy(rng.normal(size=(1, 3, 96, 96)).astype(np.float32))
    gain = torch.tensor([1.5, 0.7, 1.2]).view(1, 3, 1, 1)
    offset = torch.tensor([0.4, -0.3, 0.8]).view(1, 3, 1, 1)
    head = LocalStatsHead()
    np.testing.assert_allclose(
        head.raw_cells(images * gain + offset).numpy(), head.raw_cells(images).numpy(),
        rtol=1e-4, atol=1e-4,
    )  # fmt: skip
    stained = images.clone()
    stained[:, :, 8:16, 8:16] += 2.0  # a local change still moves its windows
    assert (head.raw_cells(stained) - head.raw_cells(images)).abs().max() > 0.2


def test_patch_scores_are_the_distance_to_the_nearest_bank_row() -> None:
    rng = np.random.default_rng(1)
    head = LocalStatsHead()
    head.shift = torch.from_numpy(rng.normal(size=(1, 6, 1, 1)).astype(np.float32))
    head.scale = torch.from_numpy(rng.uniform(0.5, 2.0, size=(1, 6, 1, 1)).astype(np.float32))
    head.bank = torch.from_numpy(rng.normal(size=(23, 6)).astype(np.float32))
    images = torch.from_numpy(rng.normal(size=(2, 3, 32, 48)).astype(np.float32))
    assert head.enabled
    scores = head.patch_scores(images).numpy()
    cells = ((head.raw_cells(images) - head.shift) * head.scale).numpy().astype(np.float64)
    bank = head.bank.numpy().astype(np.float64)
    assert scores.shape == (2, 1, 4, 6)
    for n, i, j in np.ndindex(2, 4, 6):
        nearest = np.sqrt(((bank - cells[n, :, i, j]) ** 2).sum(1)).min()
        assert scores[n, 0, i, j] == pytest.approx(nearest, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize(
    ("mode", "evidence", "kept", "reason"),
    [
        ("on", {}, True, "local_statistics: true"),
        ("on", {"patchcore": 0.9, "fused": 0.8}, True, "local_statistics: true"),
        ("auto", {}, False, "auto: no defect images in the validation split to show a gain"),
        ("auto", {"patchcore": 0.8, "fused": 0.8 + MIN_GAIN}, True, "auto: validation image "
         f"AUROC +{MIN_GAIN:.3f} (>= {MIN_GAIN})"),
        ("auto", {"patchcore": 0.8, "fused": 0.805}, False, "auto: validation image AUROC "
         f"+0.005 (< +{MIN_GAIN})"),
        ("auto", {"patchcore": 0.9, "fused": 0.85}, False, "auto: validation image AUROC "
         f"-0.050 (< +{MIN_GAIN})"),
        ("auto", {"patchcore": 0.8, "fused": 0.9, "pixel_patchcore": 0.9, "pixel_fused": 0.895},
         True, "auto: validation image AUROC +0.100 (>= 0.01)"),
        ("auto", {"patchcore": 0.8, "fused": 0.9, "pixel_patchcore": 0.9, "pixel_fused": 0.88},
         False, "auto: validation image AUROC +0.100, but pixel AUROC -0.020 (regions would "
         f"get worse; more than -{MAX_PIXEL_LOSS})"),
    ],
)  # fmt: skip
def test_decision(mode: str, evidence: dict[str, float], kept: bool, reason: str) -> None:
    assert _decide(mode, evidence) == (kept, reason)


# -------------------------------------------------------------- a tiny model that keeps it


def test_lazy_images_read_what_is_indexed_and_all_of_them_once() -> None:
    every = torch.arange(5 * 3, dtype=torch.float32).reshape(5, 3, 1, 1)
    asked: list[list[int]] = []

    def read(indices: Any) -> torch.Tensor:
        asked.append(list(indices))
        return every[list(indices)]

    images = LazyImages(5, read)
    assert len(images) == 5 and asked == []
    assert torch.equal(images[np.array([3, 1])], every[[3, 1]])
    assert asked == [[3, 1]]
    assert torch.equal(images[:], every) and torch.equal(images[np.array([4])], every[[4]])
    assert asked == [[3, 1], [0, 1, 2, 3, 4]]  # all read once, then kept


@dataclasses.dataclass(frozen=True)
class Trained:
    outcome: TrainOutcome
    dataset: Dataset
    registry: Registry

    @property
    def inner(self) -> FusedPatchcoreModel:
        return self.outcome.model.model

    def inputs(self, samples: Any) -> torch.Tensor:
        return model_inputs(self.outcome.model, samples, SIZE)

    def validation(self) -> tuple[torch.Tensor, np.ndarray]:
        config = model_config_from_mapping(self.outcome.record.config)
        validation, _ = evaluation_splits(config, self.dataset)
        return self.inputs(validation), np.array([s.label for s in validation])

    def test_images(self) -> torch.Tensor:
        return self.inputs(self.dataset.test_samples)


@pytest.fixture(scope="module")
def trained(tiny_product: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A tiny PatchCore (64 px) trained with ``local_statistics: true`` into a fresh registry."""
    dataset = load_dataset(tiny_product)
    config = model_config_from_mapping({**TINY_PATCHCORE, "local_statistics": True})
    registry = Registry(tmp_path_factory.mktemp("registry"))
    outcome = train_model(config, dataset, product="brick", registry=registry, progress=False)
    return Trained(outcome, dataset, registry)


def _plain(inner: FusedPatchcoreModel) -> PatchcoreModel:
    """anomalib's own model with ``inner``'s backbone and memory bank (no statistics head)."""
    plain = PatchcoreModel(
        backbone=inner.backbone, pre_trained=False, layers=inner.layers,
        num_neighbors=inner.num_neighbors,
    )  # fmt: skip
    state = {k: v for k, v in inner.state_dict().items() if not k.startswith("local_stats.")}
    plain.load_state_dict(state, strict=True)
    return plain.eval()


@slow
def test_training_keeps_the_head_and_records_why(trained: Trained) -> None:
    record = trained.outcome.record.extra["local_statistics"]
    head = trained.inner.local_stats
    assert (record["mode"], record["kept"], record["reason"]) == (
        "on", True, "local_statistics: true",
    )  # fmt: skip
    assert head.enabled and record["bank_rows"] == head.bank.shape[0] > 0
    assert record["cells"] == len(trained.dataset.train_samples) * (SIZE[0] // STRIDE) ** 2
    assert set(record["validation_auroc"]) == {
        "patchcore", "local_statistics", "fused", "pixel_patchcore", "pixel_fused",
    }  # fmt: skip


@slow
def test_fused_model_is_anomalib_patchcore_without_a_bank_and_the_max_of_z_with_one(
    trained: Trained,
) -> None:
    inner = copy.deepcopy(trained.inner).eval()
    plain = _plain(inner)
    in_process(plain)  # as the trained model's (training.backbones.in_process)
    images = trained.test_images()
    with torch.no_grad():
        unfused = plain(images)
        side = inner.side_outputs(images)
        fused = inner(images)
        bank, inner.local_stats.bank = inner.local_stats.bank, torch.empty(0)
        off = inner(images)
        inner.local_stats.bank = bank
    torch.testing.assert_close(off.pred_score, unfused.pred_score, rtol=0, atol=0)
    torch.testing.assert_close(off.anomaly_map, unfused.anomaly_map, rtol=0, atol=0)

    s = inner.local_stats.standardisers
    z_main = (unfused.pred_score - s[0]) / s[1]
    z_side = (side.pred_score - s[2]) / s[3]
    torch.testing.assert_close(fused.pred_score, torch.maximum(z_main, z_side))
    map_main = (unfused.anomaly_map - s[4]) / s[5]
    map_side = (side.anomaly_map - s[6]) / s[7]
    torch.testing.assert_close(fused.anomaly_map, torch.maximum(map_main, map_side))
    assert side.anomaly_map.shape == unfused.anomaly_map.shape == (len(images), 1, *SIZE)
    # the statistics part wins somewhere in the maps: the fusion is not PatchCore relabelled
    assert (map_side > map_main).any()


# ---------------------------------------------------------------------------- fitting


def _fit(trained: Trained, validation: torch.Tensor, labels: np.ndarray, mode: str) -> Any:
    inner = copy.deepcopy(trained.inner).eval()
    choice = fit_local_statistics(
        inner, trained.inputs(trained.dataset.train_samples), validation, labels,
        mode=mode, ratio=0.1, cap_rows=None,
    )  # fmt: skip
    return inner, choice


@slow
def test_on_keeps_the_bank_and_standardises_on_the_good_validation_images(
    trained: Trained,
) -> None:
    validation, labels = trained.validation()
    assert (labels == 0).sum() >= 2 and (labels == 1).any()
    inner, choice = _fit(trained, validation, labels, "on")
    head = inner.local_stats
    assert choice.kept and choice.reason == "local_statistics: true"
    assert head.enabled and choice.bank_rows == head.bank.shape[0]

    good = validation[labels == 0]
    plain = _plain(inner)
    with torch.no_grad():
        main, side = plain(good), inner.side_outputs(good)
    expected = []
    for values in (
        main.pred_score,
        side.pred_score,
        main.anomaly_map.flatten(1).amax(1),
        side.anomaly_map.flatten(1).amax(1),
    ):
        values = values.double().numpy()
        expected += [np.median(values), values.max() - np.median(values)]
    np.testing.assert_allclose(head.standardisers.numpy(), expected, rtol=1e-4)
    # each part's largest good score maps to 1: so does the fused score's
    with torch.no_grad():
        assert inner(good).pred_score.max().item() == pytest.approx(1.0, abs=1e-4)


@slow
def test_scaling_folds_out_of_fold_scores_join_the_statistics_standardiser(
    trained: Trained,
) -> None:
    validation, labels = trained.validation()
    inner = copy.deepcopy(trained.inner).eval()
    train = trained.inputs(trained.dataset.train_samples)
    choice = fit_local_statistics(
        inner, train, validation, labels, mode="on", ratio=0.1, cap_rows=None, folds=2
    )
    head = inner.local_stats
    trained_bank = head.bank.clone()
    rows = [head.cells(image[None]).flatten(2).transpose(1, 2)[0] for image in train]
    (scores, peaks), banks = side_out_of_fold(inner, train, rows, 2, 0.1, None, 0)
    assert len(banks) == 2 and len(head.fold_banks) == 2  # the fit kept its own, for reuse
    assert torch.equal(head.bank, trained_bank)  # put back
    good = validation[labels == 0]
    scaling = standardiser_images(len(train), 2, 0)
    assert 0 < scaling.sum() < len(train)  # the first fold only
    scores, peaks = scores[scaling], peaks[scaling]
    with torch.no_grad():
        side = inner.side_outputs(good)
    for index, (validation_good, out_of_fold) in zip(
        (2, 6),
        ((side.pred_score, scores), (side.anomaly_map.flatten(1).amax(1), peaks)),
        strict=True,
    ):
        values = np.concatenate([validation_good.double().numpy(), out_of_fold])
        median = np.median(values)
        location, scale = head.standardisers[index : index + 2].tolist()
        assert location == pytest.approx(median, rel=1e-4)
        assert scale == pytest.approx(values.max() - median, rel=1e-4)
    assert choice.good_for_scale == len(good) + scaling.sum()


@slow
def test_the_images_that_fit_the_standardisers_set_no_threshold(trained: Trained) -> None:
    """Training and the registry (for bundles) calibrate a fused model on the other folds'
    out-of-fold scores alone: not the good validation images nor the scaling fold."""
    from inspection.core.fingerprint import relative_name

    record, samples = trained.outcome.record, trained.dataset.train_samples
    config = record.config
    scaling = standardiser_images(len(samples), config["calibration_folds"], config["seed"])
    assert 0 < scaling.sum() < len(samples)
    operating = record.metrics["calibration"]["operating"]
    assert operating["good_sources"] == {"out_of_fold_train": int((~scaling).sum())}
    assert operating["n_good"] == int((~scaling).sum())
    good = record.good_scores()
    assert not good.validation_calibrates
    root = trained.dataset.root
    calibrating = [s for s, fit in zip(samples, scaling, strict=True) if not fit]
    assert set(good.out_of_fold) == {relative_name(s.path, root) for s in calibrating}


@pytest.mark.parametrize(
    ("overrides", "roi", "reason"),
    [
        ({"calibration_folds": 0}, None, "needs calibration_folds >= 2"),
        ({"global_context": ["colour"]}, None, "not with a global context"),
        ({}, TrainingRoi(every=np.ones(SIZE, bool)), "not with an ROI"),
    ],
)
def test_the_product_path_fuses_only_with_a_calibration_set_of_its_own(
    tiny_product: Path, overrides: dict[str, Any], roi: TrainingRoi | None, reason: str
) -> None:
    config = model_config_from_mapping({**TINY_PATCHCORE, "local_statistics": True, **overrides})
    samples = load_dataset(tiny_product).train_samples
    choice = fit_for_model(None, config, samples, samples, roi)  # decided before any model
    assert not choice.kept and choice.reason.startswith(reason)


@slow
def test_auto_without_defect_images_in_validation_is_off(trained: Trained) -> None:
    validation, labels = trained.validation()
    good = labels == 0
    inner, choice = _fit(trained, validation[good], labels[good], "auto")
    assert not choice.kept and not inner.local_stats.enabled
    assert choice.reason == "auto: no defect images in the validation split to show a gain"
    assert choice.validation_auroc == {} and choice.bank_rows == 0


@slow
def test_auto_is_off_when_patchcore_alone_already_separates_validation(trained: Trained) -> None:
    validation, labels = trained.validation()
    good = validation[labels == 0]
    # loud noise patches: PatchCore ranks them all above the good images, nothing left to gain
    generator = torch.Generator().manual_seed(0)
    defects = good.clone()
    defects[:, :, 16:48, 16:48] = 6 * torch.randn(
        defects[:, :, 16:48, 16:48].shape, generator=generator
    )
    images = torch.cat([good, defects])
    labels = np.repeat([0, 1], len(good))
    inner, choice = _fit(trained, images, labels, "auto")
    assert choice.validation_auroc["patchcore"] == 1.0
    assert not choice.kept and not inner.local_stats.enabled and choice.bank_rows == 0
    gain = choice.validation_auroc["fused"] - choice.validation_auroc["patchcore"]
    assert choice.reason == f"auto: validation image AUROC {gain:+.3f} (< +{MIN_GAIN})"
    assert choice.cells > 0  # fitted, then dropped
    assert inner.local_stats.fold_banks == []  # refused before its out-of-fold banks were paid
    # the product path (``fit_for_model``) sees it before reading a training image
    reason = no_room_to_gain(trained.inner, images, labels)
    assert (
        reason
        == f"auto: PatchCore's validation image AUROC 1.0 leaves less than +{MIN_GAIN} to gain"
    )


@slow
def test_auto_keeps_it_when_it_finds_what_patchcore_misses(trained: Trained) -> None:
    """A faded patch (contrast cut to 30 %, colour kept): the statistics see it, PatchCore less."""
    good = trained.inputs([s for s in trained.dataset.test_samples if s.label == 0])
    defects = good.clone()
    region = defects[:, :, 16:48, 16:48]
    mean = region.mean((2, 3), keepdim=True)
    defects[:, :, 16:48, 16:48] = mean + 0.3 * (region - mean)
    labels = np.repeat([0, 1], len(good))
    inner, choice = _fit(trained, torch.cat([good, defects]), labels, "auto")
    auroc = choice.validation_auroc
    assert auroc["patchcore"] < 1.0 and auroc["fused"] >= auroc["patchcore"] + MIN_GAIN
    assert no_room_to_gain(trained.inner, torch.cat([good, defects]), labels) == ""
    assert choice.kept and inner.local_stats.enabled and choice.bank_rows > 0
    gain = auroc["fused"] - auroc["patchcore"]
    assert choice.reason == f"auto: validation image AUROC +{gain:.3f} (>= {MIN_GAIN})"
    with torch.no_grad():  # the kept model ranks every faded part above every good one
        assert inner(defects).pred_score.min() > inner(good).pred_score.max()


@slow
@pytest.mark.parametrize("mode", ["on", "auto"])
def test_fewer_than_two_good_validation_images_is_off(trained: Trained, mode: str) -> None:
    validation, labels = trained.validation()
    one_good = np.flatnonzero(labels == 0)[:1]
    keep = np.concatenate([one_good, np.flatnonzero(labels == 1)])
    inner, choice = _fit(trained, validation[keep], labels[keep], mode)
    assert not choice.kept and not inner.local_stats.enabled
    assert choice.reason == "fewer than 2 good validation images"


# ---------------------------------------------------------------------------- checkpoint


@slow
def test_checkpoint_rebuilds_the_fused_model(trained: Trained) -> None:
    loaded = load_trained_model(trained.outcome.record).model
    assert isinstance(loaded, FusedPatchcoreModel) and loaded.local_stats.enabled
    images = trained.test_images()
    inner = trained.inner.eval()
    in_process(loaded)  # as the trained model's (training.backbones.in_process)
    with torch.no_grad():
        expected, got = inner(images), loaded(images)
    torch.testing.assert_close(got.pred_score, expected.pred_score, rtol=0, atol=0)
    torch.testing.assert_close(got.anomaly_map, expected.anomaly_map, rtol=0, atol=0)


@slow
def test_an_older_checkpoint_without_the_head_still_loads(trained: Trained, tmp_path: Path) -> None:
    """A version trained before ``local_statistics`` existed: no config key, no head buffers."""
    record = trained.outcome.record
    state = torch.load(record.file(CHECKPOINT_FILE), map_location="cpu", weights_only=True)
    old_state = {k: v for k, v in state.items() if ".local_stats." not in k}
    assert len(old_state) < len(state)
    torch.save(old_state, tmp_path / CHECKPOINT_FILE)
    old_config = {k: v for k, v in record.config.items() if k != "local_statistics"}
    old: ModelRecord = dataclasses.replace(record, config=old_config, path=tmp_path)

    loaded = load_trained_model(old).model
    assert type(loaded) is PatchcoreModel
    images = trained.test_images()
    with torch.no_grad():
        got, expected = loaded(images), _plain(trained.inner)(images)
    torch.testing.assert_close(got.pred_score, expected.pred_score, rtol=0, atol=0)


# ---------------------------------------------------------------------------- out of fold


@slow
def test_out_of_fold_swaps_the_statistics_bank_per_fold_and_restores_both(
    trained: Trained,
) -> None:
    model = load_trained_model(trained.outcome.record)
    inner, head = model.model, model.model.local_stats
    samples = trained.dataset.train_samples
    trained_banks = inner.memory_bank.clone(), head.bank.clone()
    images = trained.inputs(samples)
    with torch.no_grad():
        cells = head.cells(images).flatten(2).transpose(1, 2)  # (N, cells, 6)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []  # (scored images, statistics bank)

    def record_banks(_module: Any, args: tuple[torch.Tensor, ...]) -> None:
        seen.append((args[0].clone(), head.bank.clone()))

    hook = inner.register_forward_pre_hook(record_banks)
    try:
        config = model_config_from_mapping(
            {**TINY_PATCHCORE, "calibration_folds": 3, "memory_bank_max": None, "batch_size": 4}
        )
        scores = out_of_fold_scores(model, config, samples)
    finally:
        hook.remove()

    assert scores.shape == (len(samples),) and np.isfinite(scores).all()
    assert torch.equal(inner.memory_bank, trained_banks[0])
    assert torch.equal(head.bank, trained_banks[1])
    assignment = fold_of(len(samples), 3, 0)
    banks_by_fold: dict[int, torch.Tensor] = {}
    for batch, bank in seen:
        held = [int(torch.cdist(x.flatten()[None], images.flatten(1)).argmin()) for x in batch]
        fold = int(assignment[held[0]])
        assert (assignment[held] == fold).all()
        others = cells[assignment != fold].reshape(-1, 6)
        # every statistics row the fold is scored with comes from the other folds' images
        exact = torch.cdist(bank, others, compute_mode="donot_use_mm_for_euclid_dist")
        assert exact.amin(1).max() < 1e-5
        assert not torch.equal(bank, trained_banks[1])
        banks_by_fold.setdefault(fold, bank)
    assert sorted(banks_by_fold) == [0, 1, 2]


# ---------------------------------------------------------------------------- export


@slow
def test_exported_graph_computes_the_fused_outputs_at_f32(trained: Trained) -> None:
    from inspection.training.convert import MAP_OUTPUT, SCORE_OUTPUT, convert_torch_model
    from tests.ov_precision import compile_at, executed_precision

    inner = copy.deepcopy(trained.inner).eval()
    compiled = compile_at(convert_torch_model(inner, SIZE), "f32")
    assert executed_precision(compiled) == "f32"
    images = trained.test_images()[:5]
    with torch.no_grad():
        expected = inner(images)
        unfused = _plain(inner)(images)
    for batch in (images, images[:1]):  # dynamic batch
        out = compiled(batch.numpy())
        ref_score = expected.pred_score[: len(batch)].reshape(-1).numpy()
        ref_map = expected.anomaly_map[: len(batch)].numpy()
        scale = float(np.abs(ref_map).max())
        np.testing.assert_allclose(out[SCORE_OUTPUT], ref_score, rtol=1e-4, atol=1e-4 * scale)
        np.testing.assert_allclose(out[MAP_OUTPUT], ref_map, rtol=1e-4, atol=1e-4 * scale)
    # the graph carries the fusion, not PatchCore's raw distances
    assert not np.allclose(out[SCORE_OUTPUT], unfused.pred_score[:1].numpy(), rtol=0.1)


@slow
def test_an_incremental_update_extends_the_statistics_bank(
    trained: Trained, tmp_path: Path
) -> None:
    from inspection.training.incremental import update_bank

    source = cv2.imread(str(trained.dataset.train_samples[0].path))
    blotched = source.copy()
    blotched[8:40, 8:40] = (40, 200, 240)  # a colour no training part shows
    paths = []
    for index in range(2):
        path = tmp_path / f"new_{index}.png"
        cv2.imwrite(str(path), np.roll(blotched, 8 * index, axis=1))
        paths.append(path)
    sample = [dataclasses.replace(trained.dataset.train_samples[0], path=paths[0])]
    before = trained.inner.local_stats.bank.clone()
    with torch.no_grad():
        side_before = trained.inner.side_outputs(trained.inputs(sample)).pred_score.item()

    outcome = update_bank(trained.registry, "brick", paths, dataset=trained.dataset)
    child = load_trained_model(outcome.record).model
    after = child.local_stats.bank
    assert after.shape[0] > before.shape[0]
    assert torch.equal(after[: before.shape[0]], before)  # old rows kept as they are
    with torch.no_grad():
        side_after = child.side_outputs(trained.inputs(sample)).pred_score.item()
    assert side_after < 0.5 * side_before


def test_auto_pays_for_pixel_auroc_only_when_the_image_gain_would_keep_it() -> None:
    from inspection.training.models.patchcore.local_stats import _Outputs, _validation_evidence

    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 4)
    masks = np.zeros((8, 16, 16), bool)
    masks[4:, 4:8, 4:8] = True
    main = _Outputs(rng.normal(size=8), rng.random((8, 16, 16)).astype(np.float32))
    same = _Outputs(main.scores.copy(), main.maps.copy())  # fusing it gains nothing
    known = np.ones(8, bool)

    def evidence(need_gain: bool) -> dict[str, float]:
        return _validation_evidence([0.0, 1.0] * 4, labels, main, same, masks, known,
                                    pixels_need_gain=need_gain)  # fmt: skip

    assert "pixel_fused" not in evidence(True)  # refused on images: no pixel sort paid
    assert {"pixel_patchcore", "pixel_fused"} <= set(evidence(False))
    assert _decide("auto", evidence(True))[0] is _decide("auto", evidence(False))[0] is False
