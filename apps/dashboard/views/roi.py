"""Regions of interest: draw and drag include/exclude boxes over the product's reference image
(``streamlit-drawable-canvas``), or edit polygons as JSON; saves are audited."""

from __future__ import annotations

import streamlit as st
from PIL import Image
from streamlit_drawable_canvas import st_canvas

from inspection.core.errors import InspectionError
from inspection.core.product_config import load_product_config
from inspection.dashboard import app_state, panels, roi

site = app_state.site_key()
board = app_state.dashboard()
st.title("Regions of interest")

configs = board.site.configs  # the site's own product configs (INSPECTION_SITE_CONFIG's folder)
products = roi.products_with_reference(configs, site_products=app_state.products(site))
if not products:
    panels.stop_with(
        "No product of this site names a reference image. Add `reference:` (a good part in the "
        "nominal pose) and `roi:` to `configs/products/<product>.yaml`; `inspection data hires` "
        "writes the plate's."
    )

product = st.selectbox("Product", products, key="roi_product")
config = load_product_config(product, configs)
image = roi.reference_image(config)
if image is None:
    st.warning(
        f"The reference image `{config.reference}` of {product} is not on this machine; "
        "regions are drawn over it. Put the file there (or fix `reference:`) first.",
        icon=":material/warning:",
    )
    st.stop()

admin = app_state.may(app_state.ADMINS)
height, width = image.shape[:2]
reference_size = config.roi.reference_size if config.roi else (height, width)
boxes = roi.boxes_of(config.roi)
draw, advanced = st.tabs(["Draw", "Polygons (JSON)"])


def _save(edited: roi.RoiSpec, reason: str) -> None:
    actor = app_state.acting_as(app_state.ADMINS)  # the signed-in name goes to the audit
    if actor is None:
        return
    try:
        path = roi.save_roi(
            product, edited, board.registry, actor=actor, reason=reason, directory=configs
        )
    except InspectionError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    app_state.invalidate()
    st.success(f"Saved to {path}; new bundles of {product} carry it after export.")


with draw:
    if boxes is None:
        st.caption(
            "The current ROI has non-rectangular polygons: edit it under *Polygons (JSON)*; "
            "boxes drawn here replace it."
        )
    shown_width = 640  # small references are enlarged, large ones shrunk
    scale = shown_width / reference_size[1]
    label = st.radio("Box", roi.LABELS, horizontal=True, key="roi_label", disabled=not admin)
    st.caption(
        "Drag on the image to draw a box labelled as chosen (green: inspected, red: cut out); "
        "the toolbar's edit toggle moves, resizes and deletes boxes."
    )
    canvas = st_canvas(
        background_image=Image.fromarray(roi.overlay(image, None, max_side=shown_width)),
        drawing_mode="labeled_rect",
        label=label,
        initial_drawing=roi.canvas_drawing(boxes or [], scale),
        width=shown_width,
        height=round(reference_size[0] * scale),
        stroke_width=2,
        fill_color="rgba(40,200,80,0.25)" if label == "include" else "rgba(230,50,50,0.30)",
        disabled=not admin,
        key=f"roi_canvas_{product}",
    )
    drawn = [
        {**box, **{k: float(box[k]) / scale for k in ("left", "top", "width", "height")}}
        for box in canvas.boxes
    ]
    with st.form("roi_draw_save", border=False):
        reason = st.text_input("Why", key="roi_draw_reason")
        submitted = st.form_submit_button("Save boxes", type="primary", disabled=not admin)
    if submitted:
        try:
            _save(roi.roi_from_boxes(drawn, tuple(reference_size)), reason)
        except InspectionError as exc:
            st.error(str(exc), icon=":material/error:")

with advanced:
    left, right = st.columns([3, 2])
    left.image(
        roi.overlay(image, config.roi),
        caption=f"{config.reference} · green: inspected, red: excluded, dimmed: ignored",
    )
    with right:
        st.markdown("Polygons in reference-image pixels: `[[x, y], ...]`.")
        text = st.text_area(
            "ROI (JSON)", roi.roi_json(config.roi, image), height=320, key="roi_text"
        )
        reason = st.text_input("Why", key="roi_reason")
        if not admin:
            st.caption("Saving an ROI is for admin users.")
        if st.button("Save ROI", type="primary", key="roi_save", disabled=not admin):
            try:
                edited = roi.parse_roi(text)
            except InspectionError as exc:
                st.error(str(exc), icon=":material/error:")
            else:
                _save(edited, reason)
