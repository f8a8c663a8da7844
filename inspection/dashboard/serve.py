"""``python -m inspection.dashboard.serve run APP [options]``: ``streamlit run`` with the
dashboard warmed up before the first browser connects.

Streamlit imports what the pages use on a session's first script run (the dashboard package,
SciPy's stats, scikit-learn's metrics), so the sign-in and the first Overview would wait on
them, and on the first queries and SQL compilations of a new connection. Here the server's
start pays both. No result is cached: the pages still read fresh data.

Streamlit also runs a full garbage collection after every script run (``runner.postScriptGC``),
holding the GIL while the run's last messages wait to be sent, mostly walking the objects of
those imports (``reports/dashboard/profile_5m.md``). They live as long as the server, so the warm-up
ends with ``gc.freeze()`` and the collection after each run walks only what the pages made.
"""

from __future__ import annotations

import gc
import logging
import sys


def warm_up() -> None:
    """Import every module a page runs with; run the Overview's default reads once on the
    site's store (``app_state.read_overview``: the engine the pages share), keeping no result."""
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
