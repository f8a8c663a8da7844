"""Report figures (matplotlib, Agg backend): ROC, score histogram, example grid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve

from inspection.core.metrics import EvaluationMetrics
from inspection.training.samples import Predictions, load_image

GRID_ROWS = 8


def save_plots(
    out_dir: Path,
    predictions: Predictions,
    metrics: EvaluationMetrics,
    masks: Callable[[list[int]], np.ndarray | None],
) -> list[Path]:
    """Write roc.png, score_histogram.png and examples.png into ``out_dir``; ``masks(rows)``:
    the judged (len(rows), H, W) masks the station would draw of those images, or ``None``
    when unknown."""
    return [
        plot_roc(out_dir / "roc.png", predictions, metrics),
        plot_histogram(out_dir / "score_histogram.png", predictions, metrics.image_threshold),
        plot_examples(out_dir / "examples.png", predictions, masks),
    ]


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


def plot_histogram(path: Path, predictions: Predictions, threshold: float | None) -> Path:
    """Raw image scores of good vs defective test images, with the threshold."""
    fig, ax = plt.subplots(figsize=(6, 4))
    scores, labels = predictions.scores, predictions.labels
    bins = np.histogram_bin_edges(scores, bins=20)
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label="good", color="tab:green")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label="defective", color="tab:red")
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set(xlabel="raw image anomaly score", ylabel="images", title="Score distribution")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_examples(
    path: Path, predictions: Predictions, masks: Callable[[list[int]], np.ndarray | None]
) -> Path:
    """Rows of image | anomaly map | judged mask (the station's verdict rule, ``masks(rows)``;
    blank when unknown) | ground truth, defects first."""
    rows = _example_rows(predictions)
    judged = masks(rows)
    fig, axes = plt.subplots(len(rows), 4, figsize=(8, 2.1 * len(rows)), squeeze=False)
    vmin, vmax = float(predictions.maps.min()), float(predictions.maps.max())
    size = predictions.maps.shape[1:]
    for number, (row, index) in enumerate(zip(axes, rows, strict=True)):
        anomaly_map = predictions.maps[index]
        panels = [
            load_image(Path(predictions.paths[index]), size, predictions.bits),
            anomaly_map,
            judged[number] if judged is not None else np.zeros(size, bool),
            predictions.gt_masks[index],
        ]
        for ax, panel, kwargs in zip(
            row,
            panels,
            [{}, {"cmap": "jet", "vmin": vmin, "vmax": vmax}, {"cmap": "gray"}, {"cmap": "gray"}],
            strict=True,
        ):
            ax.imshow(panel, **kwargs)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(
            f"{predictions.defect_types[index]}\n{predictions.scores[index]:.3g}", fontsize=8
        )
    for ax, title in zip(
        axes[0], ["image", "anomaly map", "predicted mask", "ground truth"], strict=True
    ):
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


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


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
