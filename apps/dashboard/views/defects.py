"""Defect kinds: the live bundle's confusion table by kind and the images behind each rate.

Deep links (``defects?product=grass&kind=crack&outcome=missed``) open one kind's misses or
false alarms; every alarm and per-kind table links here.
"""

from __future__ import annotations

import streamlit as st

from inspection.dashboard import app_state, health, panels

site = app_state.site_key()
board = app_state.dashboard()
st.title("Defect kinds")

products = [p for p in app_state.products(site) if board.registry.journal.live(p) is not None]
if not products:
    panels.stop_with(
        "No product has a live bundle yet: `inspection export --product NAME --promote` "
        "exports one with its labelled held-out scores."
    )

params = st.query_params
wanted = params.get("product")
top = st.columns([2, 2, 2])
if wanted not in products:  # no deep link: the first product that is not line-ready
    alarming = [p for p in products if not app_state.model_health(site, p).line_ready]
    wanted = (alarming or products)[0]
product = top[0].selectbox("Product", products, index=products.index(wanted))
item = app_state.model_health(site, product)
panels.health_alarm(item)
st.subheader(f"At the live threshold {item.threshold:.4g}")
panels.kind_table(item)

images = app_state.outcomes(site, product)
kinds = sorted({o.kind for o in images})
kind_options = ["All kinds", *kinds]
wanted_kind = params.get("kind")
kind = top[1].selectbox(
    "Kind", kind_options, index=kind_options.index(wanted_kind) if wanted_kind in kinds else 0
)
labels = {
    "missed": "Missed defects (passed OK)",
    "false_alarm": "False alarms (good parts flagged NG)",
    "caught": "Caught defects",
    "passed": "Good parts passed",
}
wanted_outcome = params.get("outcome")
outcome = top[2].selectbox(
    "Show",
    list(labels),
    index=list(labels).index(wanted_outcome) if wanted_outcome in labels else 0,
    format_func=labels.get,
)
st.query_params.from_dict(
    {"product": product, "outcome": outcome, **({"kind": kind} if kind in kinds else {})}
)

chosen = [o for o in images if o.outcome == outcome and (kind not in kinds or o.kind == kind)]
st.subheader(f"{labels[outcome]}: {len(chosen)}")
if not chosen:
    st.caption("None at the live threshold.")
shown = chosen[:12]
for start in range(0, len(shown), 4):
    for column, example in zip(st.columns(4), shown[start : start + 4], strict=False):
        caption = f"{example.kind}/{example.name} · score {example.score:.3f}"
        if example.path is None:
            column.caption(f"{caption} (image not under {board.site.datasets_dir})")
        else:
            column.image(app_state.example_picture(example), caption=caption, width="stretch")
if len(chosen) > len(shown):
    st.caption(f"Showing the {len(shown)} worst of {len(chosen)}.")
st.caption(
    f"Held-out {health.GOOD} and defective images of the live bundle's {item.split or 'test'} "
    "split, scored by the bundle at export, judged at the live threshold; the ground-truth "
    "defect is outlined in red."
)
