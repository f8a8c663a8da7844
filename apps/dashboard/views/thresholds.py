"""Thresholds: per-product score distributions, ROC/PR, live trade-offs and saving a new version."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Literal

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from inspection.core.errors import InspectionError
from inspection.core.readiness import NOT_READY, READY
from inspection.core.signing import signer_label
from inspection.dashboard import app_state, charts, health, panels, thresholds
from inspection.station.certify import certify_product, product_certificate


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.1%}"


def _delta_pct(x: float, y: float) -> str | None:
    return None if math.isnan(x) or math.isnan(y) or abs(x - y) < 1e-12 else f"{x - y:+.1%}"


def curve_point(curve: pd.DataFrame, value: float) -> pd.DataFrame:
    """The operating curve's rows at the slider: per kind, the point of the lowest curve
    threshold at or above ``value`` (rates only change at observed scores)."""
    above = curve[curve["threshold"] >= value]
    rows = above[above["threshold"] == above["threshold"].min()] if len(above) else curve.head(0)
    return rows.assign(threshold=value)


site = app_state.site_key()
board = app_state.dashboard()
st.title("Thresholds")

products = app_state.products(site)
if not products:
    panels.stop_with(
        "No products yet. Train and export a model (`inspection train`, `inspection export`) "
        "or list products under `products:` in the site config."
    )

top = st.columns([2, 2, 3])
product = panels.product_select(products, "th_product", top[0])  # thresholds?product=grass
bundles = board.registry.bundles.bundle_ids(product)
default = thresholds.default_bundle(board.registry, product)
bundle_id = top[1].selectbox(
    "Bundle",
    bundles or ["(none exported)"],
    index=bundles.index(default) if default in bundles else 0,
    key=f"th_bundle_{product}",
)
bundle_id = bundle_id if bundles else None
SOURCES = ["Held-out + audit sample", "Held-out", "Audit sample", "Reviewed (biased)"]
source = top[2].radio("Labelled scores", SOURCES, horizontal=True)

validation = app_state.validation_scores(site, product, bundle_id)
scale = thresholds.bundle_scale(board.registry, product, bundle_id)
audit = app_state.audit_scores(site, product, bundle_id, scale)
unbiased_parts = [p for p in (validation, audit) if p is not None and len(p)]
parts = {
    "Held-out + audit sample": unbiased_parts,
    "Held-out": [validation] if validation is not None else [],
    "Audit sample": [audit],
    "Reviewed (biased)": [app_state.reviewed_scores(site, product)],
}[source]
data = thresholds.combine([p for p in parts if len(p)], source.lower())

if data.biased:
    st.warning(
        "Reviewed parts are a biased sample: reviewers see NG and borderline parts, so the "
        "good ones among them score high and the rates below overstate production's reject "
        "rate. The budget suggestion uses the held-out split and the random audit sample only.",
        icon=":material/warning:",
    )
elif validation is None and not len(audit):
    st.warning(
        f"Bundle `{bundle_id or 'none'}` ships no `validation_scores.json` and no part of the "
        "random audit sample is reviewed yet: review audit-sample parts to measure rates.",
        icon=":material/warning:",
    )
st.caption(
    f"Using {len(data)} labelled parts: {data.n_good} good, {data.n_defect} defective "
    f"({', '.join(p.source for p in parts if len(p)) or 'none'})."
)

current = thresholds.current_threshold_value(board.registry, product, bundle_id)
live_health = app_state.model_health(site, product)
panels.health_alarm(live_health)
slider_key = f"th_value_{product}"
pick_key = f"th_budget_pick_{product}"
st.session_state.setdefault(slider_key, round(current, thresholds.SAVED_DECIMALS))


def _use(value: float, pick: thresholds.BudgetPick | None = None) -> None:
    """Put a suggestion's exact value (the one it quoted) on the slider; ``pick``: the budget
    control's choice, recorded by a save of that value."""
    st.session_state[slider_key] = value
    st.session_state[pick_key] = pick


def _moved_by_hand() -> None:
    st.session_state[pick_key] = None


