"""The dashboard as served (``inspection dashboard``): ``app.py``'s pages, plus the route that
sets the session cookie server-side, HttpOnly (``inspection.dashboard.sessions``)."""

from __future__ import annotations

import sys
from pathlib import Path

try:  # a source checkout without `pip install -e .` still runs
    import inspection  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import streamlit as st

from inspection.dashboard.sessions import session_route

app = st.App(str(Path(__file__).with_name("app.py")), routes=[session_route()])
