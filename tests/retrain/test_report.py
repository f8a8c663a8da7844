from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspection.core.retrain_report import read_retrain_report
from inspection.retrain.assemble import EvalItem, RunData
from inspection.retrain.gate import GatePolicy, decide
from inspection.retrain.report import write_report
from inspection.retrain.scoring import BundleEvaluation

LABELS = np.array([0, 0, 0, 1, 1, 1])


def _evaluation(role: str, scores: list[float], latency: float) -> BundleEvaluation:
    from inspection.core.metrics import compute_metrics, judge_all
    from inspection.core.verdict import Segmentation

    array = np.asarray(scores, dtype=np.float32)
    maps = np.repeat(array[:, None, None], 8, axis=1).repeat(8, axis=2)
    judged = judge_all(array, maps, 0.5, Segmentation.global_threshold(0.5))
    metrics = compute_metrics(
        array, LABELS, maps, np.zeros(maps.shape, bool), ["good"] * 3 + ["crack"] * 3, judged,
        image_threshold=0.5, segmentation="global",
    )  # fmt: skip
    return BundleEvaluation(
        role, f"{role}-int8", f"brick/{role}", 0.5, array, np.full(6, latency), metrics
    )


def test_report_files_and_the_dashboard_can_read_them(tmp_path: Path) -> None:
    from inspection.dashboard.retraining import report_runs

    evaluations = {
        "champion": _evaluation("champion", [0.1, 0.6, 0.3, 0.4, 0.7, 0.9], 10.0),
        "challenger": _evaluation("challenger", [0.1, 0.2, 0.3, 0.6, 0.7, 0.9], 11.0),
    }
    policy = GatePolicy()
    decision = decide(
        evaluations["champion"].gate_metrics(), evaluations["challenger"].gate_metrics(), policy
    )
    items = tuple(
        EvalItem(tmp_path / f"{i}.png", int(label), "crack" if label else "good", None, "test")
        for i, label in enumerate(LABELS)
    )
    data = RunData(tmp_path / "dataset", items, 10, ("a1",), (), (), {"b7": "blob not found"})
    out = tmp_path / "reports" / "retrain" / "brick" / "20250101T000000Z"
    run = {"product": "brick", "run": out.name, "actor": "qa", "started_at": "t0",
           "finished_at": "t1", "challenger_bundle": "challenger-int8",
           "champion_bundle": "champion-int8"}  # fmt: skip
    write_report(out, run=run, decision=decision, policy=policy, evaluations=evaluations, data=data)

    report = read_retrain_report(out / "report.json")
    assert (report.decision, report.promote) == ("promote", True)
    assert report.champion is not None
    assert report.champion.metrics["image_auroc"] == pytest.approx(8 / 9)
    assert report.challenger.metrics["image_auroc"] == 1.0
    assert report.data["train_reviewed_good"] == 1
    assert "- `b7`: blob not found" in (out / "report.md").read_text(encoding="utf-8")
    markdown = (out / "report.md").read_text()
    assert "| image_auroc | 0.8889 | 1.0000 | +0.1111 |" in markdown
    assert "| latency_p50_ms | 10.00 | 11.00 | +1.00 |" in markdown
    for figure in ("roc.png", "scores.png"):
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"

    [seen] = report_runs(tmp_path / "reports", "brick")
    assert (seen.decision, seen.champion, seen.challenger) == (
        "promoted",
        "champion-int8",
        "challenger-int8",
    )
    assert seen.challenger_metrics["image_auroc"] == 1.0
