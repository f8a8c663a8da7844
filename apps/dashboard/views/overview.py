"""Overview: volume, NG rate and throughput per station and product; station health and
forwarding backlogs; drift."""

from __future__ import annotations

from datetime import datetime, timezone

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
    st.caption(f"LINE-READY at their live thresholds: {', '.join(ready)} (see Models).")
backlogs = app_state.station_backlog(site)
for station_id, why in zip(backlogs["station_id"], backlogs["alarm"], strict=True):
    if why:  # a station's results not reaching this store: nothing below shows them yet
        st.error(
            f"**Station {station_id}: forwarding backlog alarm** — {why}", icon=":material/error:"
        )
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
filters = {"since": since, "product": product, "station_id": station}
frame = app_state.volume(site, period=period, **filters)

if frame.empty:
    panels.stop_with(
        "No inspections in this window yet. Stations write results through the inspection "
        "service; they appear here within seconds. After `make demo`: `inspection serve "
        "--config configs/station-watch.yaml`, then copy images into "
        "`var/watch/incoming/<product>/`. Or try a longer window, or open a seeded demo site: "
        "`python scripts/seed_dashboard.py var/dashboard-demo` (it prints the sign-in)."
    )

hourly = frame if period == "hour" else app_state.volume(site, period="hour", **filters)
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
# A static table, not the data grid: its script chunk and canvas were a share of the first paint.
stations_frame = app_state.station_health(site, since=since, now=now)
st.table(overview.station_table(stations_frame), hide_index=True)

if not backlogs.empty:
    st.subheader("Forwarding stations")
    st.table(overview.backlog_table(backlogs, datetime.now(timezone.utc)), hide_index=True)
    st.caption(
        "Each line PC's results waiting in its own store for this one, as it last reported "
        "(every few seconds). Alarm: the oldest waiting result is older than the station's "
        "`central.alarm_after_seconds` (default "
        f"{overview.BACKLOG_ALARM_AFTER_S:g} s), or no report for "
        f"{overview.SILENT_REPORT_AFTER.total_seconds():g} s."
    )

st.subheader("Score drift")
drifts = [
    app_state.drift(site, name, since, station) for name in ([product] if product else products)
]
drifts = [d for d in drifts if d.production_count]
lines = [f"- {overview.drift_line(item)}" for item in drifts]
st.markdown("\n".join(lines) or "No production scores in this window to compare.")
st.caption(
    "Production scores (parts reviewed as defects left out) against the live bundle's "
    "held-out good parts: like with like. PSI < 0.1 stable, 0.1–0.25 watch, > 0.25 drifted; "
    f"with fewer than {overview.MIN_DRIFT_PARTS} parts on either side: not enough data."
)
# The charts behind the verdicts (mean score, one histogram per product) draw only when asked.
if st.toggle("Show the score charts", key="ov_drift_charts"):
    references = {d.product: d.reference_mean for d in drifts if d.reference_mean is not None}
    st.vega_lite_chart(charts.mean_score_chart(by_product, references), width="stretch")
    for start in range(0, len(drifts), 2):
        for column, item in zip(st.columns(2), drifts[start : start + 2], strict=False):
            column.markdown(f"**{item.product}**")
            column.vega_lite_chart(charts.drift_chart(item), width="stretch")
