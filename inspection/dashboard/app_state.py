"""Streamlit glue: one cached Store/Registry per site, short-TTL cached queries, the user's name.

Every cached function takes the site key (the site YAML path, '' for the default) first, so
two sites in one process never share cache entries. Writes call ``invalidate()``.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import streamlit as st

from inspection.core.errors import InspectionError
from inspection.dashboard import models, overview, retraining, review, thresholds
from inspection.dashboard.context import Dashboard, open_dashboard, site_path_from_env
from inspection.store import queries

DATA_TTL_S = 15
USER_KEY = "user_name"


@st.cache_resource(show_spinner=False)
def _open(site: str) -> Dashboard:
    return open_dashboard(site or None)


def site_key() -> str:
    return site_path_from_env()


def dashboard() -> Dashboard:
    """The site's handles; on a bad config shows the operator message and stops the page."""
    try:
        return _open(site_key())
    except InspectionError as exc:
        st.error(f"Cannot open the site: {exc}")
        st.stop()
        raise  # unreachable: st.stop() ends the script run


def now_minute() -> datetime:
    """UTC now floored to the minute, so time windows make stable cache keys."""
    return datetime.now(timezone.utc).replace(second=0, microsecond=0)


def invalidate() -> None:
    """Drop cached query results after a write so every page shows it at once."""
    st.cache_data.clear()


def user_name() -> str:
    return str(st.session_state.get(USER_KEY, "")).strip()


def user_box() -> None:
    """Sidebar field for the name written to reviews, thresholds and promotions.

    Rendered by the router on every run, so its value survives page switches.
    """
    st.sidebar.text_input(
        "Your name",
        key=USER_KEY,
        help="Recorded with every review label, threshold change and promotion.",
        placeholder="e.g. j.smith",
    )


# --------------------------------------------------------------------------- cached reads
@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def products(site: str) -> list[str]:
    return _open(site).products


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def stations(site: str) -> list[str]:
    return queries.distinct_values(_open(site).store, "station_id")


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def volume(
    site: str, period: str, since: datetime | None, product: str | None, station: str | None
) -> pd.DataFrame:
    return overview.volume_frame(
        _open(site).store, period=period, since=since, product=product, station_id=station
    )


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def station_health(site: str, since: datetime | None, now: datetime) -> pd.DataFrame:
    return overview.station_frame(_open(site).store, since=since, now=now)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def drift(site: str, product: str, since: datetime | None) -> overview.Drift:
    board = _open(site)
    return overview.drift(board.store, board.registry, product, since=since)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def production_histogram(site: str, product: str, since: datetime) -> np.ndarray:
    return queries.score_histogram(_open(site).store, product, bins=100, since=since)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def daily_volume(site: str, product: str, since: datetime, until: datetime) -> float:
    return queries.daily_volume(_open(site).store, product, since=since, until=until)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def reviewed_scores(site: str, product: str) -> thresholds.LabelledScores:
    return thresholds.reviewed_scores(_open(site).store, product)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def validation_scores(
    site: str, product: str, bundle_id: str | None
) -> thresholds.LabelledScores | None:
    return thresholds.validation_scores(_open(site).registry, product, bundle_id)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def queue_page(site: str, query: queries.QueueQuery, page: int, page_size: int) -> review.QueuePage:
    return review.queue_page(_open(site).store, query, page=page, page_size=page_size)


@st.cache_data(ttl=300, show_spinner=False, max_entries=256)
def views(site: str, row: queries.QueueRow) -> review.Views:
    return review.load_views(_open(site).store, row)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def defect_types(site: str, product: str | None) -> list[str]:
    return queries.defect_types(_open(site).store, product)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def bundle_table(site: str, product: str) -> pd.DataFrame:
    return models.bundle_table(_open(site).registry, product)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def retrain_runs(site: str, product: str) -> list[retraining.RetrainRun]:
    board = _open(site)
    return retraining.retrain_runs(board.registry, board.site.reports_dir, product)
