"""Review queue: NG and borderline parts with image, anomaly overlay and mask; one-key labels;
the defect's region painted on a canvas (``streamlit-drawable-canvas``) is saved with a defect.
*Audit sample* (``review?show=audit``) lists the station's random audit sample, OK and NG alike,
blind (no verdict, score or overlay; the image alone) and oldest first: its parts confirmed good
certify the live bundle in whole windows (Thresholds page, ``core.certificate``).
A label on a part someone labelled since the page was drawn is refused naming them; reviewers
who disagree leave it under *Conflicts* until an admin's label settles it (``store.review_outcome``)."""

from __future__ import annotations

import numpy as np
import streamlit as st
from PIL import Image
from streamlit_drawable_canvas import st_canvas

from inspection.core.certificate import AUDIT_WINDOW
from inspection.core.errors import InspectionError
from inspection.dashboard import app_state, panels, regions, review
from inspection.store.queries import QueueQuery, QueueRow

KINDS = {
    "NG + borderline": "ng_or_borderline",
    "NG": "ng",
    "Borderline OK": "borderline",
    "Audit sample": "audit",
    "Everything": "all",
}
STATUSES = {
    "To review": "unreviewed",
    "Reviewed": "reviewed",
    "Conflicts": "conflict",
    "All": "all",
}
ORDERS = {
    "Highest score": "score_desc",
    "Closest to threshold": "closest_to_threshold",
    "Newest": "newest",
    "Oldest": "oldest",
}
SHORTCUTS = {"defect": "D", "false_alarm": "F", "good": "G", "unsure": "U"}

site = app_state.site_key()
board = app_state.dashboard()
st.title("Review queue")

products = app_state.products(site)
stations = app_state.stations(site)
row1 = st.columns([2, 2, 2, 2, 2])
product = row1[0].selectbox("Product", ["All products", *products], key="rv_product")
station = row1[1].selectbox("Station", ["All stations", *stations], key="rv_station")
shown = {value: name for name, value in KINDS.items()}.get(st.query_params.get("show", ""))
if shown and "rv_kind" not in st.session_state:  # deep link: review?show=audit
    st.session_state["rv_kind"] = shown
kind = row1[2].selectbox("Show", list(KINDS), key="rv_kind")
status = row1[3].selectbox("Status", list(STATUSES), key="rv_status")
blind = KINDS[kind] == "audit"  # reviewed blind and whole, oldest first (docs/statistics.md)
order = row1[4].selectbox(
    "Order", ["Oldest"] if blind else list(ORDERS), key="rv_audit_order" if blind else "rv_order"
)
with st.expander("More filters"):
    more = st.columns(2)
    margin = more[0].slider(
        "Borderline margin below the threshold", 0.0, 0.5, 0.1, 0.01, key="rv_margin"
    )
    page_size = more[1].selectbox("Items per page", [20, 50, 100], key="rv_page_size")


def _show_message() -> None:
    """The last label's outcome, kept until the next label: the region canvas of the next item
    reruns the page on load."""
    message = st.session_state.get("rv_message")
    if message:
        (st.success if message[0] == "success" else st.error)(message[1])


query = QueueQuery(
    product=None if product == "All products" else product,
    station_id=None if station == "All stations" else station,
    kind=KINDS[kind],
    status=STATUSES[status],
    margin=margin,
    order=ORDERS[order],
)
filters_key = (query, page_size)
if st.session_state.get("rv_filters") != filters_key:  # new filters: back to the start
    st.session_state.update(rv_filters=filters_key, rv_starts=[None], rv_cursor=0)
st.session_state.setdefault("rv_starts", [None])  # where each page starts (keyset cursors)
starts = st.session_state["rv_starts"]
if starts[-1] is None and len(starts) > 1:  # reached by "Go to page": where it starts
    starts[-1] = app_state.page_start(site, query, len(starts) - 1, page_size)
    if starts[-1] is None:  # past the end: the first page
        st.session_state.update(rv_starts=[None], rv_cursor=0)
        st.rerun()

