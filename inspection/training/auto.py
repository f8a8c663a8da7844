"""``inspection train --auto``: a small, bounded search for a product's model config.

Each ``DEFAULT_GRID`` candidate is fitted on one seeded subsample of ``SEARCH_IMAGES`` training
images and chosen on the validation split only, by ``RULE`` (``reports/global/auto.md``); a
candidate starts only if its estimated cost fits the budget. ``train_winner`` trains the winner
on every image and records the search (``extra.auto_search``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.figure import Figure

from inspection.core.bootstrap import auroc_gain_interval, auroc_interval
from inspection.core.config import to_mapping
from inspection.core.errors import InspectionError
from inspection.core.metrics import image_auroc
from inspection.core.product_config import (
    ModelConfig,
    load_model_config,
    load_product_config,
    model_config_from_mapping,
)
from inspection.core.registry import Registry
from inspection.data.dataset import Dataset, Sample
from inspection.training.evaluate import predict
from inspection.training.operating import calibrate_predictions
from inspection.training.shared_features import SharedFeatures
from inspection.training.train import (
    _fit_global_context,
    _fit_local_statistics,
    config_weights,
    evaluation_splits,
    fit,
    fused_predictions,
    predict_validation,
    train_model,
)

logger = logging.getLogger(__name__)

TIE_MARGIN = 0.01
GLOBAL = "global_context=[features,colour,frequency]"
RULE = (
    f"highest validation image AUROC; within {TIE_MARGIN} of the best counts as a tie, won by "
    "the earliest candidate in grid order (default first); the default stays unless the "
    "leader's paired bootstrap 95 % interval of validation gain over it is above 0; test "
    "metrics never choose"
)


@dataclass(frozen=True)
class Candidate:
    """One configuration tried: a model kind, ``--set`` overrides and an input ``scale`` on the
    product's ``image_size`` (rounded to 32 px: small defects cover more patches)."""

    name: str
    kind: str
    overrides: tuple[str, ...] = ()
    scale: float = 1.0


DEEP = "backbone.layers=[blocks.2,blocks.4,blocks.6]"
RANK = "knn_rank=128"
VIEWS = "bank_augment=[hflip,vflip,rot90]"
DEFAULT_GRID: tuple[Candidate, ...] = (
    Candidate("patchcore (default)", "patchcore"),
    Candidate("patchcore 2x input, layers 2+4+6", "patchcore", (DEEP, RANK), scale=2.0),
    Candidate("patchcore + flipped/turned views", "patchcore", (VIEWS,)),
    Candidate("patchcore 1.5x input", "patchcore", scale=1.5),
    Candidate("patchcore 2x input", "patchcore", scale=2.0),
    Candidate("patchcore layers 2+4+6", "patchcore", (DEEP,)),
    Candidate("patchcore + global", "patchcore", (GLOBAL,)),
    Candidate("patchcore lite1", "patchcore", ("backbone.name=tf_efficientnet_lite1",)),
    Candidate("stfpm", "stfpm"),
    Candidate("padim", "padim"),
)
"""Ordered by what paid on held-out data (``reports/hard_surfaces/summary.md``): first 2x input
with the stride-32 layer, carrying ``knn_rank=128`` (export-only, within bootstrap noise of
exact kNN) so a winner serves faster; then the bank of mirrored and turned views (blind to a
part's orientation); then scale and layer alone. PaDiM last: for aligned parts only. Every
PatchCore candidate carries the product's ``local_statistics``."""
SEARCH_IMAGES = 60
"""Training images each candidate is fitted on (a seeded subsample when there are more)."""
MAX_INPUT_SIDE = 768
"""Scale candidates whose input side would exceed this are skipped (station cost ~ side^2)."""


@dataclass(frozen=True)
class CandidateResult:
    """A candidate's outcome: ``status`` ``done``, ``skipped`` (budget) or ``failed``."""

    name: str
    kind: str
    overrides: tuple[str, ...]
    status: Literal["done", "skipped", "failed"]
    validation_auroc: float | None = None
    test_auroc: dict[str, float] | None = None
    """Held-out test image AUROC and bootstrap interval, of the candidates that could win."""
    validation_gain: dict[str, float] | None = None
    """Validation image AUROC over the default's, paired bootstrap interval; None: default."""
    seconds: float = 0.0
    note: str = ""
    scale: float = 1.0
    """Input scale on the product's configured ``image_size`` (``Candidate.scale``)."""


