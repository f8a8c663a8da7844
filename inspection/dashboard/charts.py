"""Vega-Lite chart specs for the dashboard pages, as plain dicts: Altair would cost a page's
first visit over a second of imports for the same JSON. Frames go in ``datasets``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from inspection.dashboard.overview import Drift
from inspection.dashboard.thresholds import LabelledScores, Tradeoff

GOOD_COLOR = "#2e7d32"
DEFECT_COLOR = "#c62828"
THRESHOLD_COLOR = "#263238"
HEIGHT = 240
TYPES = {"T": "temporal", "Q": "quantitative", "N": "nominal"}
UNIT = {"domain": [0, 1]}
HISTOGRAM_BINS = 40
CANVAS = {"embedOptions": {"renderer": "canvas"}}
"""One node per chart instead of SVG's node per tick, label and bar."""

Spec = dict[str, Any]


def field(shorthand: str, **options: Any) -> dict[str, Any]:
    """An encoding from Altair-style shorthand: ``field("ng_rate:Q", title="NG rate")``."""
    name, kind = shorthand.rsplit(":", 1)
    return {"field": name, "type": TYPES[kind], **options}


def chart(data: str, mark: str | dict, encoding: dict[str, Any]) -> Spec:
    """One layer: ``mark`` drawn from the dataset named ``data``."""
    return {"data": {"name": data}, "mark": mark, "encoding": encoding}


def spec(datasets: dict[str, pd.DataFrame], *layers: Spec, **top: Any) -> Spec:
    """A whole chart: its datasets and layers, ``HEIGHT`` unless ``top`` says, on a canvas."""
    body = layers[0] if len(layers) == 1 else {"layer": list(layers)}
    return {"height": HEIGHT, **top, "datasets": datasets, **body, "usermeta": CANVAS}


def volume_chart(frame: pd.DataFrame, period: str) -> Spec:
    """Stacked bars: inspections per bucket, coloured by station."""
    unit = "yearmonthdatehours" if period == "hour" else "yearmonthdate"
    tooltip = [field("bucket:T"), *map(field, ("station_id:N", "product:N", "total:Q", "ng:Q"))]
    encoding = {
        "x": field("bucket:T", title=None, timeUnit=unit),
        "y": field("total:Q", aggregate="sum", title=f"inspections per {period}"),
        "color": field("station_id:N", title="station"),
        "tooltip": tooltip,
    }
    return spec({"volume": frame}, chart("volume", "bar", encoding))


def _per_product(data: str, y: dict[str, Any], tooltip: list[dict[str, Any]]) -> Spec:
    """One line per product over the buckets: ``y`` the value, ``tooltip`` what it adds."""
    encoding = {"x": field("bucket:T", title=None), "y": y}
    encoding["color"] = field("product:N", title="product")
    encoding["tooltip"] = [field("bucket:T"), field("product:N"), *tooltip]
    return chart(data, {"type": "line", "point": True}, encoding)


def ng_rate_chart(frame: pd.DataFrame) -> Spec:
    """NG rate per bucket, one line per product (frame from ``overview.per_product``)."""
    y = field("ng_rate:Q", title="NG rate", axis={"format": "%"})
    tooltip = [field("ng_rate:Q", format=".1%"), field("total:Q")]
    return spec({"rate": frame}, _per_product("rate", y, tooltip))


def mean_score_chart(frame: pd.DataFrame, reference: dict[str, float]) -> Spec:
    """Mean production score per bucket and product; dashed rules at the validation good mean."""
    rules = pd.DataFrame({"product": list(reference), "mean_score": list(reference.values())})
    y = field("mean_score:Q", title="mean score", scale=UNIT)
    lines = _per_product("scores", y, [field("mean_score:Q", format=".3f")])
    tooltip = [field("product:N"), field("mean_score:Q")]
    encoding = {"y": field("mean_score:Q"), "color": field("product:N"), "tooltip": tooltip}
    rule = chart("reference", {"type": "rule", "strokeDash": [6, 4]}, encoding)
    return spec({"scores": frame, "reference": rules}, lines, rule)


def drift_chart(drift: Drift) -> Spec:
    """Production vs reference score histograms (fractions per bin)."""
    edges = np.linspace(0, 1, len(drift.production) + 1)
    labels = [f"{edges[i]:.1f}–{edges[i + 1]:.1f}" for i in range(len(drift.production))]
    sets = {"production": drift.production, "held-out good": drift.reference}
    frame = pd.DataFrame(
        [
            {"score": label, "fraction": float(value), "set": name}
            for name, values in sets.items()
            if values is not None
            for label, value in zip(labels, values, strict=True)
        ]
    )
    top = max(float(frame["fraction"].max()), 0.05)
    scale, axis = {"domain": [0, min(1.0, top * 1.1)]}, {"format": ".0%", "tickCount": 5}
    encoding = {
        "x": field("score:N", title="score", sort=None),
        "xOffset": field("set:N"),
        "y": field("fraction:Q", title="share of parts", scale=scale, axis=axis),
        "color": field("set:N", title=None, legend={"orient": "top"}),
        "tooltip": [field("set:N"), field("score:N"), field("fraction:Q", format=".1%")],
    }
    return spec({"drift": frame}, chart("drift", "bar", encoding))