page = app_state.queue_page(site, query, starts[-1], len(starts) - 1, page_size)
if not page.rows and len(starts) > 1:  # everything after this cursor was labelled: step back
    st.session_state.update(rv_starts=starts[:-1], rv_cursor=0)
    st.rerun()
if page.total == 0:
    _show_message()  # the last item's label: the queue it emptied still says it was recorded
    panels.stop_with(
        "Nothing to review with these filters. NG and borderline inspections land here as "
        "stations report them (after `make demo`: `inspection serve --config "
        "configs/station-watch.yaml`, then copy images into `var/watch/incoming/<product>/`); "
        "switch *Status* to *Reviewed* to revisit earlier labels.",
        icon=":material/task_alt:",
    )

cursor = min(st.session_state.get("rv_cursor", 0), len(page.rows) - 1)
row = page.rows[cursor]


def _turn(step: int, cursor: int = 0) -> None:
    """Go to the next (1) or previous (-1) page, to item ``cursor`` on it."""
    if step > 0 and page.next is not None:
        st.session_state.update(rv_starts=[*starts, page.next], rv_cursor=cursor)
    elif step < 0 and len(starts) > 1:
        st.session_state.update(rv_starts=starts[:-1], rv_cursor=cursor)


def _go_to() -> None:
    st.session_state.update(rv_starts=[None] * st.session_state["rv_goto"], rv_cursor=0)


def _move(step: int) -> None:
    position = st.session_state.get("rv_cursor", 0) + step
    if 0 <= position < len(page.rows):
        st.session_state["rv_cursor"] = position
    else:
        _turn(step, 0 if step > 0 else page.page_size - 1)


def _label(label: str, shown: QueueRow, region: np.ndarray | None = None) -> None:
    if not app_state.may(app_state.REVIEWERS):
        st.session_state["rv_message"] = ("error", "Only reviewer or admin users may label.")
        return
    who = app_state.user_name()
    if not who:
        st.session_state["rv_message"] = ("error", "Enter your name in the sidebar first.")
        return
    defect_type = st.session_state.get("rv_defect_type") if label == "defect" else None
    try:
        review.submit(
            board.store,
            shown.id,
            label=label,
            reviewer=who,
            defect_type=defect_type,
            note=st.session_state.get("rv_note"),
            region=region,
            shown=shown,
            settles=app_state.may(app_state.ADMINS),
        )
    except InspectionError as exc:
        app_state.invalidate()  # a label stored since the page was drawn: show it
        st.session_state["rv_message"] = ("error", str(exc))
        return
    app_state.invalidate()
    st.session_state["rv_note"] = ""
    st.session_state["rv_message"] = (
        "success",
        f"{review.LABELS[label]} recorded for {shown.id[:8]} by {who}.",
    )
    if query.status != "unreviewed":  # labelled items stay in the list: step past them
        _move(1)


if blind:
    st.info(
        f"Audit sample, oldest first and blind: no verdict, score or overlay. Parts certify in "
        f"windows of {AUDIT_WINDOW}: a window counts only when every part in it is labelled "
        "Good part, False alarm or True defect; Unsure holds it (and every later one) open.",
        icon=":material/visibility_off:",
    )
st.caption(
    f"{page.describe()} · "
    f"item {cursor + 1} of {len(page.rows)} on this page · "
    "keys: **D** defect, **F** false alarm, **G** good, **U** unsure, **N**/**P** next/previous"
)