@dataclass(frozen=True)
class SearchResult:
    product: str
    budget_s: float
    rule: str
    winner: str
    winner_config: dict[str, Any] = field(default_factory=dict)
    candidates: tuple[CandidateResult, ...] = field(default_factory=tuple)
    search_images: int = 0
    """Training images each candidate was fitted on (``SEARCH_IMAGES``); 0: not recorded."""

    @property
    def scored(self) -> int:
        """Candidates that finished within the budget."""
        return sum(r.status == "done" for r in self.candidates)


Configure = Callable[[Candidate], ModelConfig]


def product_configure(product: str, directory: Path | None = None) -> Configure:
    """Candidates as overrides on the product's config layers in ``directory``."""

    def configure(candidate: Candidate) -> ModelConfig:
        config = load_model_config(
            candidate.kind, product=product, overrides=candidate.overrides, directory=directory
        )
        return scaled(config, candidate.scale)

    return configure


def scaled(config: ModelConfig, scale: float) -> ModelConfig:
    """``config`` with its input times ``scale``, rounded to 32 px (``ValueError`` past the max)."""
    if scale == 1.0:
        return config
    size = tuple(max(32, round(side * scale / 32) * 32) for side in config.image_size)
    if max(size) > MAX_INPUT_SIDE:
        raise ValueError(f"input {list(size)} above {MAX_INPUT_SIDE} px: not tried")
    return replace(config, image_size=size)


@dataclass(frozen=True)
class Evaluation:
    """A fitted candidate's validation AUROC and scores; its held-out test interval on demand."""

    validation_auroc: float
    validation: tuple[tuple[str, ...], np.ndarray, np.ndarray]
    """The validation images' (paths, scores, labels) the candidate was judged on."""
    held_out: Callable[[], dict[str, float]]
    """Its held-out test image AUROC with a bootstrap interval (predicts the test split)."""


def search_subsample(dataset: Dataset, seed: int = 0) -> list[Sample]:
    """The training images every candidate is fitted on: all, or a seeded ``SEARCH_IMAGES``."""
    train = list(dataset.train_samples)
    if len(train) <= SEARCH_IMAGES:
        return train
    picked = np.random.default_rng(seed).choice(len(train), SEARCH_IMAGES, replace=False)
    return [train[i] for i in sorted(picked)]


def evaluate_candidate(
    config: ModelConfig,
    dataset: Dataset,
    train: Sequence[Sample] | None = None,
    shared: SharedFeatures | None = None,
) -> Evaluation:
    """Fit ``config`` on ``train`` (default: every training image); its validation image AUROC
    (and scores); its held-out test interval when asked (``Evaluation.held_out``)."""
    validation, test = evaluation_splits(config, dataset)
    train = list(dataset.train_samples if train is None else train)
    weights = config_weights(config)
    backbone = f"{config.backbone.name}:{weights.source}:{weights.sha256}"
    attach = None if shared is None else (lambda m: shared.attach(m, backbone))
    model, _ = fit(config, train, validation, weights, progress=False, prepare=attach)
    _fit_local_statistics(model, config, train, validation, None)
    judged, _ = predict_validation(model, config, validation)
    context = None
    if config.global_context:
        fitted, _, judged = _fit_global_context(
            model, config, weights, train, validation, judged,
            calibrate_predictions(judged, config.operating_point, None).normalization,
        )  # fmt: skip
        context = fitted.context if fitted.context.components else None

    def held_out() -> dict[str, float]:
        tested = predict(
            model, test, image_size=config.image_size, bits=config.image_bits,
            value_range=config.image_range,
        )  # fmt: skip
        if context is not None:
            tested = fused_predictions(model, config, weights, context, tested)
        return auroc_interval(tested.scores, np.asarray(tested.labels)).to_dict()

    labels = np.asarray(judged.labels)
    val_auroc = float(image_auroc(judged.scores, labels) or 0.0)
    paths = tuple(str(p) for p in judged.paths)
    return Evaluation(val_auroc, (paths, np.asarray(judged.scores), labels), held_out)


