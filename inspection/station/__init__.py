"""The station core every front door builds on (torch-free).

- ``config``: the ``core:`` section both station configs embed (``StationCoreConfig``).
- ``core``: ``StationCore.build`` wires store, live models and pipeline once.
- ``live``: the live model per product, signature-checked and hot-swapped from the registry.
- ``trust``: what a pinned key lets serve; ``thresholds``: the threshold served, re-calibrated.
- ``pipeline``: decode -> inspect -> blobs -> committed row (+ outbox messages).
- ``limits``: admission control; ``errors``: why a station refuses a request.
- ``metrics``: Prometheus metrics; ``render``: mask, map and overlay encodings.

Front doors: the HTTP service and watch folder (``inspection.service``) and the PLC line
station (``inspection.line``).
"""