views = app_state.views(site, row, blind)
pictures, panel = st.columns([3, 1])
with pictures:
    panes = [("Image", views.image)]
    panes += [] if blind else [("Anomaly map", views.overlay), ("Refined mask", views.mask)]
    shown = st.columns(3)
    for column, (title, image) in zip(shown, panes, strict=False):
        column.markdown(f"**{title}**")
        if image is None:
            column.caption(f"No {title.lower()} stored for this inspection.")
        else:
            column.image(image, width="stretch")
    painted = None
    if views.image is not None:
        st.markdown("**Defect region**")
        st.caption(
            "Paint over the defect: it starts from the model's region (or the last one "
            "painted); **True defect** saves what is painted here. The toolbar's edit toggle "
            "moves or deletes a blob; undo, redo and reset are beside it."
        )
        reviewer = app_state.may(app_state.REVIEWERS)
        brush = st.slider("Brush", 2, 40, regions.BRUSH, key="rv_brush", disabled=not reviewer)
        size = regions.canvas_size(views.image.shape)
        start = regions.starting_region(board.store, row.id, None if blind else row.mask_sha)
        canvas = st_canvas(
            background_image=Image.fromarray(views.image),
            initial_drawing=regions.initial_drawing(start, size),
            drawing_mode="freedraw",
            stroke_width=brush,
            stroke_color=regions.PAINT_RGBA,
            fill_color=regions.PAINT_RGBA,
            width=size[0],
            height=size[1],
            return_image_data=True,
            disabled=not reviewer,
            key=f"rv_canvas_{row.id}",
        )
        painted = regions.painted_region(canvas.image_data, start, views.image.shape)
with panel:
    if blind:
        st.markdown("### Audit part")
    else:
        verdict_color = "red" if row.verdict == "NG" else "orange"
        st.markdown(f"### :{verdict_color}[{row.verdict}] · score {row.score:.3f}")
        st.markdown(f"threshold {row.threshold:.2f} · model `{row.model_version}`")
    st.markdown(
        f"**{row.product}** at `{row.station_id}`  \n"
        f"part `{row.part or '—'}` · {row.created_at:%Y-%m-%d %H:%M} UTC"
    )
    if row.review_label:
        st.markdown(
            f"Labelled **{review.SHOWN[row.review_label]}**"
            f"{f' ({row.review_defect_type})' if row.review_defect_type else ''} "
            f"by {row.reviewed_by}"
        )
    types = app_state.defect_types(site, query.product)
    st.selectbox(
        "Defect type",
        types,
        index=None,
        key="rv_defect_type",
        accept_new_options=True,
        placeholder="pick or type a new one",
    )
    st.text_input("Note", key="rv_note", placeholder="optional")
    buttons = st.columns(2)
    for index, (label, key) in enumerate(SHORTCUTS.items()):
        buttons[index % 2].button(
            review.LABELS[label],
            key=f"rv_btn_{label}",
            on_click=_label,
            args=(label, row, painted),
            shortcut=key,
            type="primary" if label == "defect" else "secondary",
            width="stretch",
        )
    nav = st.columns(2)
    nav[0].button("◀ Previous", on_click=_move, args=(-1,), shortcut="P", width="stretch")
    nav[1].button("Next ▶", on_click=_move, args=(1,), shortcut="N", width="stretch")
    _show_message()

part = review.part_frame(board.store, row)
if not part.empty and not blind:  # several cameras judged this part: each view's result
    st.markdown(f"**Views of part `{row.part_id}`**")
    panels.table(part)

with st.expander("Audit trail of this inspection"):
    panels.table(review.audit_frame(board.store, row.id), empty="Not reviewed yet.")

st.subheader("This page")
turn = st.columns([1, 1, 4])
turn[0].button(
    "◀ Previous page", key="rv_prev_page", on_click=_turn, args=(-1,), disabled=len(starts) == 1
)
turn[1].button(
    "Next page ▶", key="rv_next_page", on_click=_turn, args=(1,), disabled=page.next is None
)
turn[2].number_input("Go to page", min_value=1, step=1, key="rv_goto", on_change=_go_to)
selection = st.dataframe(
    review.page_frame(page, blind=blind),
    hide_index=True,
    width="stretch",
    on_select="rerun",
    selection_mode="single-row",
    key="rv_table",
    column_config={
        "time": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "score": st.column_config.NumberColumn(format="%.3f"),
        "threshold": st.column_config.NumberColumn(format="%.2f"),
        "id": st.column_config.TextColumn(width="small"),
    },
)
picked = list(selection.selection.rows) if selection else []
if picked != st.session_state.get("rv_last_pick", []):  # a new click in the table
    st.session_state["rv_last_pick"] = picked
    if picked and picked[0] != cursor:
        st.session_state["rv_cursor"] = picked[0]
        st.rerun()
