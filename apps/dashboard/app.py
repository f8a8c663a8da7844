"""Review dashboard router, served by ``inspection dashboard`` (``streamlit run
apps/dashboard/asgi.py``: these pages plus the route that sets the session cookie).

The site config comes from ``INSPECTION_SITE_CONFIG`` (default ``configs/site.yaml``). Pages are
thin: they call ``inspection.dashboard`` for every read and write. No page runs before
``app_state.signed_in`` has an identity (login form; see ``inspection users add``).
"""

from __future__ import annotations

import sys
from pathlib import Path

try:  # a source checkout without `pip install -e .` still runs
    import inspection  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import streamlit as st

from inspection.dashboard import app_state

st.set_page_config(page_title="Inspection review", page_icon=":material/biotech:", layout="wide")

PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/monitoring:", default=True),
    st.Page("views/thresholds.py", title="Thresholds", icon=":material/tune:"),
    st.Page("views/review.py", title="Review queue", icon=":material/fact_check:"),
    st.Page("views/models.py", title="Models", icon=":material/deployed_code:"),
    st.Page(
        "views/defects.py", title="Defect kinds", icon=":material/category:", url_path="defects"
    ),
    st.Page("views/retraining.py", title="Retraining", icon=":material/model_training:"),
    st.Page("views/roi.py", title="Regions of interest", icon=":material/crop_free:"),
]

board = app_state.dashboard()
identity = app_state.identify(board)
# Navigation first, so a deep link (/thresholds) keeps its page through the login form.
page = st.navigation(PAGES, position="sidebar" if identity else "hidden")
app_state.signed_in(board, identity)  # the login gate for every page: stops here until signed in
site = app_state.site_key()
st.sidebar.caption(
    f"Site `{Path(site).name if site else 'configs/site.yaml'}` · "
    f"{board.store.engine.dialect.name} store · {len(board.registry.bundles.products())} products in registry"
)
page.run()
