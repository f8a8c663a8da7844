"""Read/write and aggregation functions behind the Streamlit review dashboard. Torch-free.

The pages in ``apps/dashboard/`` only lay out widgets; everything they show or change goes
through this package (``app_state``: Streamlit caching and who is signed in)."""