budget_default = health.operating_point(product, board.site.configs).budget
with st.container(border=True):
    st.markdown(
        "**Operating point.** Set the share of good parts the line may reject (the budget): the "
        "suggestion is the lowest threshold that keeps production's reject rate within it with "
        f"{thresholds.BUDGET_CONFIDENCE:.0%} confidence, chosen on the random audit sample's "
        "good parts this bundle scored on its signed scale (exact one-sided bound, "
        "`core.operating_point`), never on the held-out split model health judges it on. Or "
        "pick the threshold yourself with the slider."
    )
    budget_cols = st.columns([1, 3])
    budget_pct = budget_cols[0].number_input(
        "False-reject budget (%)",
        min_value=0.1,
        max_value=50.0,
        value=round(budget_default * 100, 2),
        step=0.5,
        key=f"th_budget_{product}",
    )
    with budget_cols[1]:
        if (audit.labels == 0).any():
            by_budget, choice = thresholds.suggest_for_budget(audit, budget_pct / 100)
            st.markdown(
                f"Budget {budget_pct:.1f}% → threshold **{by_budget.threshold:.4f}**: good parts "
                f"rejected at most {_pct(choice.false_reject_bound)} with "
                f"{thresholds.BUDGET_CONFIDENCE:.0%} confidence (a bound over the draw of the "
                f"sample, not an in-sample rate), defects missed {_pct(by_budget.miss_rate)}, "
                f"on {audit.n_good} good + {audit.n_defect} defective parts of {audit.source}"
                + (
                    ""
                    if choice.sufficient
                    else f" (only {choice.n_good} good parts: keeping the budget with "
                    f"{thresholds.BUDGET_CONFIDENCE:.0%} confidence needs {choice.n_needed})"
                )
            )
            st.button(
                "Use this budget",
                on_click=_use,
                args=(by_budget.threshold, thresholds.BudgetPick.of(by_budget, choice)),
                key="use_budget",
            )
        else:
            st.caption(
                "A budget needs reviewed good parts of the random audit sample (this bundle, "
                "its signed scale); the held-out split is left for model health to judge."
            )

value = st.slider(
    "Threshold (NG when score ≥ threshold)",
    0.0001,
    0.9999,
    step=0.0001,
    format="%.4f",
    key=slider_key,
    on_change=_moved_by_hand,
)

now = app_state.now_minute()
week_ago = now - timedelta(days=7)
histogram = app_state.production_histogram(site, product, bins=100, since=week_ago)
per_day = app_state.daily_volume(site, product, since=week_ago, until=now)
share_now, ng_now = thresholds.expected_ng(histogram, value, per_day)
share_cur, ng_cur = thresholds.expected_ng(histogram, current, per_day)
at = thresholds.tradeoff(data, value)
at_current = thresholds.tradeoff(data, current)


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
    cols[0], "Good parts rejected", at.false_alarm_rate, at_current.false_alarm_rate, "inverse",
    help=f"False alarms: good parts flagged NG, of {data.n_good} labelled good parts.",
)  # fmt: skip
_rate_metric(
    cols[1], "Defects missed", at.miss_rate, at_current.miss_rate, "inverse",
    help=f"Defective parts passed as OK, of {data.n_defect} labelled defective parts.",
)  # fmt: skip
cols[2].metric(
    "Expected NG per day",
    f"{ng_now:,.0f}",
    None if abs(ng_now - ng_cur) < 0.5 else f"{ng_now - ng_cur:+,.0f}",
    delta_color="off",
    help=f"At the last 7 days' volume ({per_day:,.0f} parts/day) and score distribution.",
)
_rate_metric(cols[3], "NG share of production", share_now, share_cur, "off")
st.caption(
    f"Current threshold: **{current:.4f}** · deltas compare the slider with it · "
    f"{data.n_good} good and {data.n_defect} defective labelled parts."
)
if abs(value - current) > 1e-9:
    what_if = app_state.model_health(site, product, value)
    verdict = READY if what_if.line_ready else f"{NOT_READY}: " + "; ".join(what_if.reasons)
    st.caption(f"At {value:.4f} the live bundle would be {verdict}.")

if data.has_both_classes:
    left, right = st.columns([3, 2])
    curve = app_state.curve_frame(data)
    point = curve_point(curve, value)
    left.vega_lite_chart(charts.operating_curve_chart(curve, point), width="stretch")
    left.vega_lite_chart(charts.score_histogram_chart(data, value), width="stretch")
    tab_roc, tab_pr = right.tabs(["ROC", "Precision–recall"])
    tab_roc.vega_lite_chart(charts.roc_chart(thresholds.roc_curve(data), at), width="stretch")
    tab_pr.vega_lite_chart(charts.pr_chart(thresholds.pr_curve(data), at), width="stretch")

    st.subheader("Suggestions")
    st.caption("Each suggestion quotes its rates at exactly the value it puts on the slider.")
    best = app_state.suggest_max_f1(data)
    left, right = st.columns(2)
    with left:
        st.markdown(
            f"**Best F1** — threshold **{best.threshold:.4f}**: F1 {best.f1:.3f}, "
            f"good parts rejected {_pct(best.false_alarm_rate)}, defects missed "
            f"{_pct(best.miss_rate)}"
        )
        st.button("Use best F1", on_click=_use, args=(best.threshold,), key="use_f1")
    with right:
        target = st.number_input(
            "Target miss rate (%)", 0.0, 50.0, value=1.0, step=0.5, key="th_target"
        )
        pick = app_state.suggest_for_miss_rate(data, target / 100)
        st.markdown(
            f"Highest threshold with misses ≤ {target:.1f}%: **{pick.threshold:.4f}** "
            f"(good parts rejected {_pct(pick.false_alarm_rate)}, defects missed "
            f"{_pct(pick.miss_rate)})"
        )
        st.button("Use target miss rate", on_click=_use, args=(pick.threshold,), key="use_miss")
