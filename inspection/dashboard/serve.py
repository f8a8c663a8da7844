"""``python -m inspection.dashboard.serve run APP [options]``: ``streamlit run`` with the
dashboard's imports done before the first browser connects.

Streamlit imports what the pages use on a session's first script run. On the 2-core EPYC the
dashboard package, SciPy's stats and scikit-learn's metrics took ~2.5 s there, and the
sign-in and the first Overview waited on what was still importing. Here the server's start
pays it instead.
"""

from __future__ import annotations

import sys


def warm_up() -> None:
    """Import every module a page runs with (the pages' own scripts compile on first use)."""
    import scipy.stats  # noqa: F401
    import sklearn.metrics  # noqa: F401
    from streamlit.web.cli import main  # noqa: F401

    from inspection.dashboard import app_state, charts, panels, roi  # noqa: F401


if __name__ == "__main__":
    warm_up()
    from streamlit.web.cli import main

    sys.exit(main(prog_name="streamlit"))
