"""Streamlit glue: one cached Store/Registry per site, short-TTL cached queries, who is signed in.

Every cached function takes the site key first, so two sites in one process never share cache
entries; writes call ``invalidate()``. The router calls ``identify()`` and ``signed_in()``
before any page runs; every run re-reads the user, so a removed user or a changed role takes
effect on the next click. Pages ask ``acting_as(ADMINS)`` for the name they audit a write with.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal, TypeVar

import pandas as pd
import streamlit as st

from inspection.core.config import SiteConfig
from inspection.core.decision_journal import DecisionJournal
from inspection.core.errors import InspectionError
from inspection.core.version_store import VersionStore
from inspection.dashboard import health, models, overview, retraining, review, sessions, thresholds
from inspection.dashboard.context import SITE_ENV, Dashboard, login_free, open_dashboard
from inspection.store import queries, users
from inspection.store.tokens import Identity

DATA_TTL_S = 15
USER_KEY = "user_name"
IDENTITY_KEY = "identity"
LOGIN_AT_KEY = "login_at"
NOTICE_KEY = "login_notice"
SIGNED_OUT_KEY = "signed_out"
COOKIE_KEY = "session_cookie"
REVIEWERS = ("reviewer", "admin")
ADMINS = ("admin",)
T = TypeVar("T")
_Handle = Literal["store", "registry", "registry.journal", "registry.bundles"]


def _warm_up() -> None:
    """Import the pages' slow deferred imports while the login form shows."""
    import scipy.stats  # noqa: F401
    import sklearn.metrics  # noqa: F401


threading.Thread(target=_warm_up, name="dashboard-warm-up", daemon=True).start()


@st.cache_resource(show_spinner=False)
def _open(site: str) -> Dashboard:
    return open_dashboard(site or None)


def site_key() -> str:
    """The site YAML named by ``INSPECTION_SITE_CONFIG``, or '' for the default."""
    return os.environ.get(SITE_ENV, "").strip()


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
    """The name recorded with a write: the signed-in user's, or the typed one (open mode)."""
    identity = current()
    return identity.name if identity is not None else user_name_typed()


def current() -> Identity | None:
    """Who this session acts as (``signed_in()`` ran first), ``None`` before login."""
    kept = st.session_state.get(IDENTITY_KEY)
    return Identity(*kept) if isinstance(kept, tuple) else None


def _keep(identity: Identity) -> Identity:
    """Hold ``identity`` in the session as plain (name, role): an ``Identity`` instance would
    stop matching its class once Streamlit re-imports changed modules, showing the login form."""
    st.session_state[IDENTITY_KEY] = (identity.name, identity.role)
    return identity


def acting_as(roles: tuple[str, ...]) -> str | None:
    """The name to audit a write with ('' in open mode before one is typed), or ``None`` after
    showing why the role may not. The guard, not the disabled buttons: it reads the user again."""
    identity = _live(current())
    if identity is None or not identity.has(*roles):
        role = identity.role if identity else "nobody"
        st.error(f"Only {' or '.join(roles)} users may do this; you are signed in as {role}.")
        return None
    return identity.name


def may(roles: tuple[str, ...]) -> bool:
    """Whether the signed-in user (read again from the store) has one of ``roles``."""
    identity = _live(current())
    return identity is not None and identity.has(*roles)


def _live(identity: Identity | None) -> Identity | None:
    """``identity`` as the store has it now (open mode: as typed)."""
    if identity is None:
        return None
    board = dashboard()
    if login_free(board.site, st.get_option("server.address"), _sent("headers")):
        return identity
    return users.user_identity(board.store, identity.name)


def identify(board: Dashboard) -> Identity | None:
    """Who this run acts as (open mode's typed name, the session's login or a reload's signed
    cookie), read again from the store; ``None`` means the login form."""
    if login_free(board.site, st.get_option("server.address"), _sent("headers")):
        return _keep(Identity(user_name_typed(), "admin"))
    identity, since = current(), st.session_state.get(LOGIN_AT_KEY)
    name = None
    if identity is not None and since is not None:
        if datetime.now(timezone.utc) - since < timedelta(hours=sessions.SESSION_HOURS):
            name = identity.name
        else:
            st.session_state[NOTICE_KEY] = "Your session expired; sign in again."
    elif not st.session_state.get(SIGNED_OUT_KEY):
        name = sessions.verify_token(
            _secret(site_key(), board.site),
            _sent("cookies").get(_cookie()),
            max_age_s=sessions.SESSION_HOURS * 3600,
        )
        if name is not None:  # a reload: the cookie's own time stamp bounds the session
            st.session_state[LOGIN_AT_KEY] = datetime.now(timezone.utc)
    live = users.user_identity(board.store, name) if name else None
    if live is None:
        if identity is not None and NOTICE_KEY not in st.session_state:
            st.session_state[NOTICE_KEY] = "Your account was removed; sign in again."
        for key in (IDENTITY_KEY, LOGIN_AT_KEY):
            st.session_state.pop(key, None)
        return None
    return _keep(live)


