"""The station core every front door (``inspection.service``, ``inspection.line``) builds on,
torch-free: ``config`` (the shared ``core:`` section), ``core`` (wiring), ``live`` (hot-swapped
models), ``trust`` and ``thresholds`` (what serves, at which threshold), ``pipeline`` (decode ->
inspect -> blobs -> committed row), ``limits``, ``errors``, ``metrics``, ``render``.
"""
