"""HTTP inspection service and watch folder, over the station core (torch-free): ``config``
(``configs/station.yaml``), ``station`` (core, metrics, workers, watcher), ``app`` (FastAPI),
``upload``, ``errors`` (HTTP statuses of refusals), ``watch`` (exactly-once ``incoming/``).
"""