def score_histogram_chart(data: LabelledScores, threshold: float) -> Spec:
    """Overlaid score histograms of good and defective parts (binned here) with the threshold."""
    edges = np.linspace(0, 1, HISTOGRAM_BINS + 1)
    classes = {"good": data.labels == 0, "defective": data.labels == 1}
    frame = pd.DataFrame(
        [
            {"start": edges[i], "end": edges[i + 1], "class": name, "parts": int(count)}
            for name, chosen in classes.items()
            for i, count in enumerate(np.histogram(data.scores[chosen], bins=edges)[0])
            if count
        ],
        columns=["start", "end", "class", "parts"],
    )
    colours = {"domain": ["good", "defective"], "range": [GOOD_COLOR, DEFECT_COLOR]}
    bars = chart(
        "scores",
        {"type": "bar", "opacity": 0.6, "binSpacing": 0},
        {
            "x": field("start:Q", bin={"binned": True, "step": 1 / HISTOGRAM_BINS},
                       scale=UNIT, title="anomaly score"),
            "x2": {"field": "end"},
            "y": field("parts:Q", stack=None, title="parts"),
            "color": field("class:N", scale=colours, legend={"orient": "top", "title": None}),
            "tooltip": [field("class:N"), field("start:Q", title="from", format=".3f"),
                        field("parts:Q")],
        },
    )  # fmt: skip
    rule = pd.DataFrame({"threshold": [threshold]})
    return spec({"scores": frame, "threshold": rule}, bars, _threshold_rule("x"))


def step_corners(frame: pd.DataFrame, x: str, y: str, by: str | None = None) -> pd.DataFrame:
    """``frame`` (per ``by`` group) without the points inside a horizontal or vertical run: a
    step line through the corners left draws the same path with far fewer rows."""
    if by is not None:
        groups = [step_corners(group, x, y) for _, group in frame.groupby(by, sort=False)]
        return pd.concat(groups) if groups else frame
    xs, ys = frame[x].to_numpy(), frame[y].to_numpy()
    moved = np.r_[True, (xs[1:] != xs[:-1]) | (ys[1:] != ys[:-1])]
    frame, xs, ys = frame[moved], xs[moved], ys[moved]
    if len(frame) < 3:
        return frame
    inside = ((xs[1:-1] == xs[:-2]) & (xs[1:-1] == xs[2:])) | (
        (ys[1:-1] == ys[:-2]) & (ys[1:-1] == ys[2:])
    )
    return frame[np.r_[True, ~inside, True]]


def _threshold_rule(axis: str) -> Spec:
    mark = {"type": "rule", "color": THRESHOLD_COLOR, "strokeWidth": 2, "strokeDash": [5, 3]}
    return chart("threshold", mark, {axis: field("threshold:Q")})


def roc_chart(roc: dict, at: Tradeoff) -> Spec:
    """ROC curve with the operating point of the current threshold."""
    curve = pd.DataFrame({"false alarm rate": roc["fpr"], "detection rate": roc["tpr"]})
    point = pd.DataFrame(
        {"false alarm rate": [at.false_alarm_rate], "detection rate": [1 - at.miss_rate]}
    )
    return _curve_with_point(
        curve, point, "false alarm rate", "detection rate", f"ROC (AUC {roc['auc']:.3f})"
    )


def pr_chart(pr: dict, at: Tradeoff) -> Spec:
    """Precision-recall curve with the operating point of the current threshold."""
    curve = pd.DataFrame({"recall": pr["recall"], "precision": pr["precision"]})
    point = pd.DataFrame({"recall": [at.recall], "precision": [at.precision]})
    return _curve_with_point(
        curve, point, "recall", "precision", f"Precision–recall (AP {pr['ap']:.3f})"
    )


def _curve_with_point(curve: pd.DataFrame, point: pd.DataFrame, x: str, y: str, title: str) -> Spec:
    line = chart(
        "curve",
        {"type": "line", "interpolate": "step-after", "color": "#1565c0"},
        {"x": field(f"{x}:Q", scale=UNIT), "y": field(f"{y}:Q", scale=UNIT)},
    )
    dot = chart(
        "point",
        {"type": "point", "size": 120, "filled": True, "color": THRESHOLD_COLOR},
        {
            "x": field(f"{x}:Q"),
            "y": field(f"{y}:Q"),
            "tooltip": [field(f"{x}:Q", format=".3f"), field(f"{y}:Q", format=".3f")],
        },
    )
    corners = step_corners(curve, x, y)
    return spec({"curve": corners, "point": point.dropna()}, line, dot, title=title)


def operating_curve_chart(curve: pd.DataFrame, at: pd.DataFrame) -> Spec:
    """Miss rate per defect kind against good parts rejected; ``at`` marks the chosen point."""
    percent = {"format": "%"}
    axes = {
        "x": field("false_reject_rate:Q", title="good parts rejected", scale=UNIT, axis=percent),
        "y": field("miss_rate:Q", title="defects missed", scale=UNIT, axis=percent),
        "color": field("kind:N", title="defect kind", legend={"orient": "top"}),
        "tooltip": [
            field("threshold:Q", format=".4f"),
            field("false_reject_rate:Q", title="good rejected", format=".1%"),
            field("kind:N"),
            field("miss_rate:Q", title="missed", format=".1%"),
        ],
    }
    lines = chart(
        "curve",
        {"type": "line", "interpolate": "step-after"},
        {**axes, "order": field("threshold:Q")},
    )
    dots = chart("at", {"type": "point", "size": 110, "filled": True}, axes)
    corners = step_corners(curve, "false_reject_rate", "miss_rate", by="kind")
    return spec({"curve": corners, "at": at}, lines, dots, title="Operating curve per defect kind")
