"""Models: versions per product with FP32 vs INT8 metrics, the live bundle, promote and roll back."""

from __future__ import annotations

import streamlit as st

from inspection.core.errors import InspectionError
from inspection.dashboard import app_state, models, panels

# The bundle table's columns that are not figures (a comment: Streamlit's magic would render a
# bare string under the assignment on the page).
TEXT_COLUMNS = ("live", "version", "bundle", "precision", "model", "created", "golden", "problem")

site = app_state.site_key()
board = app_state.dashboard()
st.title("Models")

products = app_state.model_products(site)
if not products:
    panels.stop_with(
        "The registry has no models yet. Train one with `inspection train --product <name>` "
        "and export bundles with `inspection export`; they appear here with their metrics."
    )

product = panels.product_select(products, "md_product")  # models?product=grass
live = app_state.live_state(site, product)
if live is None:
    st.warning(f"No bundle of {product} is live yet: promote one below.", icon=":material/warning:")
else:
    st.markdown(
        f"Live: **`{live.bundle_id}`** since {live.since} by {live.actor} — _{live.reason}_"
    )
    item = app_state.model_health(site, product)
    panels.health_alarm(item)
    st.subheader("Live bundle by defect kind")
    panels.kind_table(item)

table = app_state.bundle_table(site, product)
figures = [c for c in table.columns if c not in TEXT_COLUMNS]
number = st.column_config.NumberColumn
columns = {c: number(c, format="%d" if models.is_count(c) else "%.3f") for c in figures}
panels.table(table, {"live": st.column_config.CheckboxColumn("live"), **columns})

versions = app_state.exported_versions(site, product)
if versions:
    st.subheader("Precision comparison")
    live_version = live.bundle_id.split("-", 1)[0] if live else None
    version = st.selectbox(
        "Version",
        versions,
        index=versions.index(live_version) if live_version in versions else 0,
        key=f"md_version_{product}",
        help="Versions with exported bundles; the live one first selected.",
    )
    comparison = app_state.precision_comparison(site, product, version)
    st.dataframe(models.format_comparison(comparison), width="stretch")

st.subheader("Station speed and golden check: precision chosen by measurement")
panels.table(
    app_state.tuning_frame(site, product),
    {
        "served": st.column_config.CheckboxColumn("served"),
        "p50_ms": number("p50", format="%.1f ms"),
        "p95_ms": number("p95", format="%.1f ms"),
        "img_per_s": number("img/s", format="%.0f"),
        "golden_drift": number(
            "golden drift",
            format="%.4f",
            help="Worst drift of the bundle's golden outputs on that CPU (normalised units).",
        ),
    },
    empty="No station has measured this product's bundles yet: stations do it on load when "
    "the live model has several gated precisions, or run `inspection station tune`.",
)

st.subheader("Golden check at load, per station CPU: passed, re-calibrated or refused")
panels.table(
    app_state.golden_outcome_frame(site, product),
    {
        "worst_drift": number(
            "worst drift",
            format="%.4f",
            help="Worst drift of the golden outputs on that CPU (normalised units).",
        )
    },
    empty="No station has loaded a bundle of this product with golden outputs yet.",
)

bundles = app_state.bundle_ids(site, product)
st.subheader("Change the live bundle")
admin = app_state.may(app_state.ADMINS)
if not admin:
    st.caption("Promotion and rollback are for admin users; you can read everything here.")
left, right = st.columns(2)
with left, st.form("promote", border=True):
    choice = st.selectbox("Bundle", bundles[::-1], key="md_bundle")
    why = st.text_input(
        "Why", key="md_promote_reason", placeholder="e.g. INT8 matches FP32, 3x faster"
    )
    not_ready = st.checkbox(
        "Serve it although NOT LINE-READY",
        key="md_not_ready",
        help="For a trial only: the audit log records your name and what the bundle lacks.",
    )
    promote = st.form_submit_button("Promote", type="primary", disabled=not bundles or not admin)
with right, st.form("rollback", border=True):
    st.markdown("Return to the bundle that was live before the current one.")
    why_back = st.text_input(
        "Why", key="md_rollback_reason", placeholder="e.g. false alarms up since promotion"
    )
    rollback = st.form_submit_button("Roll back", disabled=live is None or not admin)

if promote or rollback:
    who = app_state.acting_as(app_state.ADMINS)  # checked again: a disabled button is no guard
    try:
        if promote and who is not None:
            state = models.promote(
                board.registry, product, choice, actor=who, reason=why, not_ready=not_ready
            )
            app_state.invalidate()
            st.success(f"{state.bundle_id} is live for {product}.")
        if rollback and who is not None:
            state = models.rollback(board.registry, product, actor=who, reason=why_back)
            app_state.invalidate()
            st.success(f"Rolled back: {state.bundle_id} is live for {product}.")
    except InspectionError as exc:
        st.error(str(exc))

st.subheader("Audit log")
empty = "No promotions, rollbacks, threshold changes or retraining runs yet."
panels.table(app_state.events_frame(site, product), empty=empty)

st.subheader("Line control calls")
st.caption("OPC 40100 method calls by line clients, run or refused, as each station signed them.")
panels.table(app_state.control_frame(site), empty="No control calls recorded here.")
