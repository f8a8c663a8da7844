"""Altair charts for the dashboard pages (pure functions of frames and arrays)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from inspection.dashboard.overview import Drift
from inspection.dashboard.thresholds import LabelledScores, Tradeoff

GOOD_COLOR = "#2e7d32"
DEFECT_COLOR = "#c62828"
THRESHOLD_COLOR = "#263238"
HEIGHT = 240


def volume_chart(frame: pd.DataFrame, period: str) -> alt.Chart:
    """Stacked bars: inspections per bucket, coloured by station."""
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X(
                "bucket:T",
                title=None,
                timeUnit="yearmonthdatehours" if period == "hour" else "yearmonthdate",
            ),
            y=alt.Y("sum(total):Q", title=f"inspections per {period}"),
            color=alt.Color("station_id:N", title="station"),
            tooltip=["bucket:T", "station_id:N", "product:N", "total:Q", "ng:Q"],
        )
        .properties(height=HEIGHT)
    )


def ng_rate_chart(frame: pd.DataFrame) -> alt.Chart:
    """NG rate per bucket, one line per product (frame from ``overview.per_product``)."""
    return (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("bucket:T", title=None),
            y=alt.Y("ng_rate:Q", title="NG rate", axis=alt.Axis(format="%")),
            color=alt.Color("product:N", title="product"),
            tooltip=["bucket:T", "product:N", alt.Tooltip("ng_rate:Q", format=".1%"), "total:Q"],
        )
        .properties(height=HEIGHT)
    )


def mean_score_chart(frame: pd.DataFrame, reference: dict[str, float]) -> alt.LayerChart:
    """Mean production score per bucket and product; dashed rules at the validation good mean."""
    lines = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("bucket:T", title=None),
            y=alt.Y("mean_score:Q", title="mean score", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("product:N", title="product"),
            tooltip=["bucket:T", "product:N", alt.Tooltip("mean_score:Q", format=".3f")],
        )
    )
    rules = pd.DataFrame({"product": list(reference), "mean_score": list(reference.values())})
    rule = (
        alt.Chart(rules)
        .mark_rule(strokeDash=[6, 4])
        .encode(y="mean_score:Q", color="product:N", tooltip=["product:N", "mean_score:Q"])
    )
    return (lines + rule).properties(height=HEIGHT)


def drift_chart(drift: Drift) -> alt.Chart:
    """Production vs reference score histograms (fractions per bin)."""
    edges = np.linspace(0, 1, len(drift.production) + 1)
    rows = [
        {"score": f"{edges[i]:.1f}–{edges[i + 1]:.1f}", "fraction": float(v), "set": "production"}
        for i, v in enumerate(drift.production)
    ]
    if drift.reference is not None:
        rows += [
            {
                "score": f"{edges[i]:.1f}–{edges[i + 1]:.1f}",
                "fraction": float(v),
                "set": "held-out good",
            }
            for i, v in enumerate(drift.reference)
        ]
    top = max([r["fraction"] for r in rows] + [0.05])
    return (
        alt.Chart(pd.DataFrame(rows))
        .mark_bar()
        .encode(
            x=alt.X("score:N", title="score", sort=None),
            xOffset="set:N",
            y=alt.Y(
                "fraction:Q",
                title="share of parts",
                scale=alt.Scale(domain=[0, min(1.0, top * 1.1)]),
                axis=alt.Axis(format=".0%", tickCount=5),
            ),
            color=alt.Color("set:N", title=None, legend=alt.Legend(orient="top")),
            tooltip=["set:N", "score:N", alt.Tooltip("fraction:Q", format=".1%")],
        )
        .properties(height=HEIGHT)
    )


def score_histogram_chart(data: LabelledScores, threshold: float) -> alt.LayerChart:
    """Overlaid score histograms of good and defective parts with the threshold as a rule."""
    frame = pd.DataFrame(
        {
            "score": data.scores,
            "class": np.where(data.labels == 1, "defective", "good"),
        }
    )
    bars = (
        alt.Chart(frame)
        .mark_bar(opacity=0.6, binSpacing=0)
        .encode(
            x=alt.X("score:Q", bin=alt.Bin(extent=[0, 1], step=0.025), title="anomaly score"),
            y=alt.Y("count():Q", stack=None, title="parts"),
            color=alt.Color(
                "class:N",
                scale=alt.Scale(domain=["good", "defective"], range=[GOOD_COLOR, DEFECT_COLOR]),
                legend=alt.Legend(orient="top", title=None),
            ),
            tooltip=["class:N", alt.Tooltip("count():Q", title="parts")],
        )
    )
    return (bars + _threshold_rule(threshold, "x")).properties(height=HEIGHT)


def _threshold_rule(threshold: float, axis: str) -> alt.Chart:
    rule = alt.Chart(pd.DataFrame({"threshold": [threshold]})).mark_rule(
        color=THRESHOLD_COLOR, strokeWidth=2, strokeDash=[5, 3]
    )
    return rule.encode(**{axis: "threshold:Q"})


def roc_chart(roc: dict, at: Tradeoff) -> alt.LayerChart:
    """ROC curve with the operating point of the current threshold."""
    curve = pd.DataFrame({"false alarm rate": roc["fpr"], "detection rate": roc["tpr"]})
    point = pd.DataFrame(
        {"false alarm rate": [at.false_alarm_rate], "detection rate": [1 - at.miss_rate]}
    )
    return _curve_with_point(
        curve, point, "false alarm rate", "detection rate", f"ROC (AUC {roc['auc']:.3f})"
    )


def pr_chart(pr: dict, at: Tradeoff) -> alt.LayerChart:
    """Precision-recall curve with the operating point of the current threshold."""
    curve = pd.DataFrame({"recall": pr["recall"], "precision": pr["precision"]})
    point = pd.DataFrame({"recall": [at.recall], "precision": [at.precision]})
    return _curve_with_point(
        curve, point, "recall", "precision", f"Precision–recall (AP {pr['ap']:.3f})"
    )


def _curve_with_point(
    curve: pd.DataFrame, point: pd.DataFrame, x: str, y: str, title: str
) -> alt.LayerChart:
    scale = alt.Scale(domain=[0, 1])
    line = (
        alt.Chart(curve)
        .mark_line(interpolate="step-after", color="#1565c0")
        .encode(x=alt.X(f"{x}:Q", scale=scale), y=alt.Y(f"{y}:Q", scale=scale))
    )
    dot = (
        alt.Chart(point.dropna())
        .mark_point(size=120, filled=True, color=THRESHOLD_COLOR)
        .encode(
            x=f"{x}:Q",
            y=f"{y}:Q",
            tooltip=[alt.Tooltip(f"{x}:Q", format=".3f"), alt.Tooltip(f"{y}:Q", format=".3f")],
        )
    )
    return (line + dot).properties(height=HEIGHT, title=title)


def operating_curve_chart(curve: pd.DataFrame, at: pd.DataFrame) -> alt.LayerChart:
    """Miss rate of each defect kind against the reject rate of good parts, over every
    threshold (``thresholds.curve_frame``); ``at`` marks the chosen threshold's point per kind."""
    axes = {
        "x": alt.X(
            "false_reject_rate:Q",
            title="good parts rejected",
            scale=alt.Scale(domain=[0, 1]),
            axis=alt.Axis(format="%"),
        ),
        "y": alt.Y(
            "miss_rate:Q",
            title="defects missed",
            scale=alt.Scale(domain=[0, 1]),
            axis=alt.Axis(format="%"),
        ),
        "color": alt.Color("kind:N", title="defect kind", legend=alt.Legend(orient="top")),
    }
    tooltip = [
        alt.Tooltip("threshold:Q", format=".4f"),
        alt.Tooltip("false_reject_rate:Q", title="good rejected", format=".1%"),
        "kind:N",
        alt.Tooltip("miss_rate:Q", title="missed", format=".1%"),
    ]
    lines = (
        alt.Chart(curve)
        .mark_line(interpolate="step-after")
        .encode(**axes, tooltip=tooltip, order="threshold:Q")
    )
    dots = alt.Chart(at).mark_point(size=110, filled=True).encode(**axes, tooltip=tooltip)
    return (lines + dots).properties(height=HEIGHT, title="Operating curve per defect kind")
