"""``python -m inspection.dashboard.serve run APP [options]``: ``streamlit run`` with the
dashboard warmed up before the first browser connects.

The sign-in and first Overview would otherwise wait on the pages' imports and a new
connection's first queries; the server's start pays them, caching no result. Streamlit's full
garbage collection after every script run would walk those imports' objects while holding the
GIL: ``gc.freeze()`` leaves it only what the pages made.
"""

from __future__ import annotations

import gc
import logging
import sys


def warm_up() -> None:
    """Import every module a page runs with; run the Overview's default reads once."""
    import scipy.stats  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import streamlit  # noqa: F401  (creates the logger silenced below)

    checks = logging.getLogger("streamlit.runtime.caching.cache_data_api")
    level = checks.level
    checks.setLevel(logging.ERROR)  # "No runtime found" from each @st.cache_data before it runs
    try:
        from inspection.dashboard import app_state, charts, panels, roi  # noqa: F401

        try:
            app_state.read_overview(app_state.site_key())
        except Exception as exc:  # a bad site config or a store down: its page says why
            logging.getLogger(__name__).info("dashboard warm-up skipped the store: %s", exc)
        app_state.invalidate()  # the runtime's caches start empty: the pages read fresh data
    finally:
        checks.setLevel(level)
    gc.freeze()  # see the module docstring: Streamlit's collection after every run


if __name__ == "__main__":
    warm_up()
    from streamlit.web.cli import main

    sys.exit(main(prog_name="streamlit"))
