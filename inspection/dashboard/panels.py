"""Streamlit pieces several pages share: the model-health alarm, the per-kind table, tables
and the note a page stops at when it has nothing to show."""

from __future__ import annotations

from typing import Any, NoReturn
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from inspection.core.operating_point import n_needed
from inspection.dashboard import health

DEFECTS_PAGE = "defects"
"""URL path of the per-defect-kind page (``views/defects.py``)."""


def defects_link(product: str, kind: str | None = None, outcome: str | None = None) -> str:
    """A deep link to the images behind a rate: ``defects?product=grass&kind=crack&...``."""
    query = {"product": product, **({"kind": kind} if kind else {})}
    query.update({"outcome": outcome} if outcome else {})
    return f"{DEFECTS_PAGE}?{urlencode(query)}"


def health_alarm(item: health.ModelHealth, *, compact: bool = False) -> None:
    """A red alarm (NOT LINE-READY, with every reason and what fixes it), a yellow note (health
    unknown) or, unless ``compact``, a green line (LINE-READY). Sample sizes are always named."""
    if item.line_ready:
        if not compact:
            st.success(item.summary(), icon=":material/check_circle:")
            for caveat in caveats(item):
                st.caption(caveat)
        return
    if not item.known:
        st.warning(item.summary(), icon=":material/help:")
        return
    reasons = "\n".join(f"- {reason}" for reason in item.reasons)
    reasons += "".join(f"\n- Next: {advice}" for advice in item.advice)
    notes = "".join(f"\n\n_{caveat}_" for caveat in caveats(item))
    st.error(
        f"**{item.product} `{item.bundle_id}` is NOT LINE-READY** at threshold "
        f"{item.threshold:.4g} ({item.point.describe()}; measured on the {item.split} split: "
        f"{item.n_good} good, {item.n_defective} defective)\n{reasons}{notes}\n\n"
        f"[See the images behind these rates]({defects_link(item.product)})",
        icon=":material/error:",
    )


def caveats(item: health.ModelHealth) -> list[str]:
    """Sample-size caveats: fewer held-out good parts than show the budget (where the bound
    comes from instead, when a certificate gives it), or small defect kinds."""
    notes = []
    needed = n_needed(item.point.budget)
    cert = item.certificate
    if item.known and item.n_good < needed:
        rejects = f"{item.rejected_good} of {item.n_good} held-out good parts rejected"
        if cert is not None and cert.certified:
            notes.append(
                f"The false-alarm bound comes from {cert.n_good} never-trained good images; "
                f"the {rejects} only check it (alone they could not show a "
                f"{item.point.budget:.1%} budget: that takes {needed})."
            )
        else:
            notes.append(
                f"Only {item.n_good} held-out good parts: showing a {item.point.budget:.1%} "
                f"budget takes {needed}; treat their reject rate as rough."
            )
    small = [k for k in item.kinds if k.n < 20]
    if small:
        notes.append(
            "Few images per defect kind ("
            + ", ".join(f"{k.kind} {k.n}" for k in small)
            + "); see the 95% intervals."
        )
    return notes


def product_select(products: list[str], key: str, where: Any = st) -> str:
    """The page's product select box (in ``where``: a column, or the page), preset from a
    ``?product=`` link and written back to it, so a page's address names what it shows."""
    wanted = st.query_params.get("product")
    if wanted in products and key not in st.session_state:
        st.session_state[key] = wanted
    product = where.selectbox("Product", products, key=key)
    st.query_params["product"] = product
    return product


def stop_with(note: str, icon: str = ":material/info:") -> NoReturn:
    """Show ``note`` (what to do first) and end the page's run."""
    st.info(note, icon=icon)
    st.stop()
    raise RuntimeError("unreachable: st.stop() ends the script run")


def table(frame: pd.DataFrame, columns: dict[str, Any] | None = None, empty: str = "") -> None:
    """``frame`` as a full-width grid without its index (``columns``: its column config);
    ``empty``: the caption shown instead when it has no rows."""
    if empty and frame.empty:
        st.caption(empty)
        return
    st.dataframe(frame, hide_index=True, width="stretch", column_config=columns)


def kind_table(item: health.ModelHealth) -> None:
    """The confusion table by kind, each rate linking to its images."""
    frame = health.kind_table(item)
    if frame.empty:
        st.caption("No labelled held-out images for this bundle.")
        return
    frame["images"] = [
        defects_link(item.product, kind, "false_alarm" if kind == health.GOOD else "missed")
        for kind in frame["kind"]
    ]
    table(
        frame,
        {
            "n": st.column_config.NumberColumn("n", format="%d"),
            "NG": st.column_config.NumberColumn("flagged NG", format="%d"),
            "OK": st.column_config.NumberColumn("passed OK", format="%d"),
            "rate": st.column_config.NumberColumn("rate", format="percent"),
            "images": st.column_config.LinkColumn("images", display_text="show images"),
        },
    )
