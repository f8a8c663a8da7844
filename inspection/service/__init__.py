"""HTTP inspection service and watch folder for line stations, over the station core. Torch-free.

- ``config``: ``configs/station.yaml`` as a frozen ``StationConfig`` (``core:`` + HTTP settings).
- ``station``: the station core plus HTTP metrics, the worker pool and the watcher.
- ``app``: the FastAPI app (``create_app``); ``upload`` reads bodies with a hard size limit.
- ``errors``: HTTP status codes for the station core's refusals.
- ``watch``: exactly-once processing of files dropped into ``incoming/``.
"""