def search(
    product: str,
    dataset: Dataset,
    *,
    budget_s: float,
    grid: Sequence[Candidate] = DEFAULT_GRID,
    configure: Configure | None = None,
    on_candidate: Callable[[CandidateResult], None] | None = None,
) -> SearchResult:
    """Run the grid within ``budget_s`` seconds and choose by ``RULE``."""
    configure = configure or product_configure(product)
    if budget_s <= 0:
        raise ValueError(f"the search budget must be positive seconds, got {budget_s}")
    started = time.perf_counter()
    train = search_subsample(dataset)
    shared = SharedFeatures()
    results: list[CandidateResult] = []
    contenders: dict[int, Evaluation] = {}  # the default and those that may still win
    for index, candidate in enumerate(grid):
        elapsed = time.perf_counter() - started
        estimate = _estimate(results, candidate)
        if results and elapsed + estimate > budget_s:
            result = _result(
                candidate, "skipped", note=f"budget: {elapsed:.0f} s used, ~{estimate:.0f} s more"
            )
        else:
            result, evaluation = _run(
                candidate, configure, dataset, (train, shared), contenders.get(0)
            )
            if evaluation is not None:
                contenders[index] = evaluation
        results.append(result)
        contenders = _still_contending(contenders, results)
        if on_candidate is not None:
            on_candidate(result)
    winner = choose(results)
    scored = sum(r.status == "done" for r in results)
    logger.info("auto: %d of %d candidates scored in %.0f s on %d of %d training images "
                "(%d backbone passes shared)", scored, len(results), time.perf_counter() - started,
                len(train), len(dataset.train_samples), shared.hits)  # fmt: skip
    for index, evaluation in contenders.items():  # held-out figures, never used to choose
        results[index] = replace(results[index], test_auroc=evaluation.held_out())
    shared.outputs.clear()
    config = configure(next(c for c in grid if c.name == winner))
    return SearchResult(product, budget_s, RULE, winner, to_mapping(config), tuple(results),
                        search_images=len(train))  # fmt: skip


def _still_contending(
    contenders: dict[int, Evaluation], results: Sequence[CandidateResult]
) -> dict[int, Evaluation]:
    """The default and those within ``TIE_MARGIN`` of the best so far; the rest free their model."""
    best = max((results[i].validation_auroc for i in contenders), default=0.0)
    return {i: e for i, e in contenders.items()
            if i == 0 or results[i].validation_auroc >= best - TIE_MARGIN}  # fmt: skip


def _run(
    candidate: Candidate,
    configure: Configure,
    dataset: Dataset,
    train: tuple[Sequence[Sample], SharedFeatures],
    reference: Evaluation | None,
) -> tuple[CandidateResult, Evaluation | None]:
    start = time.perf_counter()
    try:
        evaluation = evaluate_candidate(configure(candidate), dataset, *train)
    except (InspectionError, RuntimeError, ValueError, OSError) as exc:  # not the whole search
        logger.warning("auto: candidate %s failed: %s", candidate.name, exc)
        failed = _result(candidate, "failed", time.perf_counter() - start, note=str(exc)[:200])
        return failed, None
    seconds = time.perf_counter() - start
    val_auroc = evaluation.validation_auroc
    logger.info("auto: %s validation AUROC %.3f (%.0f s)", candidate.name, val_auroc, seconds)
    result = replace(
        _result(candidate, "done", seconds), validation_auroc=round(val_auroc, 4),
        validation_gain=_gain(evaluation, reference),
    )  # fmt: skip
    return result, evaluation


def _gain(evaluation: Evaluation, reference: Evaluation | None) -> dict[str, float] | None:
    """Paired bootstrap interval of validation AUROC over ``reference`` on the same images."""
    if reference is None:
        return None
    paths, scores, labels = evaluation.validation
    ref_paths, ref_scores, _ = reference.validation
    if sorted(paths) != sorted(ref_paths):
        return None
    order = {path: i for i, path in enumerate(ref_paths)}
    aligned = ref_scores[[order[path] for path in paths]]
    return auroc_gain_interval(scores, aligned, labels).to_dict()


def _result(
    candidate: Candidate, status: Any, seconds: float = 0.0, note: str = ""
) -> CandidateResult:
    return CandidateResult(candidate.name, candidate.kind, candidate.overrides, status,
                           seconds=round(seconds, 1), note=note, scale=candidate.scale)  # fmt: skip


