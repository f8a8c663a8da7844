"""Overview: volume, NG rate and throughput per station and product; station health; drift."""

from __future__ import annotations

import streamlit as st

from inspection.dashboard import app_state, charts, overview, panels

site = app_state.site_key()
st.title("Overview")

products = app_state.products(site)
health = [app_state.model_health(site, name) for name in products]
for item in health:  # alarms first: a model that is not line-ready is the news
    if item.bundle_id is not None:
        panels.health_alarm(item, compact=True)
ready = [h.product for h in health if h.bundle_id is not None and h.line_ready]
if ready:
    st.caption(f"Line-ready at their live thresholds: {', '.join(ready)} (see Models).")
stations = app_state.stations(site)
left, middle, right = st.columns([2, 2, 2])
window_name = left.selectbox(
    "Window",
    list(overview.WINDOWS),
    index=list(overview.WINDOWS).index(overview.DEFAULT_WINDOW),
    key="ov_window",
)
product = middle.selectbox("Product", ["All products", *products], key="ov_product")
station = right.selectbox("Station", ["All stations", *stations], key="ov_station")
product = None if product == "All products" else product
station = None if station == "All stations" else station

now = app_state.now_minute()
since, period = overview.window(window_name, now)
frame = app_state.volume(site, period, since, product, station)

if frame.empty:
    st.info(
        "No inspections in this window yet. Stations write results through the inspection "
        "service; they appear here within seconds. After `make demo`: `inspection serve "
        "--config configs/station-watch.yaml`, then copy images into "
        "`var/watch/incoming/<product>/`. Or try a longer window, or open a seeded demo site: "
        "`python scripts/seed_dashboard.py var/dashboard-demo` (it prints the sign-in).",
        icon=":material/info:",
    )
    st.stop()

hourly = frame if period == "hour" else app_state.volume(site, "hour", since, product, station)
kpi = overview.kpis(frame, hourly)
cols = st.columns(4)
cols[0].metric("Inspections", f"{kpi.inspections:,}")
cols[1].metric("NG", f"{kpi.ng:,}")
cols[2].metric("NG rate", f"{kpi.ng_rate:.1%}")
cols[3].metric(
    "Throughput",
    f"{kpi.per_hour:,.0f} / h",
    help="Inspections per hour, over the hours of this window that had inspections.",
)

by_product = overview.per_product(frame)
left, right = st.columns(2)
with left:
    st.subheader(f"Inspections per {period}")
    st.vega_lite_chart(charts.volume_chart(frame, period), width="stretch")
with right:
    st.subheader("NG rate")
    st.vega_lite_chart(charts.ng_rate_chart(by_product), width="stretch")

st.subheader("Station health")
health = app_state.station_health(site, since, now)
st.dataframe(
    health,
    hide_index=True,
    width="stretch",
    column_config={
        "station_id": "station",
        "last_seen": st.column_config.DatetimeColumn("last seen", format="YYYY-MM-DD HH:mm"),
        "total": st.column_config.NumberColumn("inspections", format="%d"),
        "ng_rate": st.column_config.NumberColumn("NG rate", format="percent"),
        "mean_latency_ms": st.column_config.NumberColumn("mean latency", format="%.0f ms"),
        "max_latency_ms": st.column_config.NumberColumn("max latency", format="%.0f ms"),
        "model_version": "model",
    },
)

st.subheader("Score drift")
st.caption(
    "Production scores (parts reviewed as defects left out) against the live bundle's "
    "held-out good parts: like with like. PSI < 0.1 stable, 0.1–0.25 watch, > 0.25 drifted; "
    f"with fewer than {overview.MIN_DRIFT_PARTS} parts on either side: not enough data."
)
drifts = [app_state.drift(site, name, since) for name in ([product] if product else products)]
drifts = [d for d in drifts if d.production_count]
references = {d.product: d.reference_mean for d in drifts if d.reference_mean is not None}
st.vega_lite_chart(charts.mean_score_chart(by_product, references), width="stretch")
for start in range(0, len(drifts), 2):
    for column, item in zip(st.columns(2), drifts[start : start + 2], strict=False):
        with column:
            if item.psi is None:
                st.markdown(f"**{item.product}** — no held-out scores to compare against")
                st.caption(
                    f"The live bundle ships no `validation_scores.json`; showing "
                    f"{item.production_count} production parts only."
                )
            elif not item.enough:
                st.markdown(f"**{item.product}** — not enough data (PSI {item.psi:.3f})")
                st.caption(
                    f"{item.production_count} production parts vs {item.reference_count} "
                    f"reference good parts; a drift verdict needs {overview.MIN_DRIFT_PARTS} each."
                )
            else:
                st.markdown(f"**{item.product}** — PSI {item.psi:.3f} ({item.status})")
                st.caption(
                    f"{item.production_count} production parts vs reference: "
                    f"{item.reference_source}"
                )
            st.vega_lite_chart(charts.drift_chart(item), width="stretch")