elif len(data):
    st.vega_lite_chart(charts.score_histogram_chart(data, value), width="stretch")
    st.info("Curves and suggestions need both good and defective labelled parts.")
else:
    st.info(
        "No labelled scores yet: mark inspections in the Review queue (true defect / false "
        "alarm), or export the bundle with its `validation_scores.json`.",
        icon=":material/info:",
    )

admin = app_state.may(app_state.ADMINS)


def _certify() -> None:
    """The live bundle's threshold derived again from its confirmed audit parts (signed)."""
    who = app_state.acting_as(app_state.ADMINS)
    if not who:
        st.session_state["th_cert_message"] = ("error", "Certifying is for a named admin user.")
        return
    try:
        version = certify_product(board.registry, board.store, product, actor=who, since=since)
    except InspectionError as exc:
        st.session_state["th_cert_message"] = ("error", str(exc))
        return
    app_state.invalidate()
    st.session_state["th_cert_message"] = (
        "success",
        f"Certified: threshold version {version.number} = {version.value:.4f} for "
        f"{version.bundle_id}; stations pick it up on their next refresh.",
    )


st.subheader("Certificate")
days = st.number_input(
    "Audit parts of the last N days (0: all)", min_value=0, value=0, step=7, key="th_cert_days"
)
since = app_state.now_minute() - timedelta(days=days) if days else None
try:
    certificate = product_certificate(board.registry, board.store, product, since=since)
except InspectionError as exc:
    st.caption(f"No certificate: {exc}")
else:
    st.markdown(f"**{product}** · live bundle {certificate.describe()}")
    st.caption(
        "The false-reject bound of the live bundle's threshold: its good calibration scores "
        "and the random audit sample's parts reviewers confirmed good (Review queue, *Show: "
        "Audit sample*: blind, oldest first, in whole windows), each weighed by its audit "
        "rate. The bound is an average over calibration sets; the figure beside it is the most "
        "this set's threshold rejects with 95 % probability. *Certify* derives the threshold "
        "again on them without retraining, if the bundle's export gate, per defect kind too, "
        "still passes on its held-out parts; it refuses when NG and OK audit parts were "
        "reviewed unevenly."
    )
    st.button(
        f"Certify {product} from audited parts", disabled=not admin, on_click=_certify,
        key="th_certify",
    )  # fmt: skip
cert_message = st.session_state.pop("th_cert_message", None)
if cert_message:
    (st.success if cert_message[0] == "success" else st.error)(cert_message[1])

st.subheader("Save")
if not admin:
    st.caption("Saving a threshold is for admin users; explore the trade-offs freely.")


def _save() -> None:
    """Runs before the page is drawn again, so everything below shows the saved value."""
    who = app_state.acting_as(app_state.ADMINS)  # checked again: a disabled button is no guard
    if who is None:
        return  # acting_as said why
    if not who:  # open mode: the sidebar name is the only record of who
        st.session_state["th_message"] = (
            "error",
            "Enter your name in the sidebar first: threshold changes record who made them.",
        )
        return
    try:
        version = thresholds.save_threshold(
            board.registry,
            product,
            st.session_state[slider_key],
            actor=who,
            reason=st.session_state.get("th_reason", ""),
            bundle_id=bundle_id,
            picked=st.session_state.get(pick_key),
        )
    except InspectionError as exc:
        st.session_state["th_message"] = ("error", str(exc))
        return
    app_state.invalidate()
    at_budget = "" if version.budget is None else f" (false-reject budget {version.budget:.1%})"
    st.session_state["th_message"] = (
        "success",
        f"Saved threshold version {version.number} = {version.value:.4f}{at_budget} for "
        f"{product}; stations pick it up on their next refresh.",
    )


with st.form("save_threshold", clear_on_submit=True, border=True):
    reason = st.text_input(
        "Why", key="th_reason", placeholder="e.g. too many false alarms on line 2"
    )
    st.form_submit_button(
        f"Save threshold {value:.4f} for {product}",
        type="primary",
        disabled=not admin,
        on_click=_save,
        key="th_save",
    )
message = st.session_state.pop("th_message", None)
if message:
    (st.success if message[0] == "success" else st.error)(message[1])

history = board.registry.journal.threshold_history(product)
if history:
    # A static table, not the data grid: the grid's first mount slows the page.
    recent = len(history) <= 10 or not st.toggle(f"All {len(history)} versions", key="th_all")
    shown = history[-10:] if recent else history
    st.markdown("**History**")
    st.table(
        pd.DataFrame(
            [
                {
                    "version": h.number,
                    "value": f"{h.value:.4f}",
                    "budget": "" if h.budget is None else f"{h.budget:.1%}",
                    "who": h.actor,
                    "when": h.created_at[:16].replace("T", " "),
                    "why": h.reason,
                    "bundle": h.bundle_id or "",
                    "signed by": signer_label(board.registry.root, h.key_id),
                }
                for h in reversed(shown)
            ]
        ),
        hide_index=True,
    )