def signed_in(board: Dashboard, identity: Identity | None) -> Identity:
    """Draw the account box for ``identity``, or the login form and stop the run."""
    if login_free(board.site, st.get_option("server.address"), _sent("headers")):
        user_box()
        return current()
    pending = st.session_state.pop(COOKIE_KEY, None)
    if pending is not None:  # set after a login, cleared after a sign-out
        nonce = sessions.hand_over(_cookie(), *pending)
        st.html(sessions.cookie_script(nonce), unsafe_allow_javascript=True)
    if identity is not None:
        st.sidebar.markdown(f"Signed in as **{identity.name}** ({identity.role})")
        st.sidebar.button("Sign out", key="sign_out", on_click=sign_out)
        return identity
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.warning(notice)
    _login_form(board)
    st.stop()
    raise RuntimeError("unreachable: st.stop() ends the script run")


def sign_out() -> None:
    for key in (IDENTITY_KEY, LOGIN_AT_KEY):
        st.session_state.pop(key, None)
    st.session_state[SIGNED_OUT_KEY] = True
    st.session_state[COOKIE_KEY] = ("", 0)


@st.cache_resource(show_spinner=False)
def _secret(site: str, _config: SiteConfig) -> str:
    return sessions.session_secret(_config)


def _cookie() -> str:
    return sessions.cookie_name(st.get_option("server.port"))


def _sent(what: str) -> dict[str, str]:
    """The browser connection's request ``headers`` or ``cookies`` (none without one: AppTest)."""
    try:
        return dict(getattr(st.context, what))
    except Exception:  # no browser connection
        return {}


def _login_form(board: Dashboard) -> None:
    st.title("Sign in")
    with st.form("login", border=True):
        name = st.text_input("Name", key="login_name", autocomplete="username")
        password = st.text_input(
            "Password", type="password", key="login_password", autocomplete="current-password"
        )
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        st.caption("Accounts are created by an admin: `inspection users add NAME --role reviewer`.")
        st.html(_preload_script(), unsafe_allow_javascript=True)
        return
    warm_overview(site_key())  # on the other core while the password hash is checked
    try:
        identity = users.authenticate(board.store, name.strip(), password)
    except InspectionError as exc:
        st.error(str(exc))
        return
    _keep(identity)
    st.session_state[LOGIN_AT_KEY] = datetime.now(timezone.utc)
    st.session_state.pop(SIGNED_OUT_KEY, None)
    token = sessions.issue_token(_secret(site_key(), board.site), identity.name)
    st.session_state[COOKIE_KEY] = (token, sessions.SESSION_HOURS * 3600)
    st.rerun()


PRELOADED = ("ArrowVegaLiteChart", "DataFrame", "Metric", "Selectbox", "Button", "Radio", "Slider")
"""Streamlit's browser code for the first pages' elements, loaded while the login form waits
(not for a cookie's session: loaded while its first run draws, it slowed the page)."""


@st.cache_resource(show_spinner=False)
def _preload_script() -> str:
    """A ``<script>`` that loads ``PRELOADED`` while the login form waits for the user."""
    folder = Path(st.__file__).parent / "static" / "static" / "js"
    files = [f.name for name in PRELOADED for f in sorted(folder.glob(f"{name}.*.js"))[:1]]
    return f"<script>{json.dumps(files)}.forEach(f => import(`./static/js/${{f}}`))</script>"


def user_name_typed() -> str:
    return str(st.session_state.get(USER_KEY, "")).strip()


def user_box() -> None:
    """Sidebar field for the name written with every change (open mode), drawn on every run."""
    st.sidebar.text_input(
        "Your name",
        key=USER_KEY,
        help="Recorded with every review label, threshold change and promotion.",
        placeholder="e.g. j.smith",
    )
    st.sidebar.caption("No login: this site serves the dashboard on localhost without one.")


# --------------------------------------------------------------------------- cached reads
def _cached(handle: _Handle, read: Callable[..., T]) -> Callable[..., T]:
    """``read(<the site's store, registry or half of it>, ...)`` as ``f(site, ...)``, cached
    for ``DATA_TTL_S`` under ``read``'s name (call it the same way to share an entry)."""

    def cached(site: str, *args: Any, **kwargs: Any) -> T:
        return read(attrgetter(handle)(_open(site)), *args, **kwargs)

    cached.__qualname__ = f"{read.__module__}.{read.__qualname__}"
    return st.cache_data(ttl=DATA_TTL_S, show_spinner=False)(cached)