def _estimate(results: Sequence[CandidateResult], candidate: Candidate) -> float:
    """Expected seconds of ``candidate``: the longest done one of its kind, scaled by input area."""
    done = [r for r in results if r.status == "done"]
    same = [r for r in done if r.kind == candidate.kind] or done
    return max([r.seconds * (candidate.scale / r.scale) ** 2 for r in same] or [0.0])


def choose(results: Sequence[CandidateResult]) -> str:
    """The winner's name by ``RULE`` (``results[0]`` is the default)."""
    done = [r for r in results if r.status == "done" and r.validation_auroc is not None]
    if not done:
        raise ValueError("the auto search finished no candidate; raise --budget or check the logs")
    best = max(r.validation_auroc for r in done)
    leader = next(r for r in done if r.validation_auroc >= best - TIE_MARGIN)
    default = results[0]
    if leader is default or default not in done:
        return leader.name
    gain = leader.validation_gain
    return leader.name if gain is not None and gain["low"] > 0.0 else default.name


def train_winner(
    search_result: SearchResult,
    dataset: Dataset,
    registry: Registry,
    progress: bool = True,
    *,
    configs_dir: Path | None = None,
) -> Any:
    """Train and register the winner with the search in its lineage; the ``TrainOutcome``."""
    config = model_config_from_mapping(search_result.winner_config, where="auto search winner")
    return train_model(
        config, dataset, product=search_result.product, registry=registry,
        progress=progress, lineage={"auto_search": to_mapping(search_result)},
        roi=load_product_config(search_result.product, configs_dir).roi,
    )  # fmt: skip


def write_search_report(out_dir: Path, result: SearchResult) -> Path:
    """``search.json``, ``search.md`` (every candidate) and ``search.png`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "search.json").write_text(json.dumps(to_mapping(result), indent=2), encoding="utf-8")
    lines = [
        f"# Auto search: {result.product}",
        "",
        f"Budget {result.budget_s:.0f} s. Rule: {result.rule}. Winner: **{result.winner}**.",
        "",
        "| candidate | kind | overrides | status | validation AUROC | validation gain over the "
        "default [paired 95 % CI] | test AUROC [95 % CI] | s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result.candidates:
        cell = interval_cell(r.test_auroc)
        val = f"{r.validation_auroc:.3f}" if r.validation_auroc is not None else "-"
        status = r.status + (f" ({r.note})" if r.note else "")
        mark = " **(winner)**" if r.name == result.winner else ""
        lines.append(
            f"| {r.name}{mark} | {r.kind} | {_settings(r) or '-'} | {status} | {val} | "
            f"{interval_cell(r.validation_gain, signed=True)} | {cell} | {r.seconds:.0f} |"
        )
    (out_dir / "search.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _plot(out_dir / "search.png", result)
    return out_dir / "search.md"


def interval_cell(interval: dict[str, float] | None, *, signed: bool = False) -> str:
    """``0.737 [0.646, 0.820]`` (``+0.120 [+0.010, +0.230]`` when ``signed``), or ``-``."""
    if not interval:
        return "-"
    f = "{:+.3f}" if signed else "{:.3f}"
    low, high = f.format(interval["low"]), f.format(interval["high"])
    return f"{f.format(interval['value'])} [{low}, {high}]"


def _settings(result: CandidateResult) -> str:
    scale = [] if result.scale == 1.0 else [f"input x{result.scale:g}"]
    return ", ".join([*result.overrides, *scale])


def _plot(path: Path, result: SearchResult) -> None:
    done = [r for r in result.candidates if r.status == "done"]
    fig = Figure(figsize=(8, 0.5 * max(len(done), 2) + 1.2))
    ax = fig.subplots()
    y = np.arange(len(done))
    ax.barh(y - 0.2, [r.validation_auroc for r in done], 0.4, label="validation (chooses)")
    test = [r.test_auroc or {} for r in done]
    values = [t.get("value", np.nan) for t in test]
    errors = [
        [v - t.get("low", v) for v, t in zip(values, test, strict=True)],
        [t.get("high", v) - v for v, t in zip(values, test, strict=True)],
    ]
    ax.barh(y + 0.2, values, 0.4, xerr=errors, label="held-out test, 95 % CI", alpha=0.7)
    ax.set_yticks(y, [r.name + (" *" if r.name == result.winner else "") for r in done])
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("image AUROC")
    ax.set_title(f"{result.product}: auto search (* winner)")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
