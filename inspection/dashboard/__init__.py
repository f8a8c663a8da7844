"""Read/write and aggregation functions behind the Streamlit review dashboard. Torch-free.

The pages in ``apps/dashboard/`` only lay out widgets; everything they show or change goes
through this package: ``context`` (site, store, registry), ``overview``, ``thresholds``,
``review``, ``models``, ``retraining`` and ``charts``. ``app_state`` adds Streamlit caching.
"""
