"""Retraining: scheduled runs with the champion vs challenger comparison and the decision."""

from __future__ import annotations

import streamlit as st

from inspection.dashboard import app_state, panels, retraining

site = app_state.site_key()
board = app_state.dashboard()
st.title("Retraining")

products = app_state.products(site)
runs_by_product = {p: app_state.retrain_runs(site, p) for p in products}
if not any(runs_by_product.values()):
    panels.stop_with(
        "No retraining runs on this site yet. `inspection retrain --product NAME` compares a "
        "challenger trained on newly reviewed parts with the live champion and records the run "
        "in the site's audit log; runs show up here."
    )

product = st.selectbox("Product", [p for p in products if runs_by_product[p]], key="rt_product")
runs = runs_by_product[product]
figure = st.column_config.NumberColumn(format="%.3f")
columns = {"champion image_auroc": figure, "challenger image_auroc": figure}
panels.table(retraining.runs_frame(runs), columns)

run_id = st.selectbox("Run", [r.run for r in runs], key=f"rt_run_{product}")
run = next(r for r in runs if r.run == run_id)
cols = st.columns(3)
cols[0].metric("Decision", run.decision or "—")
cols[1].metric("Champion", run.champion or "—")
cols[2].metric("Challenger", run.challenger or "—")
if run.reason:
    st.markdown(f"_{run.reason}_")
comparison = run.comparison()
if comparison.empty:
    st.caption("This run recorded no metrics to compare.")
else:
    st.dataframe(
        comparison.style.format("{:.4f}", subset=["champion", "challenger"], na_rep="—").format(
            "{:+.4f}", subset=["Δ"], na_rep="—"
        ),
        width="stretch",
    )
with st.expander("Raw report"):
    st.caption(str(run.report_path) if run.report_path else "from the registry audit log")
    st.json(run.raw, expanded=False)
