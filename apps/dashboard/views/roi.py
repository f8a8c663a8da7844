"""Regions of interest: the product's reference image with its ROI, edited as JSON with audit."""

from __future__ import annotations

import streamlit as st

from inspection.core.errors import InspectionError
from inspection.dashboard import app_state, roi
from inspection.training.config import load_product_config

board = app_state.dashboard()
st.title("Regions of interest")

products = roi.products_with_reference()
if not products:
    st.info(
        "No product config names a reference image. Add `reference:` (and `roi:`) to "
        "`configs/products/<product>.yaml`; `inspection data hires` writes the plate's.",
        icon=":material/info:",
    )
    st.stop()

product = st.selectbox("Product", products, key="roi_product")
config = load_product_config(product)
image = roi.reference_image(config)
left, right = st.columns([3, 2])
with left:
    if image is None:
        st.warning(f"Reference image {config.reference} not found.", icon=":material/warning:")
    else:
        st.image(
            roi.overlay(image, config.roi),
            caption=f"{config.reference} · green: inspected, red: excluded, dimmed: ignored",
        )
with right:
    st.markdown("Polygons in reference-image pixels: `[[x, y], ...]`.")
    text = st.text_area("ROI (JSON)", roi.roi_json(config.roi, image), height=320, key="roi_text")
    reason = st.text_input("Why", key="roi_reason")
    admin = app_state.may(app_state.ADMINS)
    if not admin:
        st.caption("Saving an ROI is for admin users.")
    if st.button("Save ROI", type="primary", key="roi_save", disabled=not admin):
        actor = app_state.acting_as(app_state.ADMINS)  # the signed-in name goes to the audit
        try:
            if actor is not None:
                edited = roi.parse_roi(text)
                path = roi.save_roi(product, edited, board.registry, actor=actor, reason=reason)
        except InspectionError as exc:
            st.error(str(exc), icon=":material/error:")
        else:
            if actor is not None:
                app_state.invalidate()
                st.success(f"Saved to {path}; new bundles of {product} carry it after export.")
