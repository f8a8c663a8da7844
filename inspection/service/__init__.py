"""HTTP inspection service and watch folder for line stations. Torch-free.

- ``config``: ``configs/station.yaml`` as a frozen ``StationConfig``.
- ``station``: wires store, live models, pipeline, metrics and the watcher together.
- ``live``: the live model per product, hot-swapped from the registry by a poller.
- ``pipeline``: decode -> inspect -> blobs -> committed row (shared by API and watch folder).
- ``app``: the FastAPI app (``create_app``); ``upload`` reads bodies with a hard size limit.
- ``watch``: exactly-once processing of files dropped into ``incoming/``.
- ``metrics``: Prometheus metrics per app instance.
"""
