"""Thresholds: per-product score distributions, ROC/PR, live trade-offs and saving a new version."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Literal

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from inspection.core.errors import InspectionError
from inspection.dashboard import app_state, charts, thresholds

site = app_state.site_key()
board = app_state.dashboard()
st.title("Thresholds")

products = app_state.products(site)
if not products:
    st.info(
        "No products yet. Train and export a model (`inspection train`, `inspection export`) "
        "or list products under `products:` in the site config.",
        icon=":material/info:",
    )
    st.stop()

top = st.columns([2, 2, 3])
product = top[0].selectbox("Product", products, key="th_product")
bundles = board.registry.bundle_ids(product)
default = thresholds.default_bundle(board.registry, product)
bundle_id = top[1].selectbox(
    "Bundle",
    bundles or ["(none exported)"],
    index=bundles.index(default) if default in bundles else 0,
    key=f"th_bundle_{product}",
)
bundle_id = bundle_id if bundles else None
source = top[2].radio(
    "Labelled scores", ["Validation + reviewed", "Validation", "Reviewed"], horizontal=True
)

validation = app_state.validation_scores(site, product, bundle_id)
reviewed = app_state.reviewed_scores(site, product)
parts = []
if source != "Reviewed" and validation is not None:
    parts.append(validation)
if source != "Validation":
    parts.append(reviewed)
data = thresholds.combine([p for p in parts if len(p)], source.lower())

if validation is None:
    st.warning(
        f"Bundle `{bundle_id or 'none'}` ships no `validation_scores.json`, so only reviewed "
        f"results are used ({reviewed.n_defect} true defects, {reviewed.n_good} good / false "
        "alarms). Review more parts to sharpen the curves.",
        icon=":material/warning:",
    )
st.caption(
    f"Using {len(data)} labelled parts: {data.n_good} good, {data.n_defect} defective "
    f"({', '.join(p.source for p in parts if len(p)) or 'none'})."
)

current = thresholds.current_threshold_value(board.registry, product, bundle_id)
slider_key = f"th_value_{product}"
st.session_state.setdefault(slider_key, round(current, 2))


def _use(value: float) -> None:
    st.session_state[slider_key] = round(min(max(value, 0.01), 0.99), 2)


value = st.slider("Threshold (NG when score ≥ threshold)", 0.01, 0.99, step=0.01, key=slider_key)

now = app_state.now_minute()
week_ago = now - timedelta(days=7)
histogram = app_state.production_histogram(site, product, week_ago)
per_day = app_state.daily_volume(site, product, week_ago, now)
share_now, ng_now = thresholds.expected_ng(histogram, value, per_day)
share_cur, ng_cur = thresholds.expected_ng(histogram, current, per_day)
at = thresholds.tradeoff(data, value)
at_current = thresholds.tradeoff(data, current)


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.1%}"


def _delta_pct(x: float, y: float) -> str | None:
    return None if math.isnan(x) or math.isnan(y) or abs(x - y) < 1e-12 else f"{x - y:+.1%}"


def _rate_metric(
    column: DeltaGenerator,
    label: str,
    at_slider: float,
    at_current: float,
    colour: Literal["inverse", "off"],
    help: str | None = None,
) -> None:
    """A rate at the slider's threshold, its change from the current threshold as the delta."""
    column.metric(
        label, _pct(at_slider), _delta_pct(at_slider, at_current), delta_color=colour, help=help
    )


cols = st.columns(4)
_rate_metric(
    cols[0], "False-alarm rate", at.false_alarm_rate, at_current.false_alarm_rate, "inverse",
    help="Good parts flagged NG, among labelled good parts.",
)  # fmt: skip
_rate_metric(
    cols[1], "Miss rate", at.miss_rate, at_current.miss_rate, "inverse",
    help="Defective parts passed as OK, among labelled defective parts.",
)  # fmt: skip
cols[2].metric(
    "Expected NG per day",
    f"{ng_now:,.0f}",
    None if abs(ng_now - ng_cur) < 0.5 else f"{ng_now - ng_cur:+,.0f}",
    delta_color="off",
    help=f"At the last 7 days' volume ({per_day:,.0f} parts/day) and score distribution.",
)
_rate_metric(cols[3], "NG share of production", share_now, share_cur, "off")
st.caption(f"Current threshold: **{current:.2f}** · deltas compare the slider with it.")

if data.has_both_classes:
    left, right = st.columns([3, 2])
    left.altair_chart(charts.score_histogram_chart(data, value), use_container_width=True)
    tab_roc, tab_pr = right.tabs(["ROC", "Precision–recall"])
    tab_roc.altair_chart(charts.roc_chart(thresholds.roc_curve(data), at), use_container_width=True)
    tab_pr.altair_chart(charts.pr_chart(thresholds.pr_curve(data), at), use_container_width=True)

    st.subheader("Suggestions")
    best = thresholds.suggest_max_f1(data)
    left, right = st.columns(2)
    with left:
        st.markdown(
            f"**Best F1** — threshold **{best.threshold:.2f}**: F1 {best.f1:.3f}, "
            f"false alarms {_pct(best.false_alarm_rate)}, misses {_pct(best.miss_rate)}"
        )
        st.button("Use best F1", on_click=_use, args=(best.threshold,), key="use_f1")
    with right:
        target = st.number_input(
            "Target miss rate (%)", 0.0, 50.0, value=1.0, step=0.5, key="th_target"
        )
        pick = thresholds.suggest_for_miss_rate(data, target / 100)
        st.markdown(
            f"Highest threshold with misses ≤ {target:.1f}%: **{pick.threshold:.2f}** "
            f"(false alarms {_pct(pick.false_alarm_rate)}, misses {_pct(pick.miss_rate)})"
        )
        st.button("Use target miss rate", on_click=_use, args=(pick.threshold,), key="use_miss")
elif len(data):
    st.altair_chart(charts.score_histogram_chart(data, value), width="stretch")
    st.info("Curves and suggestions need both good and defective labelled parts.")
else:
    st.info(
        "No labelled scores yet: mark inspections in the Review queue (true defect / false "
        "alarm), or export the bundle with its `validation_scores.json`.",
        icon=":material/info:",
    )

st.subheader("Save")
admin = app_state.may(app_state.ADMINS)
if not admin:
    st.caption("Saving a threshold is for admin users; explore the trade-offs freely.")
with st.form("save_threshold", clear_on_submit=True, border=True):
    reason = st.text_input(
        "Why", key="th_reason", placeholder="e.g. too many false alarms on line 2"
    )
    submitted = st.form_submit_button(
        f"Save threshold {value:.2f} for {product}", type="primary", disabled=not admin
    )
if submitted:
    who = app_state.acting_as(app_state.ADMINS)  # checked again: a disabled button is no guard
    if who is None:
        pass  # acting_as said why
    elif not who:
        st.error("Enter your name in the sidebar first: threshold changes record who made them.")
    else:
        try:
            version = thresholds.save_threshold(
                board.registry, product, value, actor=who, reason=reason, bundle_id=bundle_id
            )
        except InspectionError as exc:
            st.error(str(exc))
        else:
            app_state.invalidate()
            st.success(
                f"Saved threshold version {version.number} = {version.value:.2f} for {product}; "
                "stations pick it up on their next refresh."
            )

history = board.registry.threshold_history(product)
if history:
    st.markdown("**History**")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "version": h.number,
                    "value": h.value,
                    "who": h.actor,
                    "when": h.created_at,
                    "why": h.reason,
                    "bundle": h.bundle_id or "",
                }
                for h in reversed(history)
            ]
        ),
        hide_index=True,
        width="stretch",
    )