reviewed_scores = _cached("store", thresholds.reviewed_scores)
audit_scores = _cached("store", thresholds.audit_scores)
validation_scores = _cached("registry", thresholds.validation_scores)  # (product, bundle_id)
# the queue's length (to QUEUE_COUNT_CAP) once per DATA_TTL_S, not for every page turned: slow
# at the cap on a large store whose pages are cold
queue_count = _cached("store", queries.count_review_queue)  # (query)
page_start = _cached("store", review.page_start)  # (query, page, page_size)
defect_types = _cached("store", queries.defect_types)  # (product or None)
volume = _cached("store", overview.volume_frame)
station_health = _cached("store", overview.station_frame)
station_backlog = _cached("store", overview.backlog_frame)
production_histogram = _cached("store", queries.score_histogram)
daily_volume = _cached("store", queries.daily_volume)
bundle_table = _cached("registry", models.bundle_table)
live_state = _cached("registry.journal", DecisionJournal.live)
bundle_ids = _cached("registry.bundles", VersionStore.bundle_ids)
exported_versions = _cached("registry", models.exported_versions)
precision_comparison = _cached("registry", models.precision_comparison)  # (product, version)
tuning_frame = _cached("registry", models.tuning_frame)
events_frame = _cached("registry", models.events_frame)
control_frame = _cached("registry", models.control_frame)
# Pure functions of their arguments: cached by content, without expiry (a page revisit after
# the store reads expired finds the same scores, hence the same curve and suggestions).
curve_frame = st.cache_data(show_spinner=False, max_entries=32)(thresholds.curve_frame)
suggest_max_f1 = st.cache_data(show_spinner=False, max_entries=32)(thresholds.suggest_max_f1)
suggest_for_miss_rate = st.cache_data(show_spinner=False, max_entries=32)(
    thresholds.suggest_for_miss_rate
)
example_picture = st.cache_data(ttl=300, show_spinner=False, max_entries=128)(health.picture)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def products(site: str) -> list[str]:
    return _open(site).products


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def stations(site: str) -> list[str]:
    return queries.distinct_values(_open(site).store, "station_id")


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def drift(
    site: str, product: str, since: datetime | None, station_id: str | None = None
) -> overview.Drift:
    board = _open(site)
    return overview.drift(board.store, board.registry, product, since=since, station_id=station_id)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def queue_page(
    site: str,
    query: queries.QueueQuery,
    after: queries.QueueCursor | None,
    page: int,
    page_size: int,
) -> review.QueuePage:
    return review.queue_page(
        _open(site).store,
        query,
        page_size=page_size,
        after=after,
        page=page,
        total=queue_count(site, query),
    )


@st.cache_data(ttl=300, show_spinner=False, max_entries=256)
def views(site: str, row: queries.QueueRow, blind: bool = False) -> review.Views:
    opened = _open(site)
    return review.load_views(opened.store, row, opened.registry, blind=blind)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def retrain_runs(site: str, product: str) -> list[retraining.RetrainRun]:
    board = _open(site)
    return retraining.retrain_runs(board.registry, board.site.reports_dir, product)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def model_health(site: str, product: str, threshold: float | None = None) -> health.ModelHealth:
    """The live bundle's health at the live threshold (or ``threshold``, a what-if)."""
    board = _open(site)
    return health.model_health(
        board.registry, product, threshold=threshold, configs_dir=board.site.configs
    )


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def outcomes(site: str, product: str) -> list[health.Outcome]:
    board = _open(site)
    return health.outcomes(board.registry, product, board.site.datasets_dir)


@st.cache_data(ttl=DATA_TTL_S, show_spinner=False)
def model_products(site: str) -> list[str]:
    """Products with a trained version or an exported bundle."""
    registry = _open(site).registry
    return [
        p
        for p in _open(site).products
        if registry.bundles.versions(p) or registry.bundles.bundle_ids(p)
    ]


def golden_outcome_frame(site: str, product: str) -> pd.DataFrame:
    return models.golden_outcome_frame(_open(site).registry, product)


def read_overview(site: str) -> None:
    """Run the Overview's default reads through its cached functions, in the page's order
    reversed (a page run starting meanwhile meets it once at most)."""
    now = now_minute()
    since, period = overview.window(overview.DEFAULT_WINDOW, now)
    names = products(site)
    for product in names:
        drift(site, product, since)
    station_health(site, since=since, now=now)
    station_backlog(site)
    volume(site, period="hour", since=since, product=None, station_id=None)
    volume(site, period=period, since=since, product=None, station_id=None)
    stations(site)
    for product in names:
        model_health(site, product).reasons  # noqa: B018  (SciPy's intervals, computed once)


_warming = threading.Lock()


def warm_overview(site: str) -> None:
    """``read_overview`` on another thread while the password hash is checked: it draws and
    sends nothing, so a failed login discloses nothing; at most one runs at a time."""
    if not _warming.acquire(blocking=False):
        return

    def run() -> None:
        try:
            read_overview(site)
        except Exception:  # the page itself reads again and shows what went wrong
            logging.getLogger(__name__).exception("Overview warm-up failed")
        finally:
            _warming.release()

    threading.Thread(target=run, name="overview-warm-up", daemon=True).start()
