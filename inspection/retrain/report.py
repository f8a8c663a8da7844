"""The retrain report: ``report.json`` (``core.retrain_report.RetrainReport``, read by the
dashboard), ``report.md``, ``roc.png`` and ``scores.png`` in the run's report folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from inspection.core.config import to_mapping
from inspection.core.metrics import image_auroc
from inspection.core.retrain_report import ModelEvaluation, RetrainReport, write_retrain_report
from inspection.retrain.assemble import RunData
from inspection.retrain.gate import Decision, GatePolicy
from inspection.retrain.scoring import BundleEvaluation

log = logging.getLogger(__name__)
TABLE_KEYS = (
    "image_auroc", "image_f1", "pixel_auroc", "aupro", "pixel_f1", "latency_p50_ms",
    "latency_p95_ms",
)  # fmt: skip
COLORS = {"champion": "#1f77b4", "challenger": "#d62728"}


def write_report(
    out_dir: str | Path,
    *,
    run: Mapping[str, Any],
    decision: Decision,
    policy: GatePolicy,
    evaluations: Mapping[str, BundleEvaluation],
    data: RunData,
) -> Path:
    """Write the report files; returns the path of ``report.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = np.asarray([item.label for item in data.eval_items], dtype=np.int64)
    figures = {"roc": "roc.png", "scores": "scores.png"}
    _plot_roc(out_dir / figures["roc"], evaluations, labels)
    _plot_scores(out_dir / figures["scores"], evaluations, labels)
    champion = evaluations.get("champion")
    report = RetrainReport(
        run=dict(run), finished_at=str(run.get("finished_at") or ""),
        decision="promote" if decision.promote else "keep", reasons=tuple(decision.reasons),
        challenger=_model_entry(evaluations["challenger"]),
        champion=None if champion is None else _model_entry(champion),
        policy=to_mapping(policy), data=data.summary(), figures=figures,
    )  # fmt: skip
    path = write_retrain_report(report, out_dir / "report.json")
    (out_dir / "report.md").write_text(_markdown(report), encoding="utf-8")
    log.info("wrote retrain report %s", path)
    return path


def _model_entry(evaluation: BundleEvaluation) -> ModelEvaluation:
    return ModelEvaluation(
        bundle_id=evaluation.bundle_id, model_version=evaluation.model_version,
        threshold=float(evaluation.threshold), metrics=evaluation.gate_metrics(),
        full_metrics=json.loads(json.dumps(evaluation.metrics.to_mapping(), default=float)),
        scores=tuple(round(float(s), 6) for s in evaluation.scores),
    )  # fmt: skip


def _fmt(value: Any, digits: int = 4) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"


def _markdown(report: RetrainReport) -> str:
    run, data = report.run, report.data
    skipped, left_out = data.get("skipped") or {}, data.get("left_out") or {}
    models = report.sides()
    roles = list(models)
    verdict = "**promoted**" if report.promote else "**kept the champion**"
    lines = [
        f"# Retrain {run['product']} — run {run['run']}",
        "",
        f"Decision: {verdict} (challenger `{run.get('challenger_bundle')}`, champion "
        f"`{run.get('champion_bundle') or 'none'}`), actor `{run['actor']}`, "
        f"{run['started_at']} → {run['finished_at']}; challenger training: "
        f"{run.get('training', 'full')}.",
        "",
        "| metric | " + " | ".join(f"{r} (`{models[r].bundle_id}`)" for r in roles)
        + (" | Δ |" if len(roles) == 2 else " |"),
        "|---|" + "---:|" * (len(roles) + (1 if len(roles) == 2 else 0)),
    ]  # fmt: skip
    for key in TABLE_KEYS:
        values = [models[r].metrics.get(key) for r in roles]
        digits = 2 if key.startswith("latency") else 4
        row = f"| {key} | " + " | ".join(_fmt(v, digits) for v in values)
        if len(roles) == 2:
            delta = None if None in values else values[1] - values[0]
            row += f" | {'–' if delta is None else f'{delta:+.{digits}f}'}"
        lines.append(row + " |")
    lines += ["", "Gate checks:", ""] + [f"- {reason}" for reason in report.reasons]
    lines += [
        "",
        f"Training set: {data['train_original']} original good images + "
        f"{data.get('train_learned_by_update', 0)} learned by train --update + "
        f"{data['train_reviewed_good']} reviewed good; {data['train_labelled_defects']} labelled "
        f"defects ({data['train_reviewed_defect']} reviewed, "
        f"{data['train_reviewed_defect_painted']} of them painted). "
        f"Evaluation set: {data['eval_images']} "
        f"images ({data['eval_test_split']} labelled test split, {data['eval_reviewed_defect']} "
        f"reviewed defects, {data['eval_reviewed_false_alarm']} reviewed false alarms; "
        f"{data['eval_with_pixel_truth']} with pixel ground truth).",
        *_listed(
            f"Left out {len(skipped)} reviewed inspection(s) whose image is missing or unreadable "
            "(the next run tries the reviewed-good ones again):",
            dict(sorted(skipped.items())),
        ),
        *_listed(
            f"Not trained on ({len(left_out)}): learned by the champion or labelled by a "
            "reviewer, left out for the reason given:",
            left_out,
        ),
        "",
        f"INT8 export: image AUROC drop vs FP32 on the training test split = "
        f"{_fmt(run.get('int8_image_auroc_drop'))}.",
        "",
        "![ROC](roc.png)",
        "",
        "![Scores](scores.png)",
        "",
    ]
    return "\n".join(lines)


def _listed(header: str, items: Mapping[str, str]) -> list[str]:
    """``header`` and one ``- `what`: why`` line per item (nothing without items)."""
    if not items:
        return []
    return ["", header, "", *(f"- `{what}`: {why}" for what, why in items.items())]


def _plot_roc(path: Path, evaluations: Mapping[str, BundleEvaluation], labels: np.ndarray) -> None:
    # deferred: matplotlib, sklearn
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    both = 0 < labels.sum() < len(labels)
    for role, evaluation in evaluations.items():
        if not both:
            break
        fpr, tpr, _ = roc_curve(labels, evaluation.scores)
        auc = image_auroc(np.asarray(evaluation.scores), labels)
        label = f"{role} {evaluation.bundle_id} ({auc:.3f})"
        ax.plot(fpr, tpr, color=COLORS.get(role), label=label)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="Image ROC")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _plot_scores(
    path: Path, evaluations: Mapping[str, BundleEvaluation], labels: np.ndarray
) -> None:
    # deferred: matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * len(evaluations), 3.5))
    axes = fig.subplots(1, len(evaluations))
    bins = np.linspace(0, 1, 26)
    for ax, (role, evaluation) in zip(np.atleast_1d(axes), evaluations.items(), strict=True):
        ax.hist(evaluation.scores[labels == 0], bins=bins, alpha=0.6, label="good", color="#2ca02c")
        ax.hist(
            evaluation.scores[labels == 1], bins=bins, alpha=0.6, label="defective", color="#d62728"
        )
        ax.axvline(
            evaluation.threshold, color="black", linestyle="--", linewidth=1, label="threshold"
        )
        ax.set(title=f"{role} {evaluation.bundle_id}", xlabel="normalised score", ylabel="images")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
