"""Report figures (matplotlib, Agg backend): ROC, score histogram, example grid.

Scores are shown as the CLI, API and dashboard speak them: normalised, NG from 0.5 (raw only
for metrics recorded without a calibration)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve

from inspection.core.calibration import normalize_scores
from inspection.core.metrics import EvaluationMetrics, JudgedSet
from inspection.training.samples import Predictions, load_image

GRID_ROWS = 8
GAP = 6
"""Pixels of gray between two panels of the example mosaic (white masks stay framed)."""
NG_AT = 0.5
"""The normalised threshold every bundle speaks (``core.calibration``)."""


def save_plots(
    out_dir: Path,
    predictions: Predictions,
    metrics: EvaluationMetrics,
    judged: Callable[[list[int]], JudgedSet | None],
) -> list[Path]:
    """Write roc.png, score_histogram.png and examples.png into ``out_dir``; ``judged(rows)``:
    the station's verdicts and (len(rows), H, W) masks of those images, or None."""
    return [
        plot_roc(out_dir / "roc.png", predictions, metrics),
        plot_histogram(out_dir / "score_histogram.png", predictions, metrics),
        plot_examples(out_dir / "examples.png", predictions, metrics, judged),
    ]


def shown_scores(predictions: Predictions, metrics: EvaluationMetrics) -> tuple[np.ndarray, str]:
    """(N,) image scores as the station reports them (normalised, NG from 0.5) and their axis
    label; raw scores when the metrics carry no calibration."""
    if metrics.calibration is None:
        return predictions.scores, "raw image anomaly score"
    norm = metrics.calibration.normalization
    return normalize_scores(predictions.scores, norm), "image anomaly score (NG from 0.5)"


def plot_roc(path: Path, predictions: Predictions, metrics: EvaluationMetrics) -> Path:
    """Image-level ROC overall and per defect type (each type vs all good images)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    labels, scores = predictions.labels, predictions.scores
    types = np.asarray(predictions.defect_types)
    curves = [("all", np.ones(len(labels), dtype=bool))]
    curves += [(t, (labels == 0) | (types == t)) for t in sorted(set(types[labels == 1]))]
    for name, select in curves:
        if 0 < labels[select].sum() < select.sum():
            fpr, tpr, _ = roc_curve(labels[select], scores[select])
            auroc = metrics.per_defect.get(name, metrics.overall).image_auroc
            label = f"{name} (AUROC {auroc:.3f})" if auroc is not None else name
            ax.plot(fpr, tpr, linewidth=2.5 if name == "all" else 1.2, label=label)
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="Image ROC")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_histogram(path: Path, predictions: Predictions, metrics: EvaluationMetrics) -> Path:
    """Image scores of good vs defective test images, with the threshold."""
    fig, ax = plt.subplots(figsize=(6, 4))
    scores, label = shown_scores(predictions, metrics)
    labels = predictions.labels
    threshold = NG_AT if metrics.calibration is not None else metrics.image_threshold
    bins = np.histogram_bin_edges(np.r_[scores, 0.0, 1.0] if threshold == NG_AT else scores, 20)
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label="good", color="tab:green")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label="defective", color="tab:red")
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set(xlabel=label, ylabel="images", title="Score distribution")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_examples(
    path: Path,
    predictions: Predictions,
    metrics: EvaluationMetrics,
    judge: Callable[[list[int]], JudgedSet | None],
) -> Path:
    """Rows of image | anomaly map | judged mask | ground truth, defects first, each named by kind,
    score and verdict: one mosaic in one axes (one axes per image is slow to draw)."""
    rows = _example_rows(predictions)
    judged = judge(rows)
    height, width = predictions.maps.shape[1:]
    low, high = float(predictions.maps.min()), float(predictions.maps.max())
    jet = matplotlib.colormaps["jet"]
    mosaic = np.full(
        (len(rows) * (height + GAP) - GAP, 4 * (width + GAP) - GAP, 3), 0.6, np.float32
    )
    for number, index in enumerate(rows):
        heat = (predictions.maps[index] - low) / (high - low or 1.0)
        judged_mask = (
            judged.masks[number] if judged is not None else np.zeros((height, width), bool)
        )
        shown = Path(predictions.paths[index])
        panels = [
            load_image(shown, (height, width), predictions.bits, predictions.value_range),
            jet(heat)[..., :3],
            np.repeat(judged_mask[..., None], 3, axis=2),
            np.repeat(predictions.masks[index][..., None], 3, axis=2),
        ]
        top = number * (height + GAP)
        for column, panel in enumerate(panels):
            left = column * (width + GAP)
            mosaic[top : top + height, left : left + width] = panel
    # 8 in wide, 87 % of it for the mosaic; 0.4 in above it for the column titles, 0.05 below
    fig, ax = plt.subplots(figsize=(8, 8 * 0.87 * mosaic.shape[0] / mosaic.shape[1] + 0.45))
    ax.imshow(mosaic)
    columns = ["image", "anomaly map", "predicted mask", "ground truth"]
    ax.set_xticks([c * (width + GAP) + width / 2 for c in range(4)], columns, fontsize=9)
    ax.xaxis.tick_top()
    scores, _ = shown_scores(predictions, metrics)
    ax.set_yticks(
        [n * (height + GAP) + height / 2 for n in range(len(rows))],
        [
            f"{predictions.defect_types[i]}\n{scores[i]:.3g} {_verdict(predictions, judged, n, i)}"
            for n, i in enumerate(rows)
        ],
        fontsize=8,
    )
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.subplots_adjust(left=0.12, right=0.99, bottom=0.05 / fig.get_figheight(),
                        top=1 - 0.4 / fig.get_figheight())  # fmt: skip
    return _save(fig, path, tight=False)


def _verdict(predictions: Predictions, judged: JudgedSet | None, number: int, index: int) -> str:
    """The row's verdict, and whether it is wrong: "NG", "OK", "OK missed", "NG false reject"."""
    if judged is None:
        return ""
    ng, defective = bool(judged.ng[number]), bool(predictions.labels[index])
    verdict = "NG" if ng else "OK"
    if ng != defective:
        verdict += " false reject" if ng else " missed"
    return verdict


def _example_rows(predictions: Predictions) -> list[int]:
    """One image per defect type first (round robin), then good ones; at most GRID_ROWS."""
    by_type: dict[str, list[int]] = {}
    for index, defect in enumerate(predictions.defect_types):
        by_type.setdefault(defect, []).append(index)
    order = [t for t in sorted(by_type) if t != "good"] + (["good"] if "good" in by_type else [])
    rows: list[int] = []
    while len(rows) < GRID_ROWS and any(by_type[t] for t in order):
        for defect in order:
            if by_type[defect] and len(rows) < GRID_ROWS:
                rows.append(by_type[defect].pop(0))
    return rows


def _save(fig: Any, path: Path, *, tight: bool = True) -> Path:
    """``tight``: lay the axes out by a first draw (the mosaic sets its margins itself)."""
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
