"""The station's HTTP API (FastAPI). Build it with ``create_app(config)``.

Inference runs in a thread pool so the event loop stays responsive; a request is
answered only after its result is committed to the store.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from starlette.middleware.base import RequestResponseEndpoint
from starlette.requests import ClientDisconnect

from inspection.service.admin import add_admin_routes
from inspection.service.auth import MONITORS, READERS, bearer_identity, require
from inspection.service.config import StationConfig, read_deadlines
from inspection.service.errors import RequestError, RequestRefused, http_error
from inspection.service.station import Station
from inspection.service.upload import TEXT_FIELDS, Upload, read_upload
from inspection.station.limits import AdmissionGate, UploadBudget
from inspection.station.live import InspectorLoader, default_loader
from inspection.station.metrics import ServiceMetrics
from inspection.station.pipeline import Outcome
from inspection.store.models import ARTEFACTS, Inspection, as_utc
from inspection.store.store import InspectionFilter, Store, StoreError
from inspection.store.tokens import Identity

log = logging.getLogger(__name__)
_MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".bmp": "image/bmp"}
_MEDIA_TYPES |= {".tif": "image/tiff", ".webp": "image/webp"}
CLIENT_CLOSED = 499  # nginx's code for "client closed the request"; never sent, only counted
_SHA_RE = re.compile(r"[0-9a-f]{64}")
MAX_OFFSET = 1_000_000_000  # far beyond any store, far below a 64-bit overflow

_BINARY = {"type": "string", "format": "binary"}
_FORM = {
    "type": "object",
    "required": ["image"],
    "properties": {"image": _BINARY} | {name: {"type": "string"} for name in TEXT_FIELDS},
}
_INSPECT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": _FORM},
            "image/*": {"schema": _BINARY},
            "application/octet-stream": {"schema": _BINARY},
        },
    }
}


Inspecting = Annotated[Identity, Depends(require("station", action="inspecting"))]
Reader = Annotated[Identity, Depends(require(*READERS, action="reading results"))]
Monitor = Annotated[Identity, Depends(require(*MONITORS, action="reading metrics"))]


def create_app(
    config: StationConfig,
    *,
    loader: InspectorLoader = default_loader,
    store: Store | None = None,
) -> FastAPI:
    """The API for ``config``; models load and the poller/watcher start with the app's lifespan."""
    station = Station.build(config, loader=loader, store=store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        station.start()
        try:
            yield
        finally:
            station.stop()

    app = FastAPI(
        title="inspection station",
        version="1",
        description="Visual anomaly inspection for line stations. Authenticate with "
        "`Authorization: Bearer <token>` (see `inspection tokens create`).",
        lifespan=lifespan,
    )
    app.state.station = station
    _install_handlers(app, station.metrics)
    _add_routes(app, station)
    add_admin_routes(app, station)
    return app


def _install_handlers(app: FastAPI, metrics: ServiceMetrics) -> None:
    @app.exception_handler(RequestError)
    async def _request_error(_request: Request, exc: RequestError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestRefused)
    async def _refused(_request: Request, exc: RequestRefused) -> JSONResponse:
        return http_error(exc).response()

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, _exc: ClientDisconnect) -> Response:
        client = request.client.host if request.client else "unknown"
        log.info("client %s disconnected before its request was complete", client)
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(OperationalError)
    async def _store_down(_request: Request, exc: OperationalError) -> JSONResponse:
        log.error("results store unavailable: %s", str(exc).splitlines()[0])
        return JSONResponse(
            {"detail": "the results store is unavailable; retry with the same request_id"},
            status_code=503,
        )

    @app.exception_handler(StoreError)
    async def _store_error(_request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.middleware("http")
    async def _count(request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = getattr(request.scope.get("route"), "path", "unmatched")
            metrics.requests.labels(route, request.method, str(status)).inc()
            metrics.request_latency.labels(route).observe(time.perf_counter() - started)


def _add_routes(app: FastAPI, station: Station) -> None:
    gate = AdmissionGate(station.config.max_in_flight)
    uploads = UploadBudget(station.config.max_upload_memory_bytes)

    @app.post("/v1/inspect", openapi_extra=_INSPECT_BODY, tags=["inspect"])
    async def inspect(
        request: Request,
        identity: Inspecting,
        product: str | None = None,
        part_id: str | None = None,
        request_id: str | None = None,
    ) -> JSONResponse:
        """Inspect one image (multipart field ``image``, or the raw body); a ``request_id`` seen
        before from the same station returns the stored result (200) instead of a new one (201)."""
        upload = await read_upload(
            request,
            station.config.max_upload_bytes,
            read_deadlines(station.config),
            budget=uploads,
            on_closed=lambda reason: station.metrics.stages.uploads_closed.labels(reason).inc(),
        )
        with gate.admit():  # only uploads that arrived wait for inference
            return await _inspect(upload, station, identity.name, product, part_id, request_id)

    @app.get("/v1/inspections", tags=["results"])
    def list_inspections(
        identity: Reader,
        product: str | None = None,
        station_filter: Annotated[str | None, Query(alias="station_id")] = None,
        verdict: Annotated[str | None, Query(pattern="^(OK|NG)$")] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        """Stored inspections, newest first, filtered; a station token lists only its own."""
        if identity.has("station"):
            if station_filter not in (None, identity.name):
                raise RequestError(403, "a station token reads only its own station's results")
            station_filter = identity.name
        filters = InspectionFilter(
            product=product,
            station_id=station_filter,
            verdict=verdict,
            since=since and as_utc(since),
            until=until and as_utc(until),
        )
        rows = station.store.list_inspections(filters, limit=limit, offset=offset)
        total = station.store.count_inspections(filters)
        items = [inspection_json(row) for row in rows]
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    @app.get("/v1/inspections/{inspection_id}", tags=["results"])
    def get_inspection(inspection_id: str, identity: Reader) -> dict[str, Any]:
        return inspection_json(_visible_row(station.store, identity, inspection_id))

    @app.get("/v1/inspections/{inspection_id}/{artefact}", tags=["results"])
    def get_artefact(inspection_id: str, artefact: str, identity: Reader) -> FileResponse:
        """The stored ``image``, ``overlay`` (JPEG), ``mask`` (PNG 0/255) or ``map`` (PNG)."""
        if artefact not in ARTEFACTS:
            raise RequestError(404, f"unknown artefact {artefact!r}; use one of {list(ARTEFACTS)}")
        row = _visible_row(station.store, identity, inspection_id)
        sha = getattr(row, ARTEFACTS[artefact])
        if not sha:
            raise RequestError(404, f"inspection {inspection_id} has no stored {artefact}")
        return _blob_response(station.store, sha)

    @app.get("/v1/blobs/{sha}", tags=["results"])
    def get_blob(sha: str, identity: Reader) -> FileResponse:
        if not _SHA_RE.fullmatch(sha):
            raise RequestError(404, f"not a blob id: {sha[:80]!r}")
        if identity.has("station") and not station.store.station_has_blob(identity.name, sha):
            raise RequestError(404, f"blob {sha[:64]!r} not found")
        return _blob_response(station.store, sha)

    @app.get("/healthz", tags=["ops"])
    def healthz(request: Request) -> JSONResponse:
        """200 ``ok`` or 503 ``degraded`` (a product without a model, the database unreachable,
        or no file can be stored in ``blob_dir``); monitor and admin tokens also see per-product
        models, the store, the blob folder, the watch folder and the central backlog."""
        products = station.models.status()
        try:
            with station.store.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            store_ok, store_problem = True, None
        except Exception as exc:
            store_ok, store_problem = False, str(exc).splitlines()[0]
        blobs_problem = station.store.blobs.unwritable()
        ok = store_ok and blobs_problem is None and all(p["loaded"] for p in products.values())
        body: dict[str, Any] = {"status": "ok" if ok else "degraded"}
        identity = bearer_identity(request)
        if identity is not None and identity.has(*MONITORS):
            body |= {
                "products": products,
                "store": {"ok": store_ok, "problem": store_problem},
                "blobs": {"ok": blobs_problem is None, "problem": blobs_problem},
                "watch": station.watch_status(),
                "central": station.core.central_status(),
                "signatures": station.core.signatures(),
            }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"])
    def metrics(_identity: Monitor) -> Response:
        return Response(generate_latest(station.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _inspect(
    upload: Upload,
    station: Station,
    station_id: str,
    product: str | None,
    part_id: str | None,
    request_id: str | None,
) -> JSONResponse:
    run = partial(
        station.pipeline.run,
        upload.data,
        product=upload.fields.get("product", product),
        station_id=station_id,
        part_id=upload.fields.get("part_id", part_id),
        request_id=upload.fields.get("request_id", request_id),
        source="api",
        source_name=upload.filename,
    )
    loop = asyncio.get_running_loop()
    outcome: Outcome = await loop.run_in_executor(station.executor, run)
    station.observe(outcome)
    body = inspection_json(outcome.row) | {"replayed": not outcome.created}
    body["timings_ms"] = {name: round(value, 3) for name, value in outcome.timings_ms.items()}
    return JSONResponse(body, status_code=201 if outcome.created else 200)


def inspection_json(row: Inspection) -> dict[str, Any]:
    """The API's view of a stored inspection, with links to its artefacts."""
    base = f"/v1/inspections/{row.id}"
    return {
        "id": row.id,
        "request_id": row.request_id.split("/", 1)[1] if row.request_id else None,
        "created_at": as_utc(row.created_at).isoformat() if row.created_at else None,
        **{column: getattr(row, column) for column in _JSON_COLUMNS},
        "links": {name: f"{base}/{name}" for name, col in ARTEFACTS.items() if getattr(row, col)},
        "blobs": {name: getattr(row, col) for name, col in ARTEFACTS.items()},
    }


_JSON_COLUMNS = (
    "product", "station_id", "part_id", "source", "source_name", "score", "threshold",
    "verdict", "model_version", "bundle_id", "latency_ms", "mask_source", "width", "height",
    "regions", "review_label",
)  # fmt: skip
"""The stored columns the API shows as they are (in this order)."""


def _visible_row(store: Store, identity: Identity, inspection_id: str) -> Inspection:
    """The inspection, if ``identity`` may read it; another station's looks like a missing one."""
    row = store.get_inspection(inspection_id)
    if identity.has("station") and row.station_id != identity.name:
        raise StoreError(f"no inspection with id {inspection_id!r}")
    return row


def _blob_response(store: Store, sha: str) -> FileResponse:
    try:
        path = store.blobs.checked_path(sha)
    except FileNotFoundError as exc:  # also an altered file; its message names the blob folder
        raise RequestError(404, f"blob {sha} not found") from exc
    return FileResponse(path, media_type=_MEDIA_TYPES.get(path.suffix, "application/octet-stream"))
